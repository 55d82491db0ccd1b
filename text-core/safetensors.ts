/**
 * The safetensors file format, read without loading whole files (the writer for tests and
 * benchmarks is bench/safetensors-writer.ts; a checkpoint's files together: checkpoint.ts).
 *
 * Format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [start, end] }, "__metadata__"?: { str: str } }`, then the
 * data section; offsets are relative to the data section, tensors are row-major little-endian.
 *
 * `SafetensorsFile.open` reads only the header and validates every entry against the file size, so a
 * truncated or corrupt download fails at open time with `SAFETENSORS_CORRUPT`, not as garbage weights
 * later. Tensor bytes are read on demand, one positional read per tensor.
 *
 * The host is assumed little-endian (as the format is): every platform Node runs on in practice.
 */
import * as fs from "node:fs";
import { LfmError } from "./errors.ts";
import { bf16ToFloat32, f16ToFloat32 } from "./float-bits.ts";

/** Every dtype the safetensors format defines (Rust `safetensors::Dtype`, 0.6). */
export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E5M2"
  | "F8_E4M3"
  | "F8_E8M0"
  | "F6_E2M3"
  | "F6_E3M2"
  | "F4"
  | "C64";

/** Bits per element, as the Rust library's `Dtype::bitsize`. */
const DTYPE_BITS: Readonly<Record<SafetensorsDType, number>> = {
  F64: 64,
  F32: 32,
  F16: 16,
  BF16: 16,
  I64: 64,
  I32: 32,
  I16: 16,
  I8: 8,
  U64: 64,
  U32: 32,
  U16: 16,
  U8: 8,
  BOOL: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F6_E2M3: 6,
  F6_E3M2: 6,
  F4: 4,
  C64: 64,
};

/** The dtypes `readFloat32` converts. */
export const FLOAT_DTYPES: readonly SafetensorsDType[] = ["F64", "F32", "F16", "BF16"];

export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_BITS, s);
}

/** Bits per element of `dtype`. */
export function dtypeBits(dtype: SafetensorsDType): number {
  return DTYPE_BITS[dtype];
}

/** Where one tensor lives: `start`/`end` are absolute byte offsets in `file`. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  file: string;
  start: number;
  end: number;
}

/** Same cap as the Rust library (`MAX_HEADER_SIZE`). */
const MAX_HEADER_BYTES = 100_000_000;
/** Largest single `readSync`/`writeSync` we issue (Linux caps one call at ~2 GiB). */
export const IO_CHUNK_BYTES = 1 << 30;

/** `SAFETENSORS_CORRUPT` naming the file (and the tensor). */
export function corrupt(file: string, what: string, tensor?: string): LfmError {
  const where = tensor === undefined ? file : `${file} (tensor "${tensor}")`;
  return new LfmError(
    "SAFETENSORS_CORRUPT",
    `${where}: ${what}. The file is probably truncated or corrupt; re-download it.`,
  );
}

/** Byte length of `shape` × `dtype`, or a string saying why it cannot be one. */
export function byteLength(shape: readonly number[], dtype: SafetensorsDType): number | string {
  let elements = 1n;
  for (const d of shape) elements *= BigInt(d);
  const bits = elements * BigInt(DTYPE_BITS[dtype]);
  if (bits % 8n !== 0n) return `${elements} elements of ${dtype} do not fill a whole number of bytes`;
  const bytes = bits / 8n;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) return `shape [${shape.join(", ")}] is impossibly large`;
  return Number(bytes);
}

export function isNonNegativeInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

export function fileNotFound(file: string, cause: unknown, hint = ""): LfmError {
  return new LfmError("FILE_NOT_FOUND", `Cannot open ${file}: ${(cause as Error).message}.${hint}`, { cause });
}

function readExactly(fd: number, file: string, into: Uint8Array, position: number, tensor?: string): void {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(into.length - done, IO_CHUNK_BYTES);
    let got: number;
    try {
      got = fs.readSync(fd, into, done, want, position + done);
    } catch (e) {
      throw new LfmError("FILE_NOT_FOUND", `Cannot read ${file}${tensor === undefined ? "" : ` (tensor "${tensor}")`}: ${(e as Error).message}. Check the disk, or re-download the file.`, { cause: e });
    }
    if (got === 0) throw corrupt(file, `the file ended after ${position + done} bytes while reading`, tensor);
    done += got;
  }
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** " Similar names: a, b, c." — names that contain/end with `name`, then the closest by edit distance. */
export function similarNamesHint(name: string, names: Iterable<string>): string {
  const all = [...names];
  if (all.length === 0) return ". The checkpoint holds no tensors.";
  const scored = all.map((n) => ({
    n,
    score: n.endsWith(name) || name.endsWith(n) ? -1 : levenshtein(n, name),
  }));
  scored.sort((a, b) => a.score - b.score || (a.n < b.n ? -1 : 1));
  const close = scored.filter((s) => s.score <= Math.max(4, Math.floor(name.length / 3))).slice(0, 5);
  const shown = close.length > 0 ? close : scored.slice(0, 3);
  return `. ${close.length > 0 ? "Similar names" : "Closest names"}: ${shown.map((s) => `"${s.n}"`).join(", ")} (of ${all.length} tensors).`;
}

/** One `.safetensors` file: header parsed and validated at open, tensors read on demand. */
export class SafetensorsFile {
  readonly path: string;
  /** Total file size in bytes. */
  readonly size: number;
  /** The `__metadata__` string map (empty if absent). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly #tensors: Map<string, TensorInfo>;
  #fd: number | null;

  private constructor(
    filePath: string,
    fd: number,
    size: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.path = filePath;
    this.#fd = fd;
    this.size = size;
    this.#tensors = tensors;
    this.metadata = metadata;
  }

  /** Opens `filePath` and validates its header; reads nothing but the header. */
  static open(filePath: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(filePath, "r");
    } catch (e) {
      throw fileNotFound(filePath, e);
    }
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) throw new LfmError("FILE_NOT_FOUND", `${filePath} is not a file; put the safetensors file there (re-download it).`);
      const { tensors, metadata } = SafetensorsFile.#readHeader(fd, filePath, stat.size);
      return new SafetensorsFile(filePath, fd, stat.size, tensors, metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  static #readHeader(
    fd: number,
    file: string,
    size: number,
  ): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
    if (size < 8) throw corrupt(file, `only ${size} bytes long, shorter than the 8-byte header length`);
    const lengthBytes = new Uint8Array(8);
    readExactly(fd, file, lengthBytes, 0);
    const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw corrupt(file, `header length ${headerLength} bytes is absurd (limit ${MAX_HEADER_BYTES})`);
    }
    const n = Number(headerLength);
    if (8 + n > size) throw corrupt(file, `header length ${n} bytes runs past the end of the ${size}-byte file`);
    const headerBytes = new Uint8Array(n);
    readExactly(fd, file, headerBytes, 8);

    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
    } catch {
      throw corrupt(file, "header is not valid UTF-8 JSON");
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw corrupt(file, "header is not a JSON object");
    }

    const dataStart = 8 + n;
    const dataSize = size - dataStart;
    const metadata: Record<string, string> = {};
    const tensors = new Map<string, TensorInfo>();
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
          throw corrupt(file, "__metadata__ is not a string → string map");
        }
        for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
          if (typeof v !== "string") throw corrupt(file, `__metadata__["${k}"] is not a string`);
          metadata[k] = v;
        }
        continue;
      }
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        throw corrupt(file, "header entry is not an object", name);
      }
      const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
      if (dtype === undefined || shape === undefined || offsets === undefined) {
        throw corrupt(file, "header entry lacks dtype, shape or data_offsets", name);
      }
      if (!isSafetensorsDType(dtype)) throw corrupt(file, `unknown dtype ${JSON.stringify(dtype)}`, name);
      if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
        throw corrupt(file, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
      }
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
        throw corrupt(file, `data_offsets ${JSON.stringify(offsets)} is not a pair of non-negative integers`, name);
      }
      const [start, end] = offsets as [number, number];
      if (end < start) throw corrupt(file, `data_offsets [${start}, ${end}] end before they start`, name);
      if (end > dataSize) {
        throw corrupt(file, `data_offsets [${start}, ${end}] run past the end of the ${dataSize}-byte data section`, name);
      }
      const expected = byteLength(shape as number[], dtype);
      if (typeof expected === "string") throw corrupt(file, expected, name);
      if (end - start !== expected) {
        throw corrupt(
          file,
          `holds ${end - start} bytes but ${dtype} [${(shape as number[]).join(", ")}] needs ${expected}`,
          name,
        );
      }
      tensors.set(name, {
        name,
        dtype,
        shape: [...(shape as number[])],
        file,
        start: dataStart + start,
        end: dataStart + end,
      });
    }

    const byStart = [...tensors.values()].sort((a, b) => a.start - b.start || a.end - b.end);
    for (let i = 1; i < byStart.length; i++) {
      const prev = byStart[i - 1];
      const cur = byStart[i];
      if (cur.start < prev.end) {
        throw corrupt(file, `its bytes overlap those of "${prev.name}"`, cur.name);
      }
    }
    return { tensors, metadata };
  }

  /** Tensor names in file order. */
  names(): string[] {
    return [...this.#tensors.values()].sort((a, b) => a.start - b.start).map((t) => t.name);
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /** Where `name` lives; `TENSOR_MISSING` if the file has no such tensor. */
  info(name: string): TensorInfo {
    const info = this.#tensors.get(name);
    if (info === undefined) {
      throw new LfmError("TENSOR_MISSING", `${this.path} has no tensor "${name}"${similarNamesHint(name, this.#tensors.keys())}`);
    }
    return info;
  }

  /** The tensor's bytes, exactly, in one positional read (a fresh, 8-byte-aligned buffer). */
  readRaw(name: string): Uint8Array {
    const info = this.info(name);
    const fd = this.#fd;
    if (fd === null) throw new LfmError("INVALID_ARGUMENT", `${this.path} was closed; open it again to read "${name}".`);
    const out = new Uint8Array(new ArrayBuffer(info.end - info.start));
    readExactly(fd, this.path, out, info.start, name);
    return out;
  }

  /** The tensor as float32: BF16 and F16 exactly, F32 as is, F64 rounded to nearest. */
  readFloat32(name: string): Float32Array {
    const info = this.info(name);
    checkFloatDType(info);
    const raw = this.readRaw(name);
    return info.dtype === "F32" ? new Float32Array(raw.buffer) : decodeFloat32(raw, info.dtype); // raw is ours: no copy
  }

  /**
   * Rows [start, start + count) of a tensor (first axis) as float32: one positional read of just
   * those bytes, so a huge matrix can be converted a slice at a time.
   */
  readFloat32Rows(name: string, start: number, count: number): Float32Array {
    const info = this.info(name);
    checkFloatDType(info);
    const rows = info.shape[0] ?? 1;
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > rows) {
      throw new LfmError("INVALID_ARGUMENT", `rows ${start}..${start + count} are outside "${name}" (${rows} rows).`);
    }
    const fd = this.#fd;
    if (fd === null) throw new LfmError("INVALID_ARGUMENT", `${this.path} was closed; open it again to read "${name}".`);
    const rowBytes = (info.end - info.start) / rows;
    const out = new Uint8Array(new ArrayBuffer(rowBytes * count));
    readExactly(fd, this.path, out, info.start + start * rowBytes, name);
    return info.dtype === "F32" ? new Float32Array(out.buffer) : decodeFloat32(out, info.dtype);
  }

  close(): void {
    if (this.#fd !== null) {
      fs.closeSync(this.#fd);
      this.#fd = null;
    }
  }
}

/** `UNSUPPORTED_DTYPE` naming the tensor unless it is one `readFloat32` converts. */
export function checkFloatDType(info: TensorInfo): void {
  if (!FLOAT_DTYPES.includes(info.dtype)) {
    throw new LfmError(
      "UNSUPPORTED_DTYPE",
      `${info.file}: tensor "${info.name}" is ${info.dtype}; only ${FLOAT_DTYPES.join(", ")} tensors can be read as float32. ` +
        `Use the published BF16/F16/F32 checkpoint, not a quantised export.`,
    );
  }
}

/** Converts raw little-endian bytes of a float dtype to float32. `raw` must be 8-byte aligned. */
export function decodeFloat32(raw: Uint8Array, dtype: SafetensorsDType): Float32Array {
  const aligned = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  switch (dtype) {
    case "BF16": {
      return bf16ToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    }
    case "F16": {
      return f16ToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    }
    case "F32":
      return new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength));
    case "F64":
      return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 8));
    default:
      throw new LfmError("UNSUPPORTED_DTYPE", `Cannot convert ${dtype} to float32; supported: ${FLOAT_DTYPES.join(", ")}.`);
  }
}
