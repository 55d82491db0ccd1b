import { describe, expect, it } from "vitest";
import type { TokenEmbeddings } from "../../retrieval/colbert.ts";
import { maxSim, maxSimMatrix } from "../../retrieval/maxsim.ts";

const emb = (rows: number[][]): TokenEmbeddings => ({ rows: rows.length, dim: rows[0]?.length ?? 2, data: Float32Array.from(rows.flat()) });

describe("maxSim", () => {
  it("sums each query row's best dot product over the document rows", () => {
    const q = emb([[1, 0], [0, 1]]);
    const d = emb([[0.6, 0.8], [1, 0], [0, -1]]);
    expect(maxSim(q, d)).toBeCloseTo(1 + 0.8, 6);
  });

  it("keeps an all-negative maximum negative (no zero-padding artefact)", () => {
    expect(maxSim(emb([[1, 0]]), emb([[-0.6, 0.8], [-1, 0]]))).toBeCloseTo(-0.6, 6);
  });

  it("matrix[i][j] is maxSim(query i, document j)", () => {
    const qs = [emb([[1, 0]]), emb([[0, 1], [1, 0]])];
    const ds = [emb([[0, 1]]), emb([[1, 0], [0.6, 0.8]])];
    expect(maxSimMatrix(qs, ds)).toEqual(qs.map((q) => ds.map((d) => maxSim(q, d))));
  });

  it("rejects vectors of different widths and empty documents", () => {
    expect(() => maxSim(emb([[1, 0]]), emb([[1, 0, 0]]))).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => maxSim(emb([[1, 0]]), { rows: 0, dim: 2, data: new Float32Array(0) })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});
