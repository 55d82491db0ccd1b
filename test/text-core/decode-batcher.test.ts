/**
 * Decode-step batching (decode-batcher.ts) on the tiny fixture model at fp32: concurrent
 * generations sharing steps give each the tokens (greedy and seeded sampling) and the
 * log-probabilities of running alone, with rows joining and leaving mid-way, different prompt
 * lengths, a grammar, a cancelled row, a prefix state and a slow consumer; a row's end state is
 * the state of its alone run. DecodeState.gather itself is checked against alone forward passes.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecodeBatcher } from "../../text-core/decode-batcher.ts";
import { type FinishReason, type GenerateOptions, type GeneratedToken, type PrefilledPrefix, generate } from "../../text-core/generate.ts";
import { TextModel } from "../../text-core/model.ts";
import { DecodeState } from "../../text-core/runtime.ts";
import { FIXTURES, TEST_CACHE, expectClose, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const greedy = readJson<{ greedy: { prompt_ids: number[]; new_ids: number[] } }>("text/reference.json").greedy;
const PROMPT = greedy.prompt_ids;
/** Prompts of different lengths (3 to ~140 tokens: the longest runs in two prefill pieces of 128). */
const PROMPTS = [PROMPT, PROMPT.slice(0, 3), [...PROMPT, ...PROMPT, ...PROMPT, ...PROMPT].slice(0, 140), PROMPT.slice(5, 30)];

interface Run {
  ids: number[];
  logprobs: number[];
  finish: FinishReason | "aborted";
}

let model: TextModel;
beforeAll(async () => {
  model = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
});
afterAll(async () => {
  await model?.release();
});

/**
 * Consumes a generation; `onToken(n)` runs after the n-th token (1-based) and may wait (a slow
 * consumer). A generation cancelled by its signal ends as "aborted".
 */
async function consume(tokens: AsyncGenerator<GeneratedToken, FinishReason>, onToken?: (n: number) => Promise<void> | void): Promise<Run> {
  const run: Run = { ids: [], logprobs: [], finish: "stop" };
  try {
    for (;;) {
      const step = await tokens.next();
      if (step.done) {
        run.finish = step.value;
        return run;
      }
      run.ids.push(step.value.id);
      if (step.value.logprob !== undefined) run.logprobs.push(step.value.logprob);
      await onToken?.(run.ids.length);
    }
  } catch (e) {
    expectCode(() => {
      throw e;
    }, "ABORTED");
    run.finish = "aborted";
    return run;
  }
}

function expectSameRun(batched: Run, alone: Run, what: string): void {
  expect(batched.ids, `${what}: tokens`).toEqual(alone.ids);
  expect(batched.finish, `${what}: finish`).toBe(alone.finish);
  expectClose(batched.logprobs, alone.logprobs, `${what}: log-probabilities`);
}

/** A promise and its resolver: lets one generation start when another has reached a token. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = () => {};
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

describe("DecodeState.gather", () => {
  it("rows of different lengths, gathered into one state, step as they do alone (and split back out)", async () => {
    const rt = model.runtime;
    const V = model.config.vocabSize;
    const prompts = [PROMPT.slice(0, 40), PROMPT.slice(0, 7), PROMPT.slice(3, 60)];
    const alone = prompts.map(() => rt.newState(1));
    for (const [i, p] of prompts.entries()) await rt.forward(alone[i], { ids: [p] });
    const batch = DecodeState.gather(alone.map((state) => ({ state, row: 0 })), 8);
    expect(batch.length).toBe(57);
    expect(batch.mask[1].slice(0, 50)).toEqual(new Array(50).fill(0));
    expect(batch.nextPosition).toEqual([40, 7, 57]);
    const next = [[11], [12], [13]];
    for (let step = 0; step < 70; step++) {
      // 70 steps: the batched caches grow past their first stride and allocation
      const together = await rt.forward(batch, { ids: next });
      for (const [i, state] of alone.entries()) {
        const own = await rt.forward(state, { ids: [next[i]] });
        expectClose(together.output.subarray(i * V, (i + 1) * V), own.output, `row ${i}, step ${step}`);
      }
      next.forEach((ids, i) => (ids[0] = (ids[0] + 7 * (i + 1) + step) % V));
    }
    // A row taken back out continues as its alone state does.
    const out = DecodeState.gather([{ state: batch, row: 1 }]);
    expect(out.length).toBe(alone[1].length);
    expect(out.mask[0].every((m) => m === 1)).toBe(true);
    const a = await rt.forward(out, { ids: [[5, 6, 7]], keep: 3 });
    const b = await rt.forward(alone[1], { ids: [[5, 6, 7]], keep: 3 });
    expectClose(a.output, b.output, "split-out row vs alone");
  });
});

describe("DecodeBatcher", () => {
  async function alone(prompt: number[], opts: GenerateOptions): Promise<Run> {
    return consume(generate(model.runtime, prompt, { logprobs: true, ...opts }));
  }

  it("concurrent greedy and seeded generations, joining and leaving mid-way, give each its alone run", async () => {
    const batcher = new DecodeBatcher(model.runtime);
    const opts: GenerateOptions[] = [
      { maxTokens: 40, temperature: 0, stopTokenIds: [] },
      { maxTokens: 12, temperature: 0.9, seed: 7, stopTokenIds: [] },
      { maxTokens: 30, temperature: 0.7, topP: 0.9, seed: 3, repetitionPenalty: 1.2, stopTokenIds: [] },
      { maxTokens: 25, temperature: 1, topK: 20, seed: 11 },
    ];
    const expected = await Promise.all(PROMPTS.map((p, i) => alone(p, opts[i])));
    // Row 0 starts; row 1 when row 0 has 3 tokens; row 2 when row 0 has 8; row 3 when row 1 has ended.
    const started = [gate(), gate(), gate()];
    const runs = await Promise.all([
      consume(generate(model.runtime, PROMPTS[0], { ...opts[0], logprobs: true, batcher }), (n) => {
        if (n === 3) started[0].open();
        if (n === 8) started[1].open();
      }),
      started[0].wait.then(() => consume(generate(model.runtime, PROMPTS[1], { ...opts[1], logprobs: true, batcher })).finally(() => started[2].open())),
      started[1].wait.then(() => consume(generate(model.runtime, PROMPTS[2], { ...opts[2], logprobs: true, batcher }))),
      started[2].wait.then(() => consume(generate(model.runtime, PROMPTS[3], { ...opts[3], logprobs: true, batcher }))),
    ]);
    runs.forEach((run, i) => expectSameRun(run, expected[i], `row ${i}`));
    // The steps were shared: fewer forward calls than rows' tokens.
    expect(batcher.rowSteps / batcher.steps).toBeGreaterThan(1.5);
    expect(batcher.activeRows).toBe(0);
    expect(batcher.batchSize).toBe(0);
  });

  it("a constrained row, a cancelled row, a prefix row and a slow consumer beside greedy rows", async () => {
    const batcher = new DecodeBatcher(model.runtime, { idleMs: 5 });
    // Short values (the tiny model's strings run long); the keys are forced runs (jump-forward alone, one per step in the batch).
    const schema = {
      type: "object",
      properties: { pump: { enum: ["north", "south"] }, running: { type: "boolean" }, checked: { type: "boolean" } },
      required: ["pump", "running", "checked"],
      additionalProperties: false,
    };
    const constrained = await model.generationOptions({ responseFormat: { type: "json_schema", schema }, maxTokens: 96, temperature: 0.8, seed: 5 });
    const prefix = await model.prefillPrefix(PROMPT.slice(0, 20));
    const plain: GenerateOptions = { maxTokens: 30, temperature: 0, stopTokenIds: [] };
    const expected = {
      constrained: await alone(PROMPTS[3], constrained),
      prefix: await alone(PROMPTS[2], { ...plain, prefix }),
      slow: await alone(PROMPTS[0], plain),
      cancelled: await alone(PROMPTS[1], plain),
    };
    const abort = new AbortController();
    const runs = await Promise.all([
      consume(generate(model.runtime, PROMPTS[3], { ...constrained, logprobs: true, batcher })),
      consume(generate(model.runtime, PROMPTS[2], { ...plain, prefix, logprobs: true, batcher })),
      // Waits 30 ms (> idleMs) on tokens 4 and 9: the others step without it meanwhile.
      consume(generate(model.runtime, PROMPTS[0], { ...plain, logprobs: true, batcher }), (n) => (n === 4 || n === 9 ? new Promise((r) => setTimeout(r, 30)) : undefined)),
      consume(generate(model.runtime, PROMPTS[1], { ...plain, logprobs: true, batcher, signal: abort.signal }), (n) => {
        if (n === 6) abort.abort();
      }),
    ]);
    expectSameRun(runs[0], expected.constrained, "constrained");
    expect(runs[0].finish).toBe("stop"); // the grammar completed
    expect(() => JSON.parse(model.tokenizer.decode(runs[0].ids, { skipSpecialTokens: true }))).not.toThrow();
    expectSameRun(runs[1], expected.prefix, "from a prefix");
    expectSameRun(runs[2], expected.slow, "slow consumer");
    expect(batcher.idleRows, "the slow consumer's row was stepped without").toBeGreaterThan(0);
    expect(runs[3].finish).toBe("aborted");
    expect(runs[3].ids).toEqual(expected.cancelled.ids.slice(0, 6));
    expect(batcher.activeRows).toBe(0);
    // The prefix was only cloned, never advanced.
    expect(prefix.state.length).toBe(20);
  });

  it("onState('end') gets the state of the alone run", async () => {
    const batcher = new DecodeBatcher(model.runtime);
    const V = model.config.vocabSize;
    const opts: GenerateOptions = { maxTokens: 20, temperature: 0, stopTokenIds: [] };
    const kept: (PrefilledPrefix | undefined)[] = [undefined, undefined, undefined];
    const keep = (i: number) => (state: PrefilledPrefix, at: "prompt" | "end") => {
      if (at === "end") kept[i] = state;
    };
    await consume(generate(model.runtime, PROMPTS[0], { ...opts, onState: keep(0) }));
    await Promise.all([
      consume(generate(model.runtime, PROMPTS[0], { ...opts, onState: keep(1), batcher })),
      consume(generate(model.runtime, PROMPTS[2], { ...opts, maxTokens: 35, onState: keep(2), batcher })),
    ]);
    const [own, batched] = [kept[0]!, kept[1]!];
    expect(batched.ids).toEqual(own.ids);
    expect(batched.state.batch).toBe(1);
    expect(batched.state.length).toBe(own.state.length);
    expect(batched.state.nextPosition).toEqual(own.state.nextPosition);
    expectClose(batched.logits, own.logits, "last logits");
    const next = [[44, 45, 46, 47]];
    const a = await model.runtime.forward(batched.state.clone(), { ids: next, keep: 4 });
    const b = await model.runtime.forward(own.state.clone(), { ids: next, keep: 4 });
    expect(a.output.length).toBe(4 * V);
    expectClose(a.output, b.output, "next-step logits from the kept states");
  });

  it("refuses a batcher of another runtime, and a row that has left", async () => {
    const other = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 1 });
    try {
      const batcher = new DecodeBatcher(other.runtime);
      await expectCode(() => generate(model.runtime, PROMPT, { batcher }).next(), "INVALID_ARGUMENT");
      const state = model.runtime.newState(1);
      await model.runtime.forward(state, { ids: [PROMPT.slice(0, 4)] });
      const mine = new DecodeBatcher(model.runtime);
      const row = mine.join(state);
      await row.leave();
      await expectCode(() => row.step([5]), "INVALID_ARGUMENT");
      expect(() => new DecodeBatcher(model.runtime, { idleMs: -1 })).toThrow();
    } finally {
      await other.release();
    }
  });
});
