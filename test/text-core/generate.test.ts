/**
 * Generation on the tiny fixture model: batches equal single runs, stop ids, max tokens,
 * cancellation, streaming text, prompt-length errors, and the embedding `overrides` / `head: "hidden"`
 * graph variants.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type GenerateOptions, type GeneratedToken, generate, generateBatch } from "../../text-core/generate.ts";
import { TextModel } from "../../text-core/model.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, errorStats, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

interface TextReference {
  chat: { ids: number[] }[];
  greedy: { prompt_ids: number[]; new_ids: number[] };
}

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const json = readJson<TextReference>("text/reference.json");
/** Three prompts of different lengths: 12, 25 and 93 tokens. */
const PROMPTS = [json.chat[3].ids, json.chat[0].ids, json.greedy.prompt_ids];

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

const single = (prompt: number[], opts: GenerateOptions) => collect(generate(model.runtime, prompt, opts));

describe("generateBatch", () => {
  it("gives each of 3 prompts of different lengths exactly the greedy ids it gets alone", async () => {
    const opts = { maxTokens: 12, stopTokenIds: [] };
    const batch = await generateBatch(model.runtime, PROMPTS, opts);
    expect(batch).toHaveLength(3);
    for (let i = 0; i < PROMPTS.length; i++) {
      expect(batch[i], `prompt ${i} (${PROMPTS[i].length} tokens)`).toEqual(await single(PROMPTS[i], opts));
      expect(batch[i]).toHaveLength(12);
    }
    // and the single run is HF's greedy output
    expect(batch[2]).toEqual(json.greedy.new_ids.slice(0, 12));
  });

  it("with sampling, row i seeded s + i equals the single run seeded s + i", async () => {
    const s = 1234;
    const opts = { maxTokens: 12, stopTokenIds: [], temperature: 0.8 };
    const batch = await generateBatch(model.runtime, PROMPTS, { ...opts, seed: s });
    for (let i = 0; i < PROMPTS.length; i++) {
      expect(batch[i], `prompt ${i}`).toEqual(await single(PROMPTS[i], { ...opts, seed: s + i }));
    }
    expect(batch[0]).not.toEqual(await single(PROMPTS[0], { ...opts, seed: s + 1 }));
  });

  it("stops each row at its own stop id, still matching the single runs", async () => {
    const greedy0 = await single(PROMPTS[0], { maxTokens: 12, stopTokenIds: [] });
    const k = greedy0.findIndex((id, j) => j >= 3 && greedy0.indexOf(id) === j);
    const opts = { maxTokens: 12, stopTokenIds: [greedy0[k]] };
    const batch = await generateBatch(model.runtime, PROMPTS, opts);
    expect(batch[0]).toEqual(greedy0.slice(0, k));
    for (let i = 0; i < PROMPTS.length; i++) expect(batch[i]).toEqual(await single(PROMPTS[i], opts));
  });

  it("rejects an empty prompt among others with EMPTY_PROMPT, and returns [] for no prompts", async () => {
    await expectCode(() => generateBatch(model.runtime, [PROMPTS[0], []]), "EMPTY_PROMPT");
    expect(await generateBatch(model.runtime, [])).toEqual([]);
  });
});

describe("stop tokens and maxTokens", () => {
  const prompt = json.greedy.prompt_ids;
  const greedy = json.greedy.new_ids; // HF generate(do_sample=False)

  it("a stop id equal to the first greedy token yields nothing", async () => {
    expect(await single(prompt, { maxTokens: 12, stopTokenIds: [greedy[0]] })).toEqual([]);
  });

  it("stops before the stop token, which is not included", async () => {
    const k = greedy.findIndex((id, j) => j >= 3 && greedy.indexOf(id) === j); // first occurrence
    const tokens: GeneratedToken[] = [];
    for await (const t of generate(model.runtime, prompt, { maxTokens: 24, stopTokenIds: [greedy[k]] })) tokens.push(t);
    expect(tokens.map((t) => t.id)).toEqual(greedy.slice(0, k));
    expect(tokens.map((t) => t.index)).toEqual([...Array(k).keys()]);
  });

  it("honours maxTokens", async () => {
    expect(await single(prompt, { maxTokens: 5, stopTokenIds: [] })).toEqual(greedy.slice(0, 5));
    expect(await single(prompt, { maxTokens: 1, stopTokenIds: [] })).toEqual(greedy.slice(0, 1));
  });

  it("maxTokens 0 gives nothing and runs no forward", async () => {
    const forward = vi.spyOn(model.runtime, "forward");
    try {
      expect(await single(prompt, { maxTokens: 0 })).toEqual([]);
      expect(await generateBatch(model.runtime, PROMPTS, { maxTokens: 0 })).toEqual([[], [], []]);
      expect(forward).not.toHaveBeenCalled();
    } finally {
      forward.mockRestore();
    }
  });

  it("a negative or fractional maxTokens throws INVALID_ARGUMENT", async () => {
    await expectCode(() => single(prompt, { maxTokens: -1 }), "INVALID_ARGUMENT");
    await expectCode(() => single(prompt, { maxTokens: 2.5 }), "INVALID_ARGUMENT");
  });

  it("invalid sampling options throw INVALID_ARGUMENT before any forward", async () => {
    const forward = vi.spyOn(model.runtime, "forward");
    try {
      await expectCode(() => single(prompt, { temperature: -1 }), "INVALID_ARGUMENT");
      await expectCode(() => generateBatch(model.runtime, PROMPTS, { topP: 0 }), "INVALID_ARGUMENT");
      expect(forward).not.toHaveBeenCalled();
    } finally {
      forward.mockRestore();
    }
  });
});

describe("AbortSignal", () => {
  const prompt = json.greedy.prompt_ids;

  it("aborting after the 3rd token makes the iterator throw ABORTED, with no further forward", async () => {
    const controller = new AbortController();
    const forward = vi.spyOn(model.runtime, "forward");
    const ids: number[] = [];
    try {
      await expectCode(async () => {
        for await (const t of generate(model.runtime, prompt, { maxTokens: 12, stopTokenIds: [], signal: controller.signal })) {
          ids.push(t.id);
          if (ids.length === 3) controller.abort();
        }
      }, "ABORTED");
      expect(ids).toEqual(json.greedy.new_ids.slice(0, 3));
      expect(forward).toHaveBeenCalledTimes(3); // the prompt, then tokens 1 and 2
    } finally {
      forward.mockRestore();
    }
  });

  it("an already-aborted signal throws ABORTED before any forward", async () => {
    const signal = AbortSignal.abort();
    const forward = vi.spyOn(model.runtime, "forward");
    try {
      await expectCode(() => single(prompt, { signal }), "ABORTED");
      await expectCode(() => generateBatch(model.runtime, PROMPTS, { signal }), "ABORTED");
      await expectCode(() => model.complete(prompt, { signal }), "ABORTED");
      expect(forward).not.toHaveBeenCalled();
    } finally {
      forward.mockRestore();
    }
  });

  it("aborting a batch mid-way throws ABORTED", async () => {
    const controller = new AbortController();
    const forward = model.runtime.forward.bind(model.runtime);
    let calls = 0;
    const spy = vi.spyOn(model.runtime, "forward").mockImplementation(async (state, req) => {
      if (++calls === 3) controller.abort();
      return forward(state, req);
    });
    try {
      await expectCode(() => generateBatch(model.runtime, PROMPTS, { maxTokens: 12, stopTokenIds: [], signal: controller.signal }), "ABORTED");
      expect(calls).toBe(3);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("TextModel.stream", () => {
  it.each([
    ["greedy", {}],
    ["sampled", { temperature: 1.2, seed: 7 }],
  ] as const)("%s: the text chunks concatenate to decode(ids, skipSpecialTokens)", async (_, opts) => {
    for (const prompt of PROMPTS) {
      const ids: number[] = [];
      let text = "";
      for await (const chunk of model.stream(prompt, { maxTokens: 24, stopTokenIds: [], ...opts })) {
        if (chunk.id >= 0) ids.push(chunk.id);
        text += chunk.text;
      }
      expect(ids).toEqual(await single(prompt, { maxTokens: 24, stopTokenIds: [], ...opts }));
      expect(text).toBe(model.tokenizer.decode(ids, { skipSpecialTokens: true }));
    }
  });
});

describe("prompt length", () => {
  let dir: string;
  let small: TextModel;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lfm2-ctx32-"));
    cpSync(MODEL_DIR, dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, max_position_embeddings: 32 }));
    small = await TextModel.load(dir, { cacheDir: false, precision: "fp32", threads: 2 });
  });
  afterAll(async () => {
    await small?.release();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("an empty prompt throws EMPTY_PROMPT", async () => {
    await expectCode(() => single([], {}), "EMPTY_PROMPT");
  });

  it("a prompt as long as the context throws PROMPT_TOO_LONG", async () => {
    expect(small.config.maxPositionEmbeddings).toBe(32);
    const prompt = json.greedy.prompt_ids.slice(0, 32);
    await expectCode(() => collect(generate(small.runtime, prompt, { maxTokens: 1 })), "PROMPT_TOO_LONG");
    await expectCode(() => generateBatch(small.runtime, [prompt.slice(0, 5), prompt]), "PROMPT_TOO_LONG");
  });

  it("a 20-token prompt with maxTokens 100 is clipped to the 12 new tokens that fit", async () => {
    const prompt = json.greedy.prompt_ids.slice(0, 20);
    const ids = await collect(generate(small.runtime, prompt, { maxTokens: 100, stopTokenIds: [] }));
    expect(ids).toHaveLength(12);
    // the shorter context changes nothing else
    expect(ids).toEqual(await single(prompt, { maxTokens: 12, stopTokenIds: [] }));
    expect(await generateBatch(small.runtime, [prompt], { maxTokens: 100, stopTokenIds: [] })).toEqual([ids]);
  });
});

describe("graph variants", () => {
  const D = 64;

  it("overrides: replacing prompt rows by their own embeddings changes nothing; other vectors change logits from there on", async () => {
    const withOverrides = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
    try {
      expect(withOverrides.config.hiddenSize).toBe(D);
      const ids = json.chat[0].ids;
      const S = ids.length;
      const V = withOverrides.config.vocabSize;
      const ck = Checkpoint.open(MODEL_DIR);
      const table = ck.readFloat32("model.embed_tokens.weight");
      ck.close();
      const positions = [6, 7, 15];
      const rows = (source: (id: number, p: number) => Float32Array) => {
        const values = new Float32Array(positions.length * D);
        positions.forEach((p, k) => values.set(source(ids[p], p), k * D));
        return { index: positions, values };
      };
      const run = async (m: TextModel, overrides?: { index: number[]; values: Float32Array }) =>
        (await m.runtime.forward(m.runtime.newState(1), { ids: [ids], keep: S, overrides })).output.slice();

      const plain = await run(model);
      const none = await run(withOverrides);
      const same = await run(withOverrides, rows((id) => table.subarray(id * D, (id + 1) * D)));
      expect(errorStats(none, plain).maxAbs).toBeLessThanOrEqual(1e-6);
      expect(errorStats(same, none).maxAbs).toBe(0);

      // Different vectors: the embedding of another token, scaled.
      const other = await run(
        withOverrides,
        rows((_, p) => table.subarray((600 + p) * D, (601 + p) * D).map((x) => 3 * x)),
      );
      const at = (logits: Float32Array, s: number) => logits.subarray(s * V, (s + 1) * V);
      for (let s = 0; s < S; s++) {
        const d = errorStats(at(other, s), at(none, s)).maxAbs;
        if (s < positions[0]) expect(d, `position ${s} (before the first override)`).toBeLessThanOrEqual(1e-6);
        else expect(d, `position ${s} (at or after an override)`).toBeGreaterThan(1e-3);
      }

      // The same rows through generate's promptOverrides give the same greedy ids as no override.
      const greedy = { maxTokens: 8, stopTokenIds: [] };
      const baseline = await single(ids, greedy);
      expect(await collect(generate(withOverrides.runtime, ids, { ...greedy, promptOverrides: rows((id) => table.subarray(id * D, (id + 1) * D)) }))).toEqual(baseline);
    } finally {
      await withOverrides.release();
    }
  });

  it('head "hidden" returns last_hidden_state equal to HF\'s final-normed hidden state', async () => {
    const hidden = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2, head: "hidden" });
    try {
      expect(hidden.runtime.io.output).toBe("last_hidden_state");
      const ref = new ReferenceTensors("text/reference.safetensors");
      const ids = ref.ints("forward.input_ids");
      const out = await hidden.runtime.forward(hidden.runtime.newState(1), { ids: [ids], keep: ids.length });
      expect(out.width).toBe(D);
      const expected = ref.float("forward.hidden.6");
      expect(out.output.length).toBe(expected.length);
      expect(errorStats(out.output, expected).maxAbs).toBeLessThanOrEqual(1e-5);
    } finally {
      await hidden.release();
    }
  });
});
