/**
 * The compressed token store of a "plaid" segment (ColBERTv2/PLAID's residual compression):
 *
 *  - centroids: spherical k-means (unit centroids, nearest = largest inner product) trained on a
 *    sample of the segment's own rows, so a segment is self-contained and a merge simply trains
 *    anew on the merged rows;
 *  - per row: its centroid id (uint16) and the residual row − centroid quantised to `nbits` per
 *    dimension against bucket cutoffs shared by all dimensions (quantiles of the sample's
 *    residual values; a bucket decodes to its mid-quantile), packed 8/nbits values a byte;
 *  - an inverted list per centroid: the ordinals of the documents holding a row assigned to it
 *    (each document once), for candidate generation.
 *
 * At 128-d and 2 bits that is 2 + 32 bytes a row plus ≤ 4 bytes of inverted list; the
 * full-precision rows stay on disk (`seg-<id>.vec`) for the exact rerank.
 *
 * `seg-<id>.plaid`, little-endian, every section 4-byte aligned:
 *   header   "LFMPLAID", u32 × 8: layout version (1), dim, nbits, centroids K, rows, docs, list entries, 0
 *   float32  centroids [K × dim]; cutoffs [2^nbits − 1]; weights [2^nbits]
 *   uint16   codes [rows] (padded to 4 bytes)
 *   uint8    residuals [rows × ceil(dim·nbits/8)] (padded to 4 bytes)
 *   uint32   list offsets [K + 1]; list document ordinals [entries]
 */
import * as ort from "onnxruntime-node";
import { LfmError } from "../../text-core/errors.ts";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import { createSession } from "../../text-core/runtime.ts";
import { corrupt } from "./format.ts";
import { mulberry32 } from "./seeded-random.ts";

const MAGIC = "LFMPLAID";
const HEADER_BYTES = 8 + 8 * 4;
const LAYOUT_VERSION = 1;
/** Codes are uint16. */
export const MAX_CENTROIDS = 65_536;
export const NBITS_CHOICES = [1, 2, 4, 8] as const;

export interface CodecSettings {
  /** Bits per residual dimension (1, 2, 4 or 8). */
  nbits: number;
  /** Centroids = 2^round(log2(centroidFactor · √rows)), within [1, min(rows, 65,536)]. */
  centroidFactor: number;
  /** k-means iterations. */
  iterations: number;
  /** k-means trains on at most max(sampleFactor · K, 65,536) rows. */
  sampleFactor: number;
  seed: number;
}

export const DEFAULT_CODEC: CodecSettings = { nbits: 2, centroidFactor: 4, iterations: 4, sampleFactor: 32, seed: 17 };

/** A segment's compressed rows and inverted lists, under its codec (views into one buffer when read from disk). */
export interface CompressedSegment extends TrainedCodec {
  rows: number;
  docs: number;
  codes: Uint16Array;
  residuals: Uint8Array;
  /** Documents of centroid c: listDocs[listStart[c] … listStart[c+1]). */
  listStart: Uint32Array;
  listDocs: Uint32Array;
}

export function residualBytesPerRow(dim: number, nbits: number): number {
  return Math.ceil((dim * nbits) / 8);
}

export function centroidCountFor(rows: number, factor: number): number {
  if (rows <= 1) return 1;
  const k = 2 ** Math.round(Math.log2(factor * Math.sqrt(rows)));
  return Math.max(1, Math.min(k, rows, MAX_CENTROIDS));
}

/** Nearest centroid (largest inner product) of each row: one Gemm + ArgMax per block in onnxruntime. */
export class CentroidAssigner {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(dim: number, threads?: number): Promise<CentroidAssigner> {
    const g = new GraphBuilder("nearest_centroid");
    const x = g.input("rows", ElemType.FLOAT, ["n", dim]);
    const c = g.input("centroids", ElemType.FLOAT, ["k", dim]);
    const sim = g.op("Gemm", [x, c], "similarity", { transB: 1 });
    const code = g.op("ArgMax", [sim], "code", { axis: 1, keepdims: 0 });
    g.output(code, "code", ElemType.INT64, ["n"]);
    return new CentroidAssigner(await createSession(g.toBytes(), { threads }));
  }

  /** Codes of `n` rows; blocks keep the similarity matrix near 64 MB. */
  async assign(rows: Float32Array, n: number, dim: number, centroids: Float32Array, k: number, signal?: AbortSignal): Promise<Uint32Array> {
    const out = new Uint32Array(n);
    const block = Math.max(256, Math.floor((16 << 20) / k));
    const cTensor = new ort.Tensor("float32", centroids.subarray(0, k * dim), [k, dim]);
    for (let first = 0; first < n; first += block) {
      if (signal?.aborted) throw new LfmError("ABORTED", "the commit was cancelled; the index is unchanged.");
      const count = Math.min(block, n - first);
      let result: ort.InferenceSession.ReturnType;
      try {
        result = await this.session.run({ rows: new ort.Tensor("float32", rows.subarray(first * dim, (first + count) * dim), [count, dim]), centroids: cTensor });
      } catch (e) {
        throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while assigning centroids: ${(e as Error).message}`, { cause: e });
      }
      const codes = result.code.data as BigInt64Array;
      for (let i = 0; i < count; i++) out[first + i] = Number(codes[i]);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function normaliseRow(v: Float32Array, offset: number, dim: number): void {
  let n = 0;
  for (let d = 0; d < dim; d++) n += v[offset + d] * v[offset + d];
  n = Math.sqrt(n);
  if (n > 0) for (let d = 0; d < dim; d++) v[offset + d] /= n;
}

/** `count` distinct indices of [0, n), ascending (rejection sampling when sparse, else partial Fisher–Yates). */
function sampleIndices(n: number, count: number, next: () => number): Uint32Array<ArrayBuffer> {
  if (count >= n) return Uint32Array.from({ length: n }, (_, i) => i);
  if (count * 4 < n) {
    // Without an n-long pool: 50 M rows would need 200 MB for it.
    const picked = new Set<number>();
    while (picked.size < count) picked.add(Math.floor(next() * n));
    return Uint32Array.from(picked).sort();
  }
  const pool = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(next() * (n - i));
    const t = pool[i];
    pool[i] = pool[j];
    pool[j] = t;
  }
  return pool.slice(0, count).sort();
}

export interface TrainedCodec {
  dim: number;
  nbits: number;
  /** K centroids, row-major unit vectors. */
  centroids: Float32Array;
  centroidCount: number;
  cutoffs: Float32Array;
  weights: Float32Array;
}

/**
 * Trains centroids and residual buckets on a sample of the rows; `readRows(indices)` returns
 * those rows as float32 (the caller decodes its stored rows).
 */
export async function trainCodec(
  totalRows: number,
  dim: number,
  readRows: (indices: Uint32Array) => Float32Array,
  settings: CodecSettings,
  assigner: CentroidAssigner,
  signal?: AbortSignal,
): Promise<TrainedCodec> {
  const k = centroidCountFor(totalRows, settings.centroidFactor);
  const next = mulberry32(settings.seed);
  const sampleRows = Math.min(totalRows, Math.max(settings.sampleFactor * k, 65_536));
  const sample = readRows(sampleIndices(totalRows, sampleRows, next));
  const n = sampleRows;
  const centroids = new Float32Array(k * dim);
  const init = sampleIndices(n, k, next);
  for (let c = 0; c < k; c++) centroids.set(sample.subarray(init[c] * dim, (init[c] + 1) * dim), c * dim);
  let codes: Uint32Array = new Uint32Array(0);
  for (let it = 0; it < settings.iterations; it++) {
    codes = await assigner.assign(sample, n, dim, centroids, k, signal);
    const sums = new Float64Array(k * dim);
    const counts = new Uint32Array(k);
    for (let i = 0; i < n; i++) {
      const c = codes[i];
      counts[c]++;
      for (let d = 0; d < dim; d++) sums[c * dim + d] += sample[i * dim + d];
    }
    for (let c = 0; c < k; c++) {
      if (counts[c] === 0) {
        // An empty cluster restarts at a random sample row.
        const r = Math.floor(next() * n);
        centroids.set(sample.subarray(r * dim, (r + 1) * dim), c * dim);
        continue;
      }
      for (let d = 0; d < dim; d++) centroids[c * dim + d] = sums[c * dim + d];
      normaliseRow(centroids, c * dim, dim);
    }
  }
  codes = await assigner.assign(sample, n, dim, centroids, k, signal);
  // Bucket cutoffs and weights: quantiles of the residual values (all dimensions pooled).
  const stride = Math.max(1, Math.floor((n * dim) / 1_000_000));
  const values: number[] = [];
  for (let i = 0, at = 0; i < n; i++) {
    for (let d = 0; d < dim; d++, at++) if (at % stride === 0) values.push(sample[i * dim + d] - centroids[codes[i] * dim + d]);
  }
  const sorted = Float32Array.from(values).sort();
  const buckets = 2 ** settings.nbits;
  const quantile = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.floor(p * sorted.length)))];
  const cutoffs = Float32Array.from({ length: buckets - 1 }, (_, i) => quantile((i + 1) / buckets));
  const weights = Float32Array.from({ length: buckets }, (_, i) => quantile((i + 0.5) / buckets));
  return { dim, nbits: settings.nbits, centroids, centroidCount: k, cutoffs, weights };
}

/** Number of cutoffs ≤ v (ascending cutoffs): the bucket of a residual value. */
function bucketOf(v: number, cutoffs: Float32Array): number {
  if (cutoffs.length <= 15) {
    let b = 0;
    while (b < cutoffs.length && cutoffs[b] <= v) b++;
    return b;
  }
  let lo = 0;
  let hi = cutoffs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cutoffs[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Codes and packed residuals of rows [first, first + n), written into `codes`/`residuals` at `first`. */
export async function encodeBlock(codec: TrainedCodec, rows: Float32Array, n: number, first: number, codes: Uint16Array, residuals: Uint8Array, assigner: CentroidAssigner, signal?: AbortSignal): Promise<void> {
  const { dim, nbits, centroids, cutoffs } = codec;
  const assigned = await assigner.assign(rows, n, dim, centroids, codec.centroidCount, signal);
  const perByte = 8 / nbits;
  const bytesPerRow = residualBytesPerRow(dim, nbits);
  for (let i = 0; i < n; i++) {
    const c = assigned[i];
    codes[first + i] = c;
    const out = (first + i) * bytesPerRow;
    for (let d = 0; d < dim; d++) {
      const b = bucketOf(rows[i * dim + d] - centroids[c * dim + d], cutoffs);
      residuals[out + Math.floor(d / perByte)] |= b << ((d % perByte) * nbits);
    }
  }
}

/** Inverted lists: for each centroid the ascending, distinct ordinals of documents with a row in it. */
export function buildLists(codes: Uint16Array, docRows: number[], centroidCount: number): { listStart: Uint32Array; listDocs: Uint32Array } {
  const counts = new Uint32Array(centroidCount + 1);
  const lastDoc = new Int32Array(centroidCount).fill(-1);
  let row = 0;
  docRows.forEach((n, doc) => {
    for (let t = 0; t < n; t++, row++) {
      const c = codes[row];
      if (lastDoc[c] !== doc) {
        lastDoc[c] = doc;
        counts[c + 1]++;
      }
    }
  });
  for (let c = 0; c < centroidCount; c++) counts[c + 1] += counts[c];
  const listStart = counts.slice();
  const fill = counts.slice(0, centroidCount);
  const listDocs = new Uint32Array(listStart[centroidCount]);
  lastDoc.fill(-1);
  row = 0;
  docRows.forEach((n, doc) => {
    for (let t = 0; t < n; t++, row++) {
      const c = codes[row];
      if (lastDoc[c] !== doc) {
        lastDoc[c] = doc;
        listDocs[fill[c]++] = doc;
      }
    }
  });
  return { listStart, listDocs };
}

const pad4 = (n: number) => (n + 3) & ~3;

/** The bytes of `seg-<id>.plaid` (see the file comment). */
export function serializeCompressed(s: CompressedSegment): Uint8Array[] {
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, "latin1");
  [LAYOUT_VERSION, s.dim, s.nbits, s.centroidCount, s.rows, s.docs, s.listDocs.length, 0].forEach((v, i) => header.writeUInt32LE(v, 8 + i * 4));
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const padding = (n: number) => new Uint8Array(pad4(n) - n);
  return [
    header,
    bytes(s.centroids.subarray(0, s.centroidCount * s.dim)),
    bytes(s.cutoffs),
    bytes(s.weights),
    bytes(s.codes),
    padding(s.codes.byteLength),
    bytes(s.residuals),
    padding(s.residuals.byteLength),
    bytes(s.listStart),
    bytes(s.listDocs),
  ];
}

/** Views over the bytes of `seg-<id>.plaid`, checked against what the manifest says (path for errors). */
export function parseCompressed(data: Uint8Array, path: string, expect: { dim: number; rows: number; docs: number }): CompressedSegment {
  const buf = data.byteOffset % 4 === 0 ? data : data.slice();
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.byteLength < HEADER_BYTES || view.toString("latin1", 0, 8) !== MAGIC) throw corrupt(path, "is not a compressed segment");
  const [version, dim, nbits, k, rows, docs, entries] = Array.from({ length: 7 }, (_, i) => view.readUInt32LE(8 + i * 4));
  if (version !== LAYOUT_VERSION) throw corrupt(path, `has an unknown layout version ${version}`);
  if (dim !== expect.dim || rows !== expect.rows || docs !== expect.docs) throw corrupt(path, `holds ${rows} ${dim}-d rows of ${docs} documents, not the manifest's ${expect.rows} ${expect.dim}-d rows of ${expect.docs}`);
  if (!(NBITS_CHOICES as readonly number[]).includes(nbits) || k < 1 || k > MAX_CENTROIDS || (rows > 0 && k > rows)) throw corrupt(path, "has invalid codec settings");
  const buckets = 2 ** nbits;
  const resBytes = rows * residualBytesPerRow(dim, nbits);
  const expected = HEADER_BYTES + 4 * (k * dim + 2 * buckets - 1) + pad4(rows * 2) + pad4(resBytes) + 4 * (k + 1) + 4 * entries;
  if (view.byteLength !== expected) throw corrupt(path, `is ${view.byteLength} bytes, not the ${expected} its header implies`);
  let at = buf.byteOffset + HEADER_BYTES;
  const f32 = (n: number) => {
    const a = new Float32Array(buf.buffer, at, n);
    at += 4 * n;
    return a;
  };
  const centroids = f32(k * dim);
  const cutoffs = f32(buckets - 1);
  const weights = f32(buckets);
  const codes = new Uint16Array(buf.buffer, at, rows);
  at += pad4(rows * 2);
  const residuals = new Uint8Array(buf.buffer, at, resBytes);
  at += pad4(resBytes);
  const listStart = new Uint32Array(buf.buffer, at, k + 1);
  at += 4 * (k + 1);
  const listDocs = new Uint32Array(buf.buffer, at, entries);
  // Indices used to address other arrays must be in range: a damaged file must not crash a search.
  if (listStart[0] !== 0 || listStart[k] !== entries) throw corrupt(path, "has inconsistent inverted lists");
  for (let c = 0; c < k; c++) if (listStart[c + 1] < listStart[c]) throw corrupt(path, "has inconsistent inverted lists");
  for (let i = 0; i < entries; i++) if (listDocs[i] >= docs) throw corrupt(path, "lists a document it does not hold");
  for (let i = 0; i < rows; i++) if (codes[i] >= k) throw corrupt(path, "assigns a row to a centroid it does not hold");
  return { dim, nbits, centroids, centroidCount: k, cutoffs, weights, rows, docs, codes, residuals, listStart, listDocs };
}
