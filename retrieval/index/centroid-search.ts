/**
 * Candidate stages of a plaid segment's search (PLAID's, on one segment's compressed rows; the
 * reader merges segments between stages and reranks the survivors exactly):
 *
 *  A. probe: each query vector's `nprobe` best centroids; every allowed document in their
 *     inverted lists gets, per query vector, the best score of a probed centroid it holds, or
 *     where it holds none the best score of an unprobed centroid (an upper bound);
 *  B. centroid MaxSim: Σ over query vectors of the max over the document's rows of their
 *     centroid's score (every row, not only probed ones);
 *  C. residual MaxSim: MaxSim over the rows decompressed (centroid + bucket weights), computed as
 *     centroid score + query · decoded residual (ResidualScorer: one onnxruntime graph).
 */
import * as ort from "onnxruntime-node";
import { LfmError } from "../../text-core/errors.ts";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import { createSession } from "../../text-core/runtime.ts";
import { type CompressedSegment, residualBytesPerRow } from "./centroid-codec.ts";

export interface ScoredOrdinals {
  ordinals: Uint32Array;
  scores: Float64Array;
}

/**
 * Stage A. `centroidSim` is K × Q (centroids × query rows), row-major: a row's scores against all
 * query vectors lie together, as stage B reads them.
 */
export function probeCandidates(s: CompressedSegment, allowed: Uint8Array, centroidSim: Float32Array, queryRows: number, nprobe: number): ScoredOrdinals {
  const K = s.centroidCount;
  const Q = queryRows;
  const probes = Math.min(nprobe, K);
  const slotOf = new Int32Array(s.docs).fill(-1);
  let docs: Uint32Array = new Uint32Array(1024);
  let best: Float32Array = new Float32Array(1024 * Q);
  let used = 0;
  const floor = new Float64Array(Q);
  const top = new Int32Array(probes);
  const sim = new Float32Array(K);
  for (let q = 0; q < Q; q++) {
    for (let c = 0; c < K; c++) sim[c] = centroidSim[c * Q + q];
    const unprobedBest = topIndices(sim, probes, top);
    floor[q] = unprobedBest;
    for (let p = 0; p < probes; p++) {
      const c = top[p];
      const score = sim[c];
      for (let i = s.listStart[c]; i < s.listStart[c + 1]; i++) {
        const doc = s.listDocs[i];
        if (allowed[doc] === 0) continue;
        let slot = slotOf[doc];
        if (slot < 0) {
          if (used === docs.length) {
            docs = grow(docs, used * 2) as Uint32Array;
            best = grow(best, used * 2 * Q) as Float32Array;
          }
          slot = used++;
          slotOf[doc] = slot;
          docs[slot] = doc;
          best.fill(Number.NaN, slot * Q, (slot + 1) * Q);
        }
        // Lists are visited best centroid first for each q: the first score seen is the best.
        if (Number.isNaN(best[slot * Q + q])) best[slot * Q + q] = score;
      }
    }
  }
  const scores = new Float64Array(used);
  for (let slot = 0; slot < used; slot++) {
    let total = 0;
    for (let q = 0; q < Q; q++) {
      const b = best[slot * Q + q];
      total += Number.isNaN(b) ? floor[q] : b;
    }
    scores[slot] = total;
  }
  return { ordinals: docs.slice(0, used), scores };
}

/** Stage B: Σ_q max over the document's rows of centroidSim[q, code(row)]. */
export function centroidMaxSim(s: CompressedSegment, rowStart: Float64Array, ordinals: Uint32Array, centroidSim: Float32Array, queryRows: number): Float64Array {
  const { codes } = s;
  const Q = queryRows | 0;
  const out = new Float64Array(ordinals.length);
  const best = new Float32Array(Q);
  // seenBy[c] = 1 + the last document that had a row in centroid c: a passage's rows often share
  // centroids (a repeated word), and a centroid's scores count once towards the max.
  const seenBy = new Int32Array(s.centroidCount);
  for (let i = 0; i < ordinals.length; i++) {
    // Small integers (rows < 2^31): indices V8 keeps as int32, not doubles read from rowStart.
    const from = rowStart[ordinals[i]] | 0;
    const to = rowStart[ordinals[i] + 1] | 0;
    best.fill(-Infinity);
    for (let r = from; r < to; r++) {
      const code = codes[r];
      if (seenBy[code] === i + 1) continue;
      seenBy[code] = i + 1;
      const base = code * Q;
      for (let q = 0; q < Q; q++) {
        const v = centroidSim[base + q];
        if (v > best[q]) best[q] = v;
      }
    }
    let total = 0;
    for (let q = 0; q < Q; q++) total += best[q];
    out[i] = total;
  }
  return out;
}

/**
 * Stage C in onnxruntime: per row, centroidSim[code(row)] + query · decoded residual, [rows × Q]
 * (row-major, a row's scores together; rowMaxSim reduces them per document). The residual bytes
 * go in packed and are decoded in the graph by a lookup (Gather) in a table of the bucket weights
 * of every byte value, so no float copy of the rows is made in JavaScript; q·centroid is the
 * known centroid score, so the centroids are not read. One scorer per index (settings differ per
 * residual width only, which is the same for every segment of an index); concurrent calls are fine.
 */
export class ResidualScorer {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly dim: number,
    readonly nbits: number,
  ) {}

  static async create(dim: number, nbits: number, threads?: number): Promise<ResidualScorer> {
    const perByte = 8 / nbits;
    const bytes = residualBytesPerRow(dim, nbits);
    const g = new GraphBuilder(`plaid_residual_scores_${nbits}bit`);
    const packed = g.input("packed", ElemType.UINT8, ["rows", bytes]);
    const decode = g.input("decode", ElemType.FLOAT, [256, perByte]);
    const query = g.input("query", ElemType.FLOAT, ["query_rows", dim]);
    const centroidSim = g.input("centroid_sim", ElemType.FLOAT, ["centroids", "query_rows"]);
    const codes = g.input("codes", ElemType.INT32, ["rows"]);
    const values = g.op("Gather", [decode, g.op("Cast", [packed], "packed.int", { to: ElemType.INT32 })], "residual.values", { axis: 0 }); // [rows, bytes, perByte]
    let residual = g.op("Reshape", [values, g.constInt64([0, -1])], "residual"); // [rows, bytes · perByte]
    if (bytes * perByte !== dim) residual = g.op("Slice", [residual, g.constInt64([0]), g.constInt64([dim]), g.constInt64([1])], "residual.dim");
    const residualSim = g.op("Gemm", [residual, query], "residual.sim", { transB: 1 }); // [rows, Q]
    const rowCentroidSim = g.op("Gather", [centroidSim, codes], "centroid.sim", { axis: 0 }); // [rows, Q]
    const scores = g.op("Add", [rowCentroidSim, residualSim], "scores");
    g.output(scores, "scores", ElemType.FLOAT, ["rows", "query_rows"]);
    return new ResidualScorer(await createSession(g.toBytes(), { threads }), dim, nbits);
  }

  /** Stage C's MaxSim of the documents `ordinals` of a segment; `centroidSim` as in probeCandidates (K × Q). */
  async score(s: CompressedSegment, rowStart: Float64Array, ordinals: Uint32Array, centroidSim: Float32Array, query: Float32Array, queryRows: number): Promise<Float64Array> {
    const B = residualBytesPerRow(s.dim, s.nbits);
    const perByte = 8 / s.nbits;
    const mask = (1 << s.nbits) - 1;
    const decode = new Float32Array(256 * perByte);
    for (let v = 0; v < 256; v++) for (let k = 0; k < perByte; k++) decode[v * perByte + k] = s.weights[(v >> (k * s.nbits)) & mask];
    let rows = 0;
    const ranges = Array.from(ordinals, (o) => {
      const count = rowStart[o + 1] - rowStart[o];
      const r = { start: rows, count };
      rows += count;
      return r;
    });
    if (rows === 0) return new Float64Array(ordinals.length).fill(-Infinity);
    const packed = new Uint8Array(rows * B);
    const codes = new Int32Array(rows);
    ordinals.forEach((o, i) => {
      const from = rowStart[o];
      const to = rowStart[o + 1];
      packed.set(s.residuals.subarray(from * B, to * B), ranges[i].start * B);
      codes.set(s.codes.subarray(from, to), ranges[i].start);
    });
    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.session.run({
        packed: new ort.Tensor("uint8", packed, [rows, B]),
        decode: new ort.Tensor("float32", decode, [256, perByte]),
        query: new ort.Tensor("float32", query.subarray(0, queryRows * s.dim), [queryRows, s.dim]),
        centroid_sim: new ort.Tensor("float32", centroidSim, [s.centroidCount, queryRows]),
        codes: new ort.Tensor("int32", codes, [rows]),
      });
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while scoring residuals: ${(e as Error).message}`, { cause: e });
    }
    return rowMaxSim(result.scores.data as Float32Array, queryRows, ranges);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Σ_q max over the document's rows of scores[row, q] (rows × Q, row-major); an empty range scores −∞. */
export function rowMaxSim(scores: Float32Array, queryRows: number, ranges: Array<{ start: number; count: number }>): Float64Array {
  const Q = queryRows | 0;
  const out = new Float64Array(ranges.length);
  const best = new Float32Array(Q);
  for (let i = 0; i < ranges.length; i++) {
    const from = ranges[i].start;
    const to = from + ranges[i].count;
    if (to === from) {
      out[i] = -Infinity;
      continue;
    }
    best.fill(-Infinity);
    for (let t = from; t < to; t++) {
      const r = t * Q;
      for (let q = 0; q < Q; q++) {
        const v = scores[r + q];
        if (v > best[q]) best[q] = v;
      }
    }
    let total = 0;
    for (let q = 0; q < Q; q++) total += best[q];
    out[i] = total;
  }
  return out;
}

/**
 * Puts the indices of the `count` largest values of `v` into `out`, best first; returns the
 * largest value not taken (−∞ when none is left).
 */
function topIndices(v: Float32Array, count: number, out: Int32Array): number {
  // A small sorted buffer: count is small (tens) next to the centroids (thousands).
  let n = 0;
  let rest = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (n < count) {
      let j = n++;
      while (j > 0 && v[out[j - 1]] < x) {
        out[j] = out[j - 1];
        j--;
      }
      out[j] = i;
    } else if (x > v[out[count - 1]]) {
      rest = Math.max(rest, v[out[count - 1]]);
      let j = count - 1;
      while (j > 0 && v[out[j - 1]] < x) {
        out[j] = out[j - 1];
        j--;
      }
      out[j] = i;
    } else if (x > rest) rest = x;
  }
  return rest;
}

function grow<T extends Uint32Array | Float32Array>(a: T, size: number): T {
  const b = new (a.constructor as new (n: number) => T)(size);
  b.set(a);
  return b;
}
