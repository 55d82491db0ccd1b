/**
 * `logprobs: true` on the tiny fixture model: the same tokens as without it (greedy, sampled,
 * constrained), one finite log-probability ≤ 0 per token, and the value is the log-softmax of the
 * chosen token over the (masked) logits at temperature 1.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GeneratedToken, generate, logSoftmaxAt, topLogSoftmax } from "../../text-core/generate.ts";
import { TextModel } from "../../text-core/model.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const SCHEMA = {
  type: "object",
  properties: { serial: { type: "string", maxLength: 10 }, pressure: { type: "integer", minimum: 0, maximum: 400 }, ok: { type: "boolean" } },
  required: ["serial", "pressure", "ok"],
  additionalProperties: false,
};

let model: TextModel;
let prompt: number[];
beforeAll(async () => {
  model = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  prompt = model.chatIds([{ role: "user", content: "Pump P-7 reads 31 bar." }]);
});
afterAll(async () => {
  await model?.release();
});

describe("generation with logprobs", () => {
  it("gives the same ids as without, and one finite log-probability ≤ 0 per token", async () => {
    const cases = [
      { maxTokens: 12 },
      { maxTokens: 12, temperature: 1, seed: 3 },
      { maxTokens: 12, temperature: 0.7, topK: 20, repetitionPenalty: 1.3, seed: 5 },
      { maxTokens: 40, temperature: 1, seed: 9, responseFormat: { type: "json_schema" as const, schema: SCHEMA } },
      { maxTokens: 40, responseFormat: { type: "json_schema" as const, schema: SCHEMA } },
    ];
    for (const opts of cases) {
      const plain = await model.complete(prompt, opts);
      const scored = await model.complete(prompt, { ...opts, logprobs: true });
      expect(scored.ids, JSON.stringify(opts)).toEqual(plain.ids);
      expect(plain.logprobs).toBeUndefined();
      expect(scored.logprobs).toHaveLength(scored.ids.length);
      for (const lp of scored.logprobs!) {
        expect(Number.isFinite(lp)).toBe(true);
        expect(lp).toBeLessThanOrEqual(0);
      }
    }
  });

  it("is the log-softmax of the chosen token at temperature 1, and 0 for tokens the grammar forces", async () => {
    // The first new token, unconstrained: recompute from the prompt's logits.
    const state = model.runtime.newState(1);
    const logits = (await model.runtime.forward(state, { ids: [prompt.slice()] })).output;
    const first = await generate(model.runtime, prompt, { maxTokens: 1, temperature: 1, seed: 11, logprobs: true }).next();
    const token = first.value as { id: number; logprob: number };
    let max = -Infinity;
    for (const x of logits) max = Math.max(max, x);
    let sum = 0;
    for (const x of logits) sum += Math.exp(x - max);
    expect(token.logprob).toBeCloseTo(logits[token.id] - max - Math.log(sum), 5);
    expect(logSoftmaxAt(Float32Array.from([0, Math.log(3), -Infinity]), 1)).toBeCloseTo(Math.log(0.75), 7); // log(3) rounded to float32

    // A one-character regex leaves exactly one token allowed: it is forced, with probability 1.
    const forced = await model.complete(prompt, { maxTokens: 4, responseFormat: { type: "regex", pattern: "x" }, logprobs: true });
    expect(forced.text).toBe("x");
    expect(forced.logprobs).toEqual([0]);
  });

  it("topLogprobs: the most likely ids of the same distribution, without changing a token", async () => {
    expect(topLogSoftmax(Float32Array.from([1, 3, -Infinity, 3, 2]), 3).map((t) => t.id)).toEqual([1, 3, 4]); // ties: lower id first
    expect(topLogSoftmax(Float32Array.from([0, -Infinity]), 5)).toEqual([{ id: 0, logprob: 0 }]); // a masked id is never listed
    const collect = async (opts: Parameters<typeof generate>[2]) => {
      const out: GeneratedToken[] = [];
      for await (const t of generate(model.runtime, prompt, opts)) out.push(t);
      return out;
    };
    for (const opts of [{ maxTokens: 10 }, { maxTokens: 10, temperature: 1, seed: 4, topK: 5 }, { maxTokens: 30, constraint: await model.generationOptions({ responseFormat: { type: "json_schema", schema: SCHEMA } }).then((o) => o.constraint) }]) {
      const plain = await collect({ ...opts, logprobs: true });
      const withTop = await collect({ ...opts, logprobs: true, topLogprobs: 20 });
      expect(withTop.map((t) => [t.id, t.logprob])).toEqual(plain.map((t) => [t.id, t.logprob]));
      for (const t of withTop) {
        const top = t.topLogprobs!;
        expect(top.length).toBeGreaterThan(0);
        expect(top.length).toBeLessThanOrEqual(20);
        for (let i = 1; i < top.length; i++) expect(top[i].logprob).toBeLessThanOrEqual(top[i - 1].logprob);
        // The chosen token is among them unless 20 others are likelier; each has the chosen one's scale.
        const self = top.find((x) => x.id === t.id);
        if (self) expect(self.logprob).toBeCloseTo(t.logprob!, 6);
        else expect(top[top.length - 1].logprob).toBeGreaterThanOrEqual(t.logprob!);
        if (t.logprob === 0) expect(top).toEqual([{ id: t.id, logprob: 0 }]); // forced
      }
      if (!("temperature" in opts) && !("constraint" in opts)) for (const t of withTop) expect(t.topLogprobs![0].id).toBe(t.id); // greedy: the likeliest
    }
  });
});
