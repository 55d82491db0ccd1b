/**
 * Safetensors, read and written without loading whole files.
 *
 * Format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [start, end] }, "__metadata__"?: { str: str } }`, then the
 * data section; offsets are relative to the data section, tensors are row-major little-endian.
 *
 * `SafetensorsFile.open` reads only the header and validates every entry against the file size, so a
 * truncated or corrupt download fails at open time with `SAFETENSORS_CORRUPT`, not as garbage weights
 * later. Tensor bytes are read on demand, one positional read per tensor. `Checkpoint` puts
 * `model.safetensors` or the shards of `model.safetensors.index.json` behind one name → tensor map.
 *
 * The host is assumed little-endian (as the format is): every platform Node runs on in practice.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { LfmError } from "./errors.ts";

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
const IO_CHUNK_BYTES = 1 << 30;

function corrupt(file: string, what: string, tensor?: string): LfmError {
  const where = tensor === undefined ? file : `${file} (tensor "${tensor}")`;
  return new LfmError(
    "SAFETENSORS_CORRUPT",
    `${where}: ${what}. The file is probably truncated or corrupt; re-download it.`,
  );
}

/** Byte length of `shape` × `dtype`, or a string saying why it cannot be one. */
function byteLength(shape: readonly number[], dtype: SafetensorsDType): number | string {
  let elements = 1n;
  for (const d of shape) elements *= BigInt(d);
  const bits = elements * BigInt(DTYPE_BITS[dtype]);
  if (bits % 8n !== 0n) return `${elements} elements of ${dtype} do not fill a whole number of bytes`;
  const bytes = bits / 8n;
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) return `shape [${shape.join(", ")}] is impossibly large`;
  return Number(bytes);
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function fileNotFound(file: string, cause: unknown, hint = ""): LfmError {
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

// ── float conversions ──────────────────────────────────────────────────────────────────────────

let f16ToF32Bits: Uint32Array | null = null;

/** float32 bit patterns of all 65536 halves (exact: every half is a float32). */
function f16Table(): Uint32Array {
  if (f16ToF32Bits !== null) return f16ToF32Bits;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      table[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN with its payload
    } else if (exp === 0) {
      scratch[0] = mant * 2 ** -24; // zero or subnormal: exact in float32
      table[h] = (sign | scratchBits[0]) >>> 0;
    } else {
      table[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16ToF32Bits = table;
  return table;
}

/** Converts raw little-endian bytes of a float dtype to float32. `raw` must be 8-byte aligned. */
export function decodeFloat32(raw: Uint8Array, dtype: SafetensorsDType): Float32Array {
  const aligned = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  switch (dtype) {
    case "BF16": {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
      const out = new Float32Array(src.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16; // bf16 is the top half of f32
      return out;
    }
    case "F16": {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
      const table = f16Table();
      const out = new Float32Array(src.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) bits[i] = table[src[i]];
      return out;
    }
    case "F32":
      return new Float32Array(aligned.buffer.slice(aligned.byteOffset, aligned.byteOffset + aligned.byteLength));
    case "F64":
      return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 8));
    default:
      throw new LfmError("UNSUPPORTED_DTYPE", `Cannot convert ${dtype} to float32; supported: ${FLOAT_DTYPES.join(", ")}.`);
  }
}

/** float32 → bfloat16 bits, rounding to nearest even; NaN stays NaN (payload kept where it fits). */
export function float32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) {
      const top = b >>> 16;
      out[i] = (top & 0x7f) === 0 ? top | 0x40 : top; // keep it a NaN after truncation
    } else {
      out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // overflow to ±inf is correct RNE
    }
  }
  return out;
}

/** float32 → IEEE half bits, rounding to nearest even, with subnormals, ±inf and NaN. */
export function float32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = mant === 0 ? sign | 0x7c00 : sign | 0x7c00 | (mant >>> 13) | ((mant >>> 13) === 0 ? 0x200 : 0);
      continue;
    }
    const halfExp = exp - 112; // rebias 127 → 15
    if (halfExp >= 31) {
      out[i] = sign | 0x7c00; // too large: ±inf
    } else if (halfExp <= 0) {
      // Half subnormal range (|x| < 2^-14): round |x| / 2^-24 to an integer, ties to even.
      // Exact in double; a result of 1024 is the smallest normal half, which the bits encode as is.
      const q = Math.abs(src[i]) * 16777216;
      const floor = Math.floor(q);
      const frac = q - floor;
      const m = frac > 0.5 || (frac === 0.5 && (floor & 1) === 1) ? floor + 1 : floor;
      out[i] = sign | m;
    } else {
      const lower = mant & 0x1fff;
      let h = (halfExp << 10) | (mant >>> 13);
      if (lower > 0x1000 || (lower === 0x1000 && (h & 1) === 1)) h += 1; // may carry into inf: correct
      out[i] = sign | h;
    }
  }
  return out;
}

// ── writer ─────────────────────────────────────────────────────────────────────────────────────

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
    (a, b) => DTYPE_BITS[b.dtype] - DTYPE_BITS[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
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

// ── checkpoint: one or several files seen as one ────────────────────────────────────────────────

export const SINGLE_FILE_NAME = "model.safetensors";
export const INDEX_FILE_NAME = "model.safetensors.index.json";

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
function similarNamesHint(name: string, names: Iterable<string>): string {
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

/**
 * A checkpoint's safetensors file(s) as one name → tensor map. Opening reads headers only; each
 * `readRaw`/`readFloat32` reads exactly one tensor from disk.
 */
export class Checkpoint {
  /** The files, in the order they were opened. */
  readonly files: readonly string[];
  readonly #byName: Map<string, SafetensorsFile>;
  readonly #open: SafetensorsFile[];

  private constructor(files: SafetensorsFile[], byName: Map<string, SafetensorsFile>) {
    this.#open = files;
    this.files = files.map((f) => f.path);
    this.#byName = byName;
  }

  /**
   * Opens `dir/model.safetensors.index.json` (sharded), else `dir/model.safetensors`; or
   * `opts.file` (relative to `dir`, or absolute) when given.
   */
  static open(dir: string, opts?: { file?: string }): Checkpoint {
    if (opts?.file !== undefined) {
      const file = SafetensorsFile.open(path.resolve(dir, opts.file));
      return Checkpoint.#fromFiles([file]);
    }
    const indexPath = path.join(dir, INDEX_FILE_NAME);
    if (fs.existsSync(indexPath)) return Checkpoint.#fromIndex(dir, indexPath);
    const single = path.join(dir, SINGLE_FILE_NAME);
    if (fs.existsSync(single)) return Checkpoint.#fromFiles([SafetensorsFile.open(single)]);

    let others: string[] = [];
    try {
      others = fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors"));
    } catch (e) {
      throw fileNotFound(dir, e);
    }
    const hint =
      others.length > 0
        ? ` It has ${others.map((f) => `"${f}"`).join(", ")}; pass the one holding the model's weights explicitly.`
        : " Download the full checkpoint (config.json, tokenizer files and the safetensors weights).";
    throw new LfmError("FILE_NOT_FOUND", `${dir} has neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}.${hint}`);
  }

  static #fromFiles(files: SafetensorsFile[]): Checkpoint {
    const byName = new Map<string, SafetensorsFile>();
    for (const f of files) for (const n of f.names()) if (!byName.has(n)) byName.set(n, f);
    return new Checkpoint(files, byName);
  }

  static #fromIndex(dir: string, indexPath: string): Checkpoint {
    let index: unknown;
    try {
      index = JSON.parse(fs.readFileSync(indexPath, "utf8"));
    } catch {
      throw corrupt(indexPath, "is not valid JSON");
    }
    const weightMap =
      typeof index === "object" && index !== null ? (index as Record<string, unknown>).weight_map : undefined;
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
      throw corrupt(indexPath, `has no "weight_map" object`);
    }
    const entries = Object.entries(weightMap as Record<string, unknown>);
    const shardNames: string[] = [];
    for (const [name, shard] of entries) {
      if (typeof shard !== "string" || shard === "" || path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
        throw corrupt(indexPath, `weight_map entry ${JSON.stringify(shard)} is not a file name in the checkpoint folder`, name);
      }
      if (!shardNames.includes(shard)) shardNames.push(shard);
    }

    const opened = new Map<string, SafetensorsFile>();
    try {
      for (const shard of shardNames) {
        const shardPath = path.join(dir, shard);
        if (!fs.existsSync(shardPath)) {
          throw new LfmError(
            "FILE_NOT_FOUND",
            `${indexPath} lists shard "${shard}", but ${shardPath} does not exist. The download is incomplete; download the missing shard(s) again.`,
          );
        }
        opened.set(shard, SafetensorsFile.open(shardPath));
      }
      const byName = new Map<string, SafetensorsFile>();
      for (const [name, shard] of entries) {
        const file = opened.get(shard as string) as SafetensorsFile;
        if (!file.has(name)) throw corrupt(file.path, `${INDEX_FILE_NAME} maps the tensor here, but the file does not hold it`, name);
        byName.set(name, file);
      }
      // Tensors a shard holds beyond the index are loaded too, as transformers does.
      for (const file of opened.values()) for (const n of file.names()) if (!byName.has(n)) byName.set(n, file);
      return new Checkpoint([...opened.values()], byName);
    } catch (e) {
      for (const f of opened.values()) f.close();
      throw e;
    }
  }

  /** All tensor names, file by file in file order. */
  names(): string[] {
    return [...this.#byName.keys()].sort((a, b) => {
      const ia = this.info(a);
      const ib = this.info(b);
      return ia.file === ib.file ? ia.start - ib.start : this.files.indexOf(ia.file) - this.files.indexOf(ib.file);
    });
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  #file(name: string): SafetensorsFile {
    const file = this.#byName.get(name);
    if (file === undefined) {
      const where = this.files.length === 1 ? this.files[0] : `the checkpoint (${this.files.length} files)`;
      throw new LfmError(
        "TENSOR_MISSING",
        `Tensor "${name}" is missing from ${where}${similarNamesHint(name, this.#byName.keys())} ` +
          `The weights do not belong to the architecture in config.json, or the download is incomplete; re-download the checkpoint.`,
      );
    }
    return file;
  }

  /** Where `name` lives; `TENSOR_MISSING` (with similar names) if absent. */
  info(name: string): TensorInfo {
    return this.#file(name).info(name);
  }

  readRaw(name: string): Uint8Array {
    return this.#file(name).readRaw(name);
  }

  readFloat32(name: string): Float32Array {
    return this.#file(name).readFloat32(name);
  }

  readFloat32Rows(name: string, start: number, count: number): Float32Array {
    return this.#file(name).readFloat32Rows(name, start, count);
  }

  /**
   * Checks that `name` exists with exactly `shape` and returns its info; `TENSOR_MISSING` or
   * `TENSOR_SHAPE_MISMATCH` otherwise.
   */
  expectShape(name: string, shape: number[]): TensorInfo {
    const info = this.info(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new LfmError(
        "TENSOR_SHAPE_MISMATCH",
        `Tensor "${name}" in ${info.file} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]. ` +
          `The config.json probably does not match these weights; use the config that came with the checkpoint.`,
      );
    }
    return info;
  }

  close(): void {
    for (const f of this.#open) f.close();
  }
}
