import { beforeAll, afterAll, describe, expect, it } from "vitest";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { maxSim } from "../../retrieval/maxsim.ts";
import { TEST_CACHE, expectClose } from "../helpers/reference.ts";
import { realshapeReference } from "../helpers/realshape.ts";
import { type RealshapeColbertReference, realshapeColbertCheckpoint } from "./realshape-colbert.ts";

// LFM2-ColBERT-350M's published shapes (1024 hidden, 16 layers, 65536 vocabulary, 1024→128
// projection, query_length 32, document_length 512), legacy 4.5x config, PyLate files without
// sentence_bert_config.json (plain text, no chat template); reference computed in float32.
describe("LFM2-ColBERT-350M shape (closed-form weights) matches the float32 reference", () => {
  const ref = realshapeReference<RealshapeColbertReference>("lfm2-colbert-350m");
  let encoder: ColbertEncoder;
  beforeAll(async () => {
    encoder = await ColbertEncoder.load(realshapeColbertCheckpoint(), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  }, 600_000);
  afterAll(async () => encoder?.release());

  it("tokenises query and document exactly (BOS, prefix id 65534/65535, expansion to 32)", () => {
    const query = encoder.tokenizeQuery(ref.query);
    expect(query.slice(0, ref.query_real_ids.length)).toEqual(ref.query_real_ids);
    expect(query.length).toBe(32);
    expect(new Set(query.slice(ref.query_real_ids.length))).toEqual(new Set([encoder.tokenizer.expansionId]));
    expect(encoder.tokenizeDocument(ref.document)).toEqual(ref.doc_ids);
    expect(encoder.dim).toBe(128);
  });

  it("real query rows and every document row are within tolerance; MaxSim over them too", async () => {
    const [query] = await encoder.encodeQueries([ref.query]);
    const [doc] = await encoder.encodeDocuments([ref.document]);
    expect([query.rows, query.dim]).toEqual([32, 128]);
    expect(doc.rows).toBe(ref.doc_rows.length);
    const realRows = query.data.subarray(0, ref.query_real_rows.length * 128);
    expectClose(realRows, ref.query_real_rows.flat(), "query_real_rows");
    expectClose(doc.data, ref.doc_rows.flat(), "doc_rows");
    const real = { rows: ref.query_real_rows.length, dim: 128, data: realRows };
    const expected = maxSim({ rows: real.rows, dim: 128, data: Float32Array.from(ref.query_real_rows.flat()) }, { rows: doc.rows, dim: 128, data: Float32Array.from(ref.doc_rows.flat()) });
    expect(Math.abs(maxSim(real, doc) - expected)).toBeLessThanOrEqual(1e-3);
  });
});
