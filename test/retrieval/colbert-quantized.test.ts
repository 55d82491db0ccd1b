import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ColbertEncoder, type TokenEmbeddings } from "../../retrieval/colbert.ts";
import { maxSimMatrix } from "../../retrieval/maxsim.ts";
import type { Precision } from "../../text-core/graph/precision.ts";
import { FIXTURES, TEST_CACHE, errorStats, readJson } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "retrieval/tiny-lfm2-colbert");
const { queries, documents } = readJson<{ queries: string[]; documents: string[] }>("retrieval/reference.json");
const flat = (rows: TokenEmbeddings[]) => Float32Array.from(rows.flatMap((r) => Array.from(r.data)));
const argmax = (xs: number[]) => xs.indexOf(Math.max(...xs));

describe("quantised ColBERT encoder vs float32 (fixtures/retrieval/tiny-lfm2-colbert)", () => {
  const encoded = new Map<Precision, { queries: TokenEmbeddings[]; documents: TokenEmbeddings[] }>();
  beforeAll(async () => {
    for (const precision of ["fp32", "q8", "q4"] as const) {
      const encoder = await ColbertEncoder.load(MODEL, { precision, threads: 2, cacheDir: TEST_CACHE });
      encoded.set(precision, { queries: await encoder.encodeQueries(queries), documents: await encoder.encodeDocuments(documents) });
      await encoder.release();
    }
  }, 300_000);

  // Measured on this 16-d random model (5 queries × 10 documents): q8 vectors relL2 7.1e-2, MaxSim
  // max abs 0.20, same top document for 4/5 queries; q4 5.5e-1, 0.95, 3/5. A random tiny model
  // quantises far worse than a trained one, but the ratio holds: q4 is ~8× further from float32,
  // one reason (besides prompt-speed, bench:colbert) the encoder defaults to q8.
  it.each([
    ["q8", 0.1, 0.3],
    ["q4", 0.75, 1.3],
  ] as const)("%s vectors and MaxSim scores stay within the measured distance of float32", (precision, vectorBound, scoreBound) => {
    const exact = encoded.get("fp32")!;
    const quantised = encoded.get(precision)!;
    const vectors = errorStats(flat([...quantised.queries, ...quantised.documents]), flat([...exact.queries, ...exact.documents]));
    const exactScores = maxSimMatrix(exact.queries, exact.documents);
    const scores = maxSimMatrix(quantised.queries, quantised.documents);
    const scoreError = Math.max(...scores.flatMap((row, q) => row.map((s, d) => Math.abs(s - exactScores[q][d]))));
    const sameTop = scores.filter((row, q) => argmax(row) === argmax(exactScores[q])).length;
    console.log(`colbert ${precision} vs fp32: vectors relL2 ${vectors.relL2.toExponential(2)}, MaxSim max abs ${scoreError.toExponential(2)}, same top document ${sameTop}/${queries.length}`);
    expect(vectors.relL2).toBeLessThan(vectorBound);
    expect(scoreError).toBeLessThan(scoreBound);
    expect(vectors.relL2).toBeGreaterThan(0); // really another graph
  });

  it("loads at q8 unless asked otherwise", async () => {
    const encoder = await ColbertEncoder.load(MODEL, { threads: 2, cacheDir: TEST_CACHE });
    expect(encoder.precision).toBe("q8");
    await encoder.release();
  });
});
