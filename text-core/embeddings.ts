/**
 * The token-embedding table, kept on disk beside the built graph and read a row at a time.
 *
 * Why not a Gather in the graph: a prompt touches a few hundred of the vocabulary's rows, yet a
 * table inside the graph is resident in full for the session's life: 134 MB of bf16 for
 * LFM2-350M (256 MB as float32), a quarter of the whole q4 model. Here each forward reads only
 * its tokens' rows with positional reads (the OS page cache keeps hot rows; it is reclaimable and
 * not the process's memory), so the rows stay exact — the checkpoint's own bf16 values, never
 * quantised — at no resident cost. The graph takes `inputs_embeds` instead of ids, which is also
 * where image / audio features replace rows.
 *
 * File: 32-byte header (`LFMEMB01`, dtype code, rows, dim as uint32) then rows × dim values,
 * little-endian: bf16 when every value is exactly a bf16 (as in bf16 checkpoints), else float32.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { LfmError } from "./errors.ts";
import { float32ToBf16 } from "./float-bits.ts";

const MAGIC = "LFMEMB01";
const HEADER_BYTES = 32;
const DTYPE_BF16 = 1;
const DTYPE_F32 = 2;
/** Rows converted per write while building: bounds build memory for 256k-row vocabularies. */
const BUILD_SLICE_ROWS = 4096;

export interface EmbeddingSource {
  readFloat32Rows(name: string, start: number, count: number): Float32Array;
}

/** Writes the table `name` ([rows, dim]) to `fd` in slices. `bf16`: the values are bf16-exact. */
export function writeEmbeddingTable(fd: number, weights: EmbeddingSource, name: string, rows: number, dim: number, bf16: boolean): void {
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, "ascii");
  header.writeUInt32LE(bf16 ? DTYPE_BF16 : DTYPE_F32, 8);
  header.writeUInt32LE(rows, 12);
  header.writeUInt32LE(dim, 16);
  writeSync(fd, header, 0, HEADER_BYTES, 0);
  let position = HEADER_BYTES;
  for (let start = 0; start < rows; start += BUILD_SLICE_ROWS) {
    const count = Math.min(BUILD_SLICE_ROWS, rows - start);
    const values = weights.readFloat32Rows(name, start, count);
    let bytes: Uint8Array;
    if (bf16) {
      bytes = new Uint8Array(float32ToBf16(values).buffer); // exact: the values are bf16 numbers
    } else {
      bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    }
    writeSync(fd, bytes, 0, bytes.byteLength, position);
    position += bytes.byteLength;
  }
}

/** An open table: `lookup` fills float32 rows for token ids. */
export class EmbeddingTable {
  #fd: number | null;
  private readonly rowBytes: number;
  private readonly row: Uint8Array;

  private constructor(
    readonly path: string,
    fd: number,
    readonly rows: number,
    readonly dim: number,
    private readonly bf16: boolean,
  ) {
    this.#fd = fd;
    this.rowBytes = dim * (bf16 ? 2 : 4);
    this.row = new Uint8Array(new ArrayBuffer(this.rowBytes));
  }

  /** Opens `path`, checking it holds a complete [rows, dim] table; `GRAPH_CACHE_CORRUPT` otherwise. */
  static open(path: string, rows: number, dim: number): EmbeddingTable {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new LfmError("GRAPH_CACHE_CORRUPT", `the embedding table ${path} is missing (${(e as NodeJS.ErrnoException).code}).`, { cause: e });
    }
    const fail = (what: string) => {
      closeSync(fd);
      return new LfmError("GRAPH_CACHE_CORRUPT", `the embedding table ${path} ${what}.`);
    };
    const header = Buffer.alloc(HEADER_BYTES);
    if (readSync(fd, header, 0, HEADER_BYTES, 0) !== HEADER_BYTES || header.toString("ascii", 0, 8) !== MAGIC) throw fail("has no valid header");
    const dtype = header.readUInt32LE(8);
    if (dtype !== DTYPE_BF16 && dtype !== DTYPE_F32) throw fail(`has an unknown value type ${dtype}`);
    if (header.readUInt32LE(12) !== rows || header.readUInt32LE(16) !== dim) throw fail(`is not [${rows}, ${dim}]`);
    const bf16 = dtype === DTYPE_BF16;
    if (fstatSync(fd).size !== HEADER_BYTES + rows * dim * (bf16 ? 2 : 4)) throw fail("is truncated");
    return new EmbeddingTable(path, fd, rows, dim, bf16);
  }

  /** Writes the rows of `ids` into `out` from `offset` (float32 index), row after row. */
  lookup(ids: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const fd = this.#fd;
    if (fd === null) throw new LfmError("INVALID_ARGUMENT", "the model was released; load it again.");
    const { dim, rowBytes, row } = this;
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.rows) {
        throw new LfmError("INVALID_ARGUMENT", `token id ${id} is outside the vocabulary (0..${this.rows - 1}).`);
      }
      const got = readSync(fd, row, 0, rowBytes, HEADER_BYTES + id * rowBytes);
      if (got !== rowBytes) throw new LfmError("GRAPH_CACHE_CORRUPT", `the embedding table ${this.path} changed on disk while in use.`);
      const base = offset + t * dim;
      if (this.bf16) {
        const halves = new Uint16Array(row.buffer);
        const words = new Uint32Array(out.buffer, out.byteOffset + base * 4, dim);
        for (let i = 0; i < dim; i++) words[i] = halves[i] << 16;
      } else {
        out.set(new Float32Array(row.buffer), base);
      }
    }
  }

  close(): void {
    if (this.#fd !== null) {
      closeSync(this.#fd);
      this.#fd = null;
    }
  }
}
