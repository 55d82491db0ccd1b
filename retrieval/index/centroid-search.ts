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
 *     centroid score + query · decoded residual (one Gemm over the residuals only).
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
 * Stage C, first half: the residuals alone (bucket weights, without the centroid) of the rows of
 * `ordinals`, float32, concatenated, for one Gemm against the query: q·row = q·centroid + q·residual,
 * and q·centroid is already known (the centroid scores), so the centroids need not be read (a
 * random 512-byte row each, from a table of megabytes). Also each row's centroid id and where each
 * document's rows lie.
 */
export function decodeResiduals(s: CompressedSegment, rowStart: Float64Array, ordinals: Uint32Array): { data: Float32Array; rows: number; codes: Uint16Array; ranges: Array<{ start: number; count: number }> } {
  const { dim, nbits, weights } = s;
  const B = residualBytesPerRow(dim, nbits);
  const perByte = 8 / nbits;
  const mask = (1 << nbits) - 1;
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
  const codes = new Uint16Array(rows);
  const whole = Math.floor(dim / perByte);
  const residuals = s.residuals;
  let out = 0;
  let row = 0;
  for (let i = 0; i < ordinals.length; i++) {
    const from = rowStart[ordinals[i]] | 0;
    const to = rowStart[ordinals[i] + 1] | 0;
    codes.set(s.codes.subarray(from, to), row);
    row += to - from;
    for (let r = from; r < to; r++, out += dim) {
      const res = r * B;
      let d = out;
      if (perByte === 4) {
        for (let j = 0; j < whole; j++, d += 4) {
          const v = residuals[res + j] << 2;
          data[d] = decode[v];
          data[d + 1] = decode[v + 1];
          data[d + 2] = decode[v + 2];
          data[d + 3] = decode[v + 3];
        }
      } else {
        for (let j = 0; j < whole; j++) {
          const v = residuals[res + j] * perByte;
          for (let k = 0; k < perByte; k++, d++) data[d] = decode[v + k];
        }
      }
      if (d < out + dim) {
        const v = residuals[res + whole] * perByte;
        for (let k = 0; d < out + dim; k++, d++) data[d] = decode[v + k];
      }
    }
  }
  return { data, rows, codes, ranges };
}

/**
 * Stage C, second half: Σ_q max over the document's rows of (centroidSim[code(row), q] +
 * residualSim[row, q]), from the residual × query similarities (rows × Q, row-major: like the
 * centroid scores, a row's scores lie together).
 */
export function residualMaxSim(residualSim: Float32Array, queryRows: number, codes: Uint16Array, ranges: Array<{ start: number; count: number }>, centroidSim: Float32Array): Float64Array {
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
      const c = codes[t] * Q;
      const r = t * Q;
      for (let q = 0; q < Q; q++) {
        const v = centroidSim[c + q] + residualSim[r + q];
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
