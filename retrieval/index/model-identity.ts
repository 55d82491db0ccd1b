/**
 * Which model built an index. Vectors of different models (or of one model's different Dense
 * heads) are not comparable, so an index records its model and refuses queries or additions
 * from another one. The fingerprint hashes the folder's small files (configs, tokenizer) whole and
 * the weight files by size plus 16 evenly spaced 64 KiB samples: cheap on a 700 MB checkpoint,
 * and any retrained, requantised or re-headed model differs in those bytes.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import type { ModelIdentity } from "./format.ts";

const SAMPLES = 16;
const SAMPLE_BYTES = 64 << 10;
const WEIGHT_FILE = /\.(safetensors|bin|onnx|data)$/;

export function modelIdentity(dir: string): ModelIdentity {
  if (!existsSync(dir)) throw new LfmError("MODEL_NOT_FOUND", `model folder ${dir} does not exist.`);
  const h = createHash("sha256");
  for (const file of listFiles(dir)) {
    const rel = relative(dir, file);
    if (rel.endsWith(".md") || rel.startsWith(".")) continue; // README edits do not change vectors
    const size = statSync(file).size;
    h.update(`${rel}\0${size}\0`);
    const fd = openSync(file, "r");
    try {
      if (!WEIGHT_FILE.test(rel) || size <= SAMPLES * SAMPLE_BYTES) {
        h.update(readRange(fd, 0, size));
      } else {
        for (let i = 0; i < SAMPLES; i++) h.update(readRange(fd, Math.floor(((size - SAMPLE_BYTES) * i) / (SAMPLES - 1)), SAMPLE_BYTES));
      }
    } finally {
      closeSync(fd);
    }
  }
  return { name: basename(dir), fingerprint: h.digest("hex").slice(0, 32), path: dir };
}

/** Same vectors? (the fingerprint decides; names and paths may differ between machines). */
export function sameModel(a: ModelIdentity, b: ModelIdentity): boolean {
  return a.fingerprint === b.fingerprint;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(path));
    else if (entry.isFile() || entry.isSymbolicLink()) out.push(path);
  }
  return out;
}

function readRange(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let off = 0;
  while (off < length) {
    const n = readSync(fd, buf, off, length - off, position + off);
    if (n === 0) break;
    off += n;
  }
  return buf.subarray(0, off);
}
