/**
 * Decode states kept across the calls of a conversation (GenerateOptions.onState, PromptCache):
 * the state after a prompt and after a reply hold exactly the ids they say, and continuing one with
 * the next prompt's new tokens gives the logits of a full prefill of that prompt (DESIGN.md
 * tolerances) and the same greedy tokens.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GeneratedToken, type PrefilledPrefix, generate } from "../../text-core/generate.ts";
import { TextModel } from "../../text-core/model.ts";
import { PromptCache, prefixBytes } from "../../text-core/prompt-cache.ts";
import { FIXTURES, TEST_CACHE, expectClose, readJson } from "../helpers/reference.ts";

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const greedy = readJson<{ greedy: { prompt_ids: number[]; new_ids: number[] } }>("text/reference.json").greedy;

let model: TextModel;
beforeAll(async () => {
  model = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
});
afterAll(async () => {
  await model?.release();
});

async function run(tokens: AsyncGenerator<GeneratedToken, unknown>): Promise<number[]> {
  const ids: number[] = [];
  for await (const t of tokens) ids.push(t.id);
  return ids;
}

/** The last-position logits of a full prefill of `ids`. */
async function fullPrefill(ids: number[]): Promise<Float32Array> {
  return (await model.runtime.forward(model.runtime.newState(1), { ids: [ids] })).output;
}

describe("kept decode states", () => {
  it("onState: the state after the prompt and after the reply, each with the ids it holds", async () => {
    const kept: { at: string; entry: PrefilledPrefix }[] = [];
    const prompt = greedy.prompt_ids;
    const ids = await run(generate(model.runtime, prompt, { maxTokens: 12, temperature: 0, stopTokenIds: [], onState: (entry, at) => kept.push({ at, entry }) }));
    expect(ids).toEqual(greedy.new_ids.slice(0, 12));
    expect(kept.map((k) => k.at)).toEqual(["prompt", "end"]);
    const [atPrompt, atEnd] = kept.map((k) => k.entry);
    expect(atPrompt.ids).toEqual(prompt);
    expect(atPrompt.state.length).toBe(prompt.length);
    // The last token was chosen, never run: the state holds the prompt and all new tokens but it.
    expect(atEnd.ids).toEqual([...prompt, ...ids.slice(0, -1)]);
    expect(atEnd.state.length).toBe(atEnd.ids.length);
    expectClose(atEnd.logits, await fullPrefill([...atEnd.ids]), "end-state logits vs full prefill");
    expectClose(atPrompt.logits, await fullPrefill(prompt), "prompt-state logits vs full prefill");

    // Continuing the end state with the next "turn" = a full prefill of the whole conversation.
    const next = [...atEnd.ids, ids.at(-1)!, ...greedy.prompt_ids.slice(1, 20)];
    const rest = next.slice(atEnd.ids.length);
    const continued = (await model.runtime.forward(atEnd.state.clone(), { ids: [rest] })).output;
    expectClose(continued, await fullPrefill(next), "kept state + new turn vs full prefill");
  });

  it("a generation that stops on a stop id keeps all of its tokens; an aborted one keeps only the prompt state", async () => {
    const prompt = greedy.prompt_ids;
    const stopAt = greedy.new_ids[5];
    const kept: PrefilledPrefix[] = [];
    const ids = await run(generate(model.runtime, prompt, { maxTokens: 40, temperature: 0, stopTokenIds: [stopAt], onState: (e) => kept.push(e) }));
    expect(ids).toEqual(greedy.new_ids.slice(0, 5));
    expect(kept[1].ids).toEqual([...prompt, ...ids]);

    const controller = new AbortController();
    const aborted: PrefilledPrefix[] = [];
    const tokens = generate(model.runtime, prompt, { maxTokens: 40, temperature: 0, stopTokenIds: [], signal: controller.signal, onState: (e) => aborted.push(e) });
    await expect(
      (async () => {
        for await (const t of tokens) if (t.index === 3) controller.abort();
      })(),
    ).rejects.toMatchObject({ code: "ABORTED" });
    expect(aborted.map((e) => e.ids.length)).toEqual([prompt.length]);
  });

  it("PromptCache: the longest kept prefix; a conversation continued turn by turn gives a full prefill's tokens", async () => {
    const cache = new PromptCache(3);
    const turns = [greedy.prompt_ids.slice(0, 30), greedy.prompt_ids.slice(30, 60), greedy.prompt_ids.slice(60)];
    let conversation: number[] = [];
    for (const [t, turn] of turns.entries()) {
      conversation = [...conversation, ...turn];
      const prefix = cache.lookup(conversation);
      if (t > 0) expect(prefix?.ids.length).toBeGreaterThan(0);
      const opts = { maxTokens: 8, temperature: 0, stopTokenIds: [] };
      const reused = await run(generate(model.runtime, conversation, { ...opts, prefix, onState: (e) => cache.add(e) }));
      expect(reused).toEqual(await run(generate(model.runtime, conversation, opts)));
      // The reply goes into the history as generated: the next turn continues the end state.
      conversation = [...conversation, ...reused];
    }
    expect(cache.size).toBe(3);
    // A history that was rewritten (a different last reply) falls back to an older state.
    const rewritten = [...turns[0], 1, 2, 3];
    expect(cache.lookup(rewritten)).toBeUndefined();
    // A last reply cut short (barge-in recorded as the spoken part): the state before the reply.
    const cut = [...conversation.slice(0, conversation.length - 3), 4];
    expect(cache.lookup(cut)?.ids).toEqual(conversation.slice(0, conversation.length - 8));
    const snapshot = cache.snapshot();
    cache.add({ ids: rewritten, state: model.runtime.newState(1), logits: new Float32Array(0) });
    expect(cache.lookup(rewritten)?.ids).toEqual(rewritten);
    cache.restore(snapshot);
    expect(cache.lookup(rewritten)).toBeUndefined();
  });

  it("PromptCache with a byte limit: least recently used states go first, a lookup refreshes, the longest prefix wins", async () => {
    const conv = (n: number, tag: number) => [tag, ...greedy.prompt_ids.slice(1, n)];
    const keep = async (ids: number[]) => {
      const { ids: kept, state, logits } = await model.prefillPrefix(ids);
      return { ids: kept, state, logits };
    };
    const a = await keep(conv(20, 1));
    const b = await keep(conv(20, 2));
    const c = await keep(conv(20, 3));
    // A state counts its KV buffers, conv windows and logits: more than the logits alone.
    expect(a.state.bytes).toBeGreaterThan(0);
    expect(prefixBytes(a)).toBe(a.state.bytes + a.logits.byteLength + a.ids.length * 8);
    const room = prefixBytes(a) + prefixBytes(b) + Math.floor(prefixBytes(c) / 2);
    const cache = new PromptCache(100, room);
    cache.add(a);
    cache.add(b);
    expect(cache.bytes).toBe(prefixBytes(a) + prefixBytes(b));
    expect(cache.lookup(conv(30, 1))).toBe(a); // a is now the most recently used
    cache.add(c); // over the bytes: b (least recently used) goes
    expect(cache.size).toBe(2);
    expect(cache.lookup(conv(30, 2))).toBeUndefined();
    expect(cache.lookup(conv(30, 1))).toBe(a);
    expect(cache.lookup(conv(30, 3))).toBe(c);
    expect(cache.bytes).toBeLessThanOrEqual(room);
    // The longest kept prefix of the same conversation wins.
    const longer = await keep(conv(25, 1));
    cache.add(longer);
    expect(cache.lookup(conv(30, 1))).toBe(longer);
    expect(cache.stats()).toMatchObject({ entries: cache.size, bytes: cache.bytes, hits: 4, misses: 1 });
    // A state larger than the whole limit is not kept (it would only push out every other one).
    const tiny = new PromptCache(100, prefixBytes(a) - 1);
    tiny.add(a);
    expect(tiny.size).toBe(0);
    expect(tiny.bytes).toBe(0);
  });
});
