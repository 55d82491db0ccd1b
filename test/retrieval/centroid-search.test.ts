/** The plaid search stages on hand-made compressed rows, against the definitions computed plainly. */
import { describe, expect, it } from "vitest";
import { type CompressedSegment, residualBytesPerRow } from "../../retrieval/index/centroid-codec.ts";
import { ResidualScorer, centroidMaxSim } from "../../retrieval/index/centroid-search.ts";
import { mulberry32 } from "../../retrieval/index/seeded-random.ts";

/** Random compressed rows: `docRows[d]` rows for document d, K centroids, residual buckets packed LSB first. */
function segment(dim: number, nbits: number, K: number, docRows: number[], seed: number): { s: CompressedSegment; rowStart: Float64Array; buckets: Uint8Array } {
  const next = mulberry32(seed);
  const rows = docRows.reduce((a, b) => a + b, 0);
  const B = residualBytesPerRow(dim, nbits);
  const perByte = 8 / nbits;
  const codes = Uint16Array.from({ length: rows }, () => Math.floor(next() * K));
  const buckets = Uint8Array.from({ length: rows * dim }, () => Math.floor(next() * 2 ** nbits));
  const residuals = new Uint8Array(rows * B);
  for (let r = 0; r < rows; r++) for (let d = 0; d < dim; d++) residuals[r * B + Math.floor(d / perByte)] |= buckets[r * dim + d] << ((d % perByte) * nbits);
  const rowStart = new Float64Array(docRows.length + 1);
  docRows.forEach((n, d) => (rowStart[d + 1] = rowStart[d] + n));
  const s: CompressedSegment = {
    dim,
    nbits,
    centroids: Float32Array.from({ length: K * dim }, () => next() - 0.5),
    centroidCount: K,
    cutoffs: new Float32Array(2 ** nbits - 1),
    weights: Float32Array.from({ length: 2 ** nbits }, (_, i) => (i - 2 ** (nbits - 1) + 0.5) * 0.05),
    rows,
    docs: docRows.length,
    codes,
    residuals,
    listStart: new Uint32Array(K + 1),
    listDocs: new Uint32Array(0),
  };
  return { s, rowStart, buckets };
}

describe("plaid stages", () => {
  for (const [nbits, dim] of [
    [2, 32],
    [2, 30],
    [1, 29],
    [4, 33],
    [8, 16],
  ] as const) {
    it(`residual MaxSim (${nbits}-bit, ${dim}-d) is Σ_q max over rows of q·(centroid + decoded residual); centroid MaxSim of q·centroid`, async () => {
      const Q = 5;
      const K = 7;
      const docRows = [3, 1, 0, 6, 4, 2];
      const { s, rowStart, buckets } = segment(dim, nbits, K, docRows, 40 + nbits + dim);
      const next = mulberry32(3);
      const query = Float32Array.from({ length: Q * dim }, () => next() - 0.5);
      const dot = (q: number, row: (d: number) => number) => {
        let t = 0;
        for (let d = 0; d < dim; d++) t += query[q * dim + d] * row(d);
        return t;
      };
      // K × Q, as the reader computes it.
      const centroidSim = new Float32Array(K * Q);
      for (let c = 0; c < K; c++) for (let q = 0; q < Q; q++) centroidSim[c * Q + q] = dot(q, (d) => s.centroids[c * dim + d]);
      const expected = (score: (q: number, r: number) => number) =>
        docRows.map((n, doc) => {
          if (n === 0) return -Infinity;
          let total = 0;
          for (let q = 0; q < Q; q++) {
            let best = -Infinity;
            for (let r = rowStart[doc]; r < rowStart[doc + 1]; r++) best = Math.max(best, score(q, r));
            total += best;
          }
          return total;
        });
      const ordinals = Uint32Array.from(docRows.keys()).reverse(); // any order
      const order = Array.from(ordinals);

      const scorer = await ResidualScorer.create(dim, nbits, 1);
      const got = await scorer.score(s, rowStart, ordinals, centroidSim, query, Q);
      await scorer.release();
      const residualWant = expected((q, r) => dot(q, (d) => s.centroids[s.codes[r] * dim + d] + s.weights[buckets[r * dim + d]]));
      order.forEach((doc, i) => (Number.isFinite(residualWant[doc]) ? expect(got[i]).toBeCloseTo(residualWant[doc], 4) : expect(got[i]).toBe(-Infinity)));

      const centroidOnly = centroidMaxSim(s, rowStart, ordinals.filter((o) => docRows[o] > 0), centroidSim, Q);
      const centroidWant = expected((q, r) => centroidSim[s.codes[r] * Q + q]);
      order.filter((o) => docRows[o] > 0).forEach((doc, i) => expect(centroidOnly[i]).toBeCloseTo(centroidWant[doc], 5));
    });
  }
});
