/**
 * Writes safetensors files, for tests and benchmarks (made-up checkpoints, damaged files): the
 * toolkit itself only reads them (text-core/safetensors.ts). Lives in bench/ beside the other
 * synthetic-data code, which the tests import too.
 */
import * as fs from "node:fs";
import { LfmError } from "../text-core/errors.ts";
import { IO_CHUNK_BYTES, type SafetensorsDType, byteLength, dtypeBits, isNonNegativeInt, isSafetensorsDType } from "../text-core/safetensors.ts";

/** One tensor to write. `data` may be a function so that huge files never hold all tensors at once. */
export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array | (() => Uint8Array);
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, IO_CHUNK_BYTES), position + done);
  }
}

/**
 * Writes a safetensors file the way the Rust library does: tensors ordered by decreasing element
 * width, then name (so every tensor is aligned to its element size), header padded with spaces to a
 * multiple of 8. Tensor data is written one tensor at a time with positional writes into a temporary
 * file that is renamed over `filePath` only when complete.
 */
export function writeSafetensors(
  filePath: string,
  tensors: TensorToWrite[],
  metadata?: Record<string, string>,
): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === "__metadata__") throw new LfmError("INVALID_ARGUMENT", `"__metadata__" is reserved and cannot name a tensor.`);
    if (seen.has(t.name)) throw new LfmError("INVALID_ARGUMENT", `Tensor "${t.name}" is listed twice.`);
    seen.add(t.name);
    const dtype: unknown = t.dtype; // callers outside TypeScript may pass anything
    if (!isSafetensorsDType(dtype)) throw new LfmError("INVALID_ARGUMENT", `Tensor "${t.name}": unknown dtype ${String(dtype)}.`);
    if (!t.shape.every((d) => isNonNegativeInt(d))) {
      throw new LfmError("INVALID_ARGUMENT", `Tensor "${t.name}": shape [${t.shape.join(", ")}] is not a list of non-negative integers.`);
    }
  }
  const ordered = [...tensors].sort(
    (a, b) => dtypeBits(b.dtype) - dtypeBits(a.dtype) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = { ...metadata };
  const lengths: number[] = [];
  let offset = 0;
  for (const t of ordered) {
    const n = byteLength(t.shape, t.dtype);
    if (typeof n === "string") throw new LfmError("INVALID_ARGUMENT", `Tensor "${t.name}": ${n}.`);
    lengths.push(n);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = new Uint8Array(json.length + ((8 - (json.length % 8)) % 8)).fill(0x20);
  padded.set(json);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded.length), true);

  const tmpPath = `${filePath}.tmp-${process.pid}`;
  const fd = fs.openSync(tmpPath, "w");
  try {
    writeAll(fd, prefix, 0);
    writeAll(fd, padded, 8);
    let position = 8 + padded.length;
    ordered.forEach((t, i) => {
      const data = typeof t.data === "function" ? t.data() : t.data;
      if (data.byteLength !== lengths[i]) {
        throw new LfmError(
          "INVALID_ARGUMENT",
          `Tensor "${t.name}": ${data.byteLength} bytes given, ${t.dtype} [${t.shape.join(", ")}] needs ${lengths[i]}.`,
        );
      }
      writeAll(fd, data, position);
      position += data.byteLength;
    });
    fs.closeSync(fd);
    fs.renameSync(tmpPath, filePath);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmpPath, { force: true });
    throw e;
  }
}
