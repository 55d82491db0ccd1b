/**
 * A prompt prefix prefilled once and its decode state copied for each prompt (DecodeState.clone,
 * prefillPrefix, GenerateOptions.prefix): the same logits as one full prefill (DESIGN.md
 * tolerances, and against the reference), the same greedy tokens, and the prefix state never
 * advanced by a use.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GeneratedToken, generate, prefillPrefix } from "../../text-core/generate.ts";
import { TextModel } from "../../text-core/model.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, expectClose, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const greedy = readJson<{ greedy: { prompt_ids: number[]; new_ids: number[] } }>("text/reference.json").greedy;
const ref = new ReferenceTensors("text/reference.safetensors");
/** The reference forward pass: 93 tokens and their logits [93, V]. */
const FORWARD_IDS = ref.ints("forward.input_ids");
const FORWARD_LOGITS = ref.float("forward.logits");

async function collect(tokens: AsyncIterable<GeneratedToken>): Promise<number[]> {
  const ids: number[] = [];
  for await (const t of tokens) ids.push(t.id);
  return ids;
}

let model: TextModel;
beforeAll(async () => {
  model = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
});
afterAll(async () => {
  await model?.release();
});

describe("prefix state reuse", () => {
  it("a cloned prefix state + the rest gives the logits of a full prefill (and of the reference)", async () => {
    const V = model.config.vocabSize;
    const split = 37;
    const rt = model.runtime;
    const full = (await rt.forward(rt.newState(1), { ids: [FORWARD_IDS], keep: FORWARD_IDS.length })).output;

    const prefix = await prefillPrefix(rt, FORWARD_IDS.slice(0, split));
    const rest = FORWARD_IDS.slice(split);
    const reused = (await rt.forward(prefix.state.clone(), { ids: [rest], keep: rest.length })).output;
    expectClose(reused, full.subarray(split * V), "prefix clone + rest vs full prefill");
    expectClose(reused, FORWARD_LOGITS.subarray(split * V), "prefix clone + rest vs reference");
    // The prefix's own last logits are the full run's at its last position.
    expectClose(prefix.logits, full.subarray((split - 1) * V, split * V), "prefix logits");

    // A use never advances the prefix: a second clone gives bit-identical logits.
    expect(prefix.state.length).toBe(split);
    const again = (await rt.forward(prefix.state.clone(), { ids: [rest], keep: rest.length })).output;
    expect(Array.from(again)).toEqual(Array.from(reused));
  });

  it("a clone is independent of its source (conv windows and KV rows are copies)", async () => {
    const rt = model.runtime;
    const state = rt.newState(1);
    await rt.forward(state, { ids: [FORWARD_IDS.slice(0, 20)] });
    const copy = state.clone();
    await rt.forward(state, { ids: [FORWARD_IDS.slice(20, 40)] });
    expect(copy.length).toBe(20);
    expect(copy.nextPosition).toEqual([20]);
    // The copy continues as the source did, from position 20.
    const fromCopy = (await rt.forward(copy, { ids: [FORWARD_IDS.slice(20, 40)] })).output;
    const fresh = rt.newState(1);
    const direct = (await rt.forward(fresh, { ids: [FORWARD_IDS.slice(0, 40)] })).output;
    expectClose(fromCopy, direct, "continued clone vs one run");
  });

  it("generate with a prefix gives the greedy tokens of a full prefill, across KV regrowth", async () => {
    const prompt = greedy.prompt_ids;
    const prefix = await model.prefillPrefix(prompt.slice(0, 50));
    const withPrefix = await collect(generate(model.runtime, prompt, { maxTokens: 24, temperature: 0, prefix }));
    expect(withPrefix).toEqual(greedy.new_ids);
    // Long enough that the cloned KV caches grow past their copied size (stride step 64).
    const long = await collect(generate(model.runtime, prompt, { maxTokens: 90, temperature: 0, stopTokenIds: [], prefix }));
    const longFull = await collect(generate(model.runtime, prompt, { maxTokens: 90, temperature: 0, stopTokenIds: [] }));
    expect(long).toEqual(longFull);
    // A prompt that is the prefix alone, and one that does not start with it (full prefill).
    const alone = await collect(generate(model.runtime, prompt.slice(0, 50), { maxTokens: 8, temperature: 0, prefix }));
    expect(alone).toEqual(await collect(generate(model.runtime, prompt.slice(0, 50), { maxTokens: 8, temperature: 0 })));
    const other = [1, ...prompt.slice(5)];
    expect(await collect(generate(model.runtime, other, { maxTokens: 8, temperature: 0, prefix }))).toEqual(
      await collect(generate(model.runtime, other, { maxTokens: 8, temperature: 0 })),
    );
  });

  it("refuses an empty prefix and embedding overrides beside a prefix", async () => {
    await expectCode(prefillPrefix(model.runtime, []), "EMPTY_PROMPT");
    const prefix = await model.prefillPrefix(greedy.prompt_ids.slice(0, 10));
    const D = model.config.hiddenSize;
    await expectCode(
      collect(generate(model.runtime, greedy.prompt_ids, { maxTokens: 2, prefix, promptOverrides: { index: [12], values: new Float32Array(D) } })),
      "INVALID_ARGUMENT",
      "promptOverrides",
    );
  });
});
