/**
 * Which model built an index. Vectors of different models (or of one model's different Dense
 * heads) are not comparable, so an index records its model and refuses queries or additions
 * from another one. The fingerprint hashes the folder's small files (configs, tokenizer) whole and
 * the weight files by size plus 16 evenly spaced 64 KiB samples: cheap on a 700 MB checkpoint,
 * and any retrained, requantised or re-headed model differs in those bytes.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import { resolveModelDir } from "../../text-core/model-dir.ts";
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

/**
 * The encoder that queries (or adds to) an index whose vectors `indexModel` made: `requested` (a
 * PyLate folder, or anything `resolveModelDir` takes), else the index's own model if its folder is
 * still there, else `fallback()` (a new index). A model other than the index's is refused:
 * their vectors are not comparable.
 */
export function chooseIndexModel(indexModel: ModelIdentity | null, requested: string | undefined, fallback: () => string): ModelIdentity {
  let path: string;
  if (requested !== undefined) path = existsSync(join(requested, "modules.json")) ? resolve(requested) : resolveModelDir(requested);
  else if (indexModel?.path && existsSync(indexModel.path)) path = indexModel.path;
  else if (indexModel) {
    throw new LfmError("MODEL_NOT_FOUND", `the index was built with ${indexModel.name} from ${indexModel.path ?? "an unknown folder"}, which is not there any more; pass --model with that model's folder.`);
  } else path = fallback();
  const identity = modelIdentity(path);
  if (indexModel && !sameModel(indexModel, identity)) {
    throw new LfmError(
      "INDEX_MODEL_MISMATCH",
      `the index was built with the model ${indexModel.name} (${indexModel.path ?? "?"}), not with ${identity.name} (${path}): their vectors are not comparable. Use the index's model, or a new index folder for this one.`,
    );
  }
  return identity;
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
