import { beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { TextModel } from "../../text-core/model.ts";
import { generate } from "../../text-core/generate.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, expectClose, readJson } from "../helpers/reference.ts";

interface TextReference {
  greedy: { prompt_ids: number[]; new_ids: number[] };
  incremental: { prefill: number };
}

describe("LFM2 core matches HF Lfm2ForCausalLM on fixtures/text/tiny-lfm2", () => {
  const ref = new ReferenceTensors("text/reference.safetensors");
  const json = readJson<TextReference>("text/reference.json");
  let model: TextModel;
  beforeAll(async () => {
    model = await TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision: "fp32", exposeHidden: true, threads: 2 });
  });

  it("forward logits and every hidden state are within tolerance", async () => {
    const ids = ref.ints("forward.input_ids");
    const state = model.runtime.newState(1);
    const out = await model.runtime.forward(state, { ids: [ids], keep: ids.length, extraOutputs: model.runtime.io.hiddenOutputs });
    expectClose(out.output, ref.float("forward.logits"), "forward.logits");
    for (let k = 0; k <= model.config.numLayers; k++) {
      expectClose(out.extra[`hidden.${k}`].data as Float32Array, ref.float(`forward.hidden.${k}`), `forward.hidden.${k}`);
    }
  });

  it("incremental decoding (prefill 9, then one token at a time) gives the reference last logits", async () => {
    const ids = ref.ints("forward.input_ids");
    const expected = ref.float("incremental.last_logits");
    const V = model.config.vocabSize;
    const P = json.incremental.prefill;
    // A 4-position KV buffer to start with: the cache must grow (keeping its contents) 5 times.
    const state = model.runtime.newState(1, 4);
    const rows: Float32Array[] = [(await model.runtime.forward(state, { ids: [ids.slice(0, P)] })).output.slice()];
    for (let t = P; t < ids.length; t++) rows.push((await model.runtime.forward(state, { ids: [[ids[t]]] })).output.slice());
    expect(rows.length * V).toBe(expected.length);
    const got = new Float32Array(expected.length);
    rows.forEach((r, k) => got.set(r, k * V));
    expectClose(got, expected, "incremental.last_logits");
  });

  it("greedy generation reproduces HF generate(do_sample=False) exactly", async () => {
    const ids: number[] = [];
    for await (const t of generate(model.runtime, json.greedy.prompt_ids, { maxTokens: json.greedy.new_ids.length, stopTokenIds: [] })) ids.push(t.id);
    expect(ids).toEqual(json.greedy.new_ids);
  });

  it("a left-padded batch matches the reference logits at every non-pad position", async () => {
    const [B, S] = ref.shape("batch.input_ids");
    const flatIds = ref.ints("batch.input_ids");
    const flatMask = ref.ints("batch.attention_mask");
    const ids = Array.from({ length: B }, (_, b) => flatIds.slice(b * S, (b + 1) * S));
    const mask = Array.from({ length: B }, (_, b) => flatMask.slice(b * S, (b + 1) * S));
    const out = await model.runtime.forward(model.runtime.newState(B), { ids, mask, keep: S });
    const expected = ref.float("batch.logits");
    const V = model.config.vocabSize;
    const got: number[] = [];
    const want: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        if (!mask[b][s]) continue;
        const at = (b * S + s) * V;
        got.push(...out.output.subarray(at, at + V));
        want.push(...expected.subarray(at, at + V));
      }
    }
    expect(mask.some((row) => row.includes(0)), "the fixture batch is padded").toBe(true);
    expectClose(got, want, "batch.logits (non-pad positions)");
  });

  it("a prompt run in pieces (prefillChunk) gives the same logits at every position; a batch is unaffected", async () => {
    const chunked = await TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2, prefillChunk: 16 });
    try {
      const ids = ref.ints("forward.input_ids"); // 93 tokens: 5 full pieces and a partial one
      const out = await chunked.runtime.forward(chunked.runtime.newState(1), { ids: [ids], keep: ids.length });
      expectClose(out.output, ref.float("forward.logits"), "forward.logits in pieces of 16");
      // keep reaching back into the previous piece only
      const V = chunked.config.vocabSize;
      const tail = await chunked.runtime.forward(chunked.runtime.newState(1), { ids: [ids], keep: 20 });
      expectClose(tail.output, ref.float("forward.logits").subarray((ids.length - 20) * V), "last 20 positions in pieces");

      const [B, S] = ref.shape("batch.input_ids");
      const flatIds = ref.ints("batch.input_ids");
      const flatMask = ref.ints("batch.attention_mask");
      const batchIds = Array.from({ length: B }, (_, b) => flatIds.slice(b * S, (b + 1) * S));
      const mask = Array.from({ length: B }, (_, b) => flatMask.slice(b * S, (b + 1) * S));
      const small = await TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2, prefillChunk: 3 });
      try {
        const whole = await model.runtime.forward(model.runtime.newState(B), { ids: batchIds, mask, keep: S });
        const pieces = await small.runtime.forward(small.runtime.newState(B), { ids: batchIds, mask, keep: S });
        for (let b = 0; b < B; b++) {
          for (let s = 0; s < S; s++) {
            if (!mask[b][s]) continue;
            const at = (b * S + s) * V;
            expectClose(pieces.output.subarray(at, at + V), whole.output.subarray(at, at + V), `batch row ${b} position ${s} with prefillChunk 3`);
          }
        }
      } finally {
        await small.release();
      }
    } finally {
      await chunked.release();
    }
  });

  it("token ids outside the vocabulary are a typed error, not an onnxruntime failure", async () => {
    const V = model.config.vocabSize;
    for (const bad of [V, -1, 2.5]) {
      await expect(model.runtime.forward(model.runtime.newState(1), { ids: [[1, bad]] })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("outside the vocabulary") });
    }
  });

  it("a reset state gives the same logits as a fresh one (buffers reused)", async () => {
    const ids = ref.ints("forward.input_ids");
    const state = model.runtime.newState(1, 8);
    await model.runtime.forward(state, { ids: [ids.slice(40)] });
    await model.runtime.forward(state, { ids: [[5]] });
    state.reset();
    expect(state.length).toBe(0);
    const again = await model.runtime.forward(state, { ids: [ids], keep: ids.length });
    expectClose(again.output, ref.float("forward.logits"), "forward.logits after reset");
  });
});
