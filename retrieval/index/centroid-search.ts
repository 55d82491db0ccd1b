/**
 * Candidate stages of a plaid segment's search (PLAID's, on one segment's compressed rows; the
 * reader merges segments between stages and reranks the survivors exactly):
 *
 *  A. probe: each query vector's `nprobe` best centroids; every allowed document in their
 *     inverted lists gets, per query vector, the best score of a probed centroid it holds, or
 *     where it holds none the best score of an unprobed centroid (an upper bound);
 *  B. centroid MaxSim: Σ over query vectors of the max over the document's rows of their
 *     centroid's score (every row, not only probed ones);
 *  C. residual MaxSim: exact MaxSim over the rows decompressed (centroid + bucket weights).
 */
import type { CompressedSegment } from "./centroid-codec.ts";
import { residualBytesPerRow } from "./centroid-codec.ts";

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
  const out = new Float64Array(ordinals.length);
  const best = new Float32Array(queryRows);
  for (let i = 0; i < ordinals.length; i++) {
    const from = rowStart[ordinals[i]];
    const to = rowStart[ordinals[i] + 1];
    best.fill(-Infinity);
    for (let r = from; r < to; r++) {
      const base = s.codes[r] * queryRows;
      for (let q = 0; q < queryRows; q++) {
        const v = centroidSim[base + q];
        if (v > best[q]) best[q] = v;
      }
    }
    let total = 0;
    for (let q = 0; q < queryRows; q++) total += best[q];
    out[i] = total;
  }
  return out;
}

/**
 * Stage C's input: the rows of `ordinals` decompressed (centroid + bucket weights per dimension),
 * float32, concatenated; the caller scores them with one Gemm. Decompressing costs a few additions
 * a value, a tenth of scoring each query vector against packed residuals with lookup tables.
 */
export function decompressRows(s: CompressedSegment, rowStart: Float64Array, ordinals: Uint32Array): { data: Float32Array; rows: number; ranges: Array<{ start: number; count: number }> } {
  const { dim, nbits, weights, centroids } = s;
  const B = residualBytesPerRow(dim, nbits);
  const perByte = 8 / nbits;
  const mask = (1 << nbits) - 1;
  // The weights of the perByte values packed in each byte value.
  const decode = new Float32Array(256 * perByte);
  for (let v = 0; v < 256; v++) for (let k = 0; k < perByte; k++) decode[v * perByte + k] = weights[(v >> (k * nbits)) & mask];
  let rows = 0;
  const ranges = Array.from(ordinals, (o) => {
    const count = rowStart[o + 1] - rowStart[o];
    const r = { start: rows, count };
    rows += count;
    return r;
  });
  const data = new Float32Array(rows * dim);
  let out = 0;
  for (const o of ordinals) {
    for (let r = rowStart[o]; r < rowStart[o + 1]; r++, out += dim) {
      const c = s.codes[r] * dim;
      const res = r * B;
      for (let j = 0, d = 0; j < B; j++) {
        const v = s.residuals[res + j] * perByte;
        for (let k = 0; k < perByte && d < dim; k++, d++) data[out + d] = centroids[c + d] + decode[v + k];
      }
    }
  }
  return { data, rows, ranges };
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
