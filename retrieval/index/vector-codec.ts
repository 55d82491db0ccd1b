/**
 * How token vectors are stored: IEEE float16 (default: 2 bytes a value, relative error ≤ 2⁻¹¹,
 * which leaves MaxSim rankings intact), int8 with one float32 scale per row (1 byte a value,
 * ≈ half the memory of float16 for a small recall cost measured in the tests and the bench), or
 * float32 (exact; twice float16).
 *
 * Both encode row by row, so a document's rows are a contiguous slice of its segment's store.
 */
import { f16ToFloat32, float32ToF16 } from "../../text-core/float-bits.ts";

export type VectorStorage = "float16" | "int8" | "float32";

export const VECTOR_STORAGES: readonly VectorStorage[] = ["float16", "int8", "float32"];

/** The stored rows of one segment (or of a batch of candidates gathered for reranking). */
export type StoredRows =
  | { storage: "float16"; dim: number; rows: number; codes: Uint16Array }
  | { storage: "int8"; dim: number; rows: number; codes: Int8Array; scales: Float32Array }
  | { storage: "float32"; dim: number; rows: number; codes: Float32Array };

/** Encodes `rows` float32 rows of width `dim`. */
export function encodeRows(storage: VectorStorage, data: Float32Array, rows: number, dim: number): StoredRows {
  if (storage === "float32") return { storage, dim, rows, codes: data.slice(0, rows * dim) };
  if (storage === "float16") {
    return { storage, dim, rows, codes: float32ToF16(data.subarray(0, rows * dim)) };
  }
  const codes = new Int8Array(rows * dim);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let maxAbs = 0;
    for (let d = 0; d < dim; d++) maxAbs = Math.max(maxAbs, Math.abs(data[r * dim + d]));
    const scale = maxAbs > 0 ? maxAbs / 127 : 1;
    scales[r] = scale;
    for (let d = 0; d < dim; d++) codes[r * dim + d] = Math.round(data[r * dim + d] / scale);
  }
  return { storage, dim, rows, codes, scales };
}

/** Decodes rows [from, to) into float32 (for graph building and brute-force checks). */
export function decodeRows(stored: StoredRows, from = 0, to = stored.rows): Float32Array {
  const { dim } = stored;
  if (stored.storage === "float32") return stored.codes.slice(from * dim, to * dim);
  if (stored.storage === "float16") return f16ToFloat32(stored.codes.subarray(from * dim, to * dim));
  const out = new Float32Array((to - from) * dim);
  for (let r = from; r < to; r++) {
    const scale = stored.scales[r];
    for (let d = 0; d < dim; d++) out[(r - from) * dim + d] = stored.codes[r * dim + d] * scale;
  }
  return out;
}

/** Bytes one row takes on disk and in memory. */
export function bytesPerRow(storage: VectorStorage, dim: number): number {
  return storage === "float16" ? 2 * dim : storage === "int8" ? dim + 4 : 4 * dim;
}

/** Serialises rows: float16 or float32 codes; or int8 scales (float32) then codes. */
export function rowsToBytes(stored: StoredRows): Uint8Array {
  if (stored.storage !== "int8") return new Uint8Array(stored.codes.buffer, stored.codes.byteOffset, stored.codes.byteLength);
  const out = new Uint8Array(stored.rows * 4 + stored.codes.byteLength);
  out.set(new Uint8Array(stored.scales.buffer, stored.scales.byteOffset, stored.scales.byteLength), 0);
  out.set(new Uint8Array(stored.codes.buffer, stored.codes.byteOffset, stored.codes.byteLength), stored.rows * 4);
  return out;
}

/** The inverse of `rowsToBytes`; `bytes` must be exactly rows × bytesPerRow long (checked by the caller). */
export function rowsFromBytes(storage: VectorStorage, bytes: Uint8Array, rows: number, dim: number): StoredRows {
  // Typed views need aligned offsets; small files can come back as slices of a shared pool.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (storage === "float16") return { storage, dim, rows, codes: new Uint16Array(aligned.buffer, aligned.byteOffset, rows * dim) };
  if (storage === "float32") return { storage, dim, rows, codes: new Float32Array(aligned.buffer, aligned.byteOffset, rows * dim) };
  const scales = new Float32Array(aligned.buffer, aligned.byteOffset, rows);
  const codes = new Int8Array(aligned.buffer, aligned.byteOffset + rows * 4, rows * dim);
  return { storage, dim, rows, codes, scales };
}

/** Concatenates row slices [start, start+count) of several stores into one store of the same storage. */
export function gatherRows(storage: VectorStorage, dim: number, parts: Array<{ rows: StoredRows; start: number; count: number }>): StoredRows {
  const total = parts.reduce((n, p) => n + p.count, 0);
  if (storage !== "int8") {
    const codes = storage === "float16" ? new Uint16Array(total * dim) : new Float32Array(total * dim);
    let at = 0;
    for (const p of parts) {
      const src = p.rows.codes as typeof codes;
      codes.set(src.subarray(p.start * dim, (p.start + p.count) * dim), at * dim);
      at += p.count;
    }
    return storage === "float16" ? { storage, dim, rows: total, codes: codes as Uint16Array } : { storage, dim, rows: total, codes: codes as Float32Array };
  }
  const codes = new Int8Array(total * dim);
  const scales = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    const src = p.rows as Extract<StoredRows, { storage: "int8" }>;
    codes.set(src.codes.subarray(p.start * dim, (p.start + p.count) * dim), at * dim);
    scales.set(src.scales.subarray(p.start, p.start + p.count), at);
    at += p.count;
  }
  return { storage, dim, rows: total, codes, scales };
}
