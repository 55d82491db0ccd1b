/**
 * The server's prompt cache (`--prompt-cache-mb`): a chat turn continues from the longest kept
 * decode state of its prompt, so only the new tokens run. Checked against a server with the cache
 * off, at fp32 (the harness's precision), where continuing a kept state computes exactly what a full
 * prefill does — the replies must be identical, token for token. (At q4, MatMulNBits quantises each
 * call's activations by rows, so a prompt split in two calls may differ from one call in the last
 * digits, and a greedy reply can then take another token.)
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Metrics } from "../../server/metrics.ts";
import { ModelRegistry, entriesOf } from "../../server/model-registry.ts";
import { TEST_CACHE } from "../helpers/reference.ts";
import { TINY_MODELS, type TestServer, metricValue, startTestServer } from "./server-harness.ts";

type Message = OpenAI.ChatCompletionMessageParam;

function serverWithCache(promptCacheBytes: number): Promise<TestServer> {
  const registry = new ModelRegistry(entriesOf(TINY_MODELS), { cacheDir: TEST_CACHE, precision: "fp32", promptCacheBytes });
  return startTestServer({ registry, metrics: new Metrics(), maxQueue: 16 });
}

let cached: TestServer;
let plain: TestServer;
beforeAll(async () => {
  cached = await serverWithCache(256 * 1024 ** 2);
  plain = await serverWithCache(0);
});
afterAll(async () => {
  await cached?.close();
  await plain?.close();
});

const ask = (server: TestServer, messages: Message[], maxTokens = 6) =>
  server.client().chat.completions.create({ model: "tiny-lfm2", messages, max_tokens: maxTokens, temperature: 0 });

const cachedTokens = (reply: OpenAI.ChatCompletion) => reply.usage!.prompt_tokens_details!.cached_tokens!;

/** Runs `turns` user turns of one conversation on both servers; each turn's replies and usage. */
async function converse(system: string, turns: number, onTurn?: (turn: number, withCache: OpenAI.ChatCompletion, without: OpenAI.ChatCompletion) => void): Promise<void> {
  const history: Message[] = [{ role: "system", content: system }];
  for (let t = 0; t < turns; t++) {
    history.push({ role: "user", content: `${system}: question ${t}, about valve ${t * 7}?` });
    const withCache = await ask(cached, history);
    const without = await ask(plain, history);
    onTurn?.(t, withCache, without);
    history.push({ role: "assistant", content: without.choices[0].message.content ?? "" });
  }
}

describe("prompt cache", () => {
  it("a 10-turn chat reuses its history each turn, and replies exactly as a server without the cache", async () => {
    let previousPrompt = 0;
    await converse("Maintenance log", 10, (t, withCache, without) => {
      expect(withCache.choices[0].message.content).toBe(without.choices[0].message.content);
      expect(withCache.usage!.prompt_tokens).toBe(without.usage!.prompt_tokens);
      expect(cachedTokens(without)).toBe(0);
      // Every turn after the first finds at least the previous turn's prompt (the history up to its reply).
      if (t === 0) expect(cachedTokens(withCache)).toBe(0);
      else expect(cachedTokens(withCache)).toBeGreaterThanOrEqual(previousPrompt);
      expect(cachedTokens(withCache)).toBeLessThan(withCache.usage!.prompt_tokens);
      expect((withCache as unknown as { timings: { cached_tokens: number } }).timings.cached_tokens).toBe(cachedTokens(withCache));
      previousPrompt = withCache.usage!.prompt_tokens;
    });
    expect(await metricValue(cached.url, 'lfm_prompt_cache_hits_total{model="tiny-lfm2"}')).toBeGreaterThanOrEqual(9);
    expect(await metricValue(cached.url, 'lfm_prompt_cache_entries{model="tiny-lfm2"}')).toBeGreaterThan(0);
    expect(await metricValue(cached.url, 'lfm_prompt_cache_bytes{model="tiny-lfm2"}')).toBeGreaterThan(0);
    expect(await metricValue(plain.url, 'lfm_prompt_cache_hits_total{model="tiny-lfm2"}')).toBe(0);
  });

  it("the same prompt again is all cached; streamed usage reports it too", async () => {
    const messages: Message[] = [{ role: "user", content: "Pressure at gauge 12 read twice?" }];
    const first = await ask(cached, messages);
    const stream = await cached.client().chat.completions.create({ model: "tiny-lfm2", messages, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(first.choices[0].message.content);
    expect(usage!.prompt_tokens_details!.cached_tokens).toBe(first.usage!.prompt_tokens);
  });

  it("concurrent clients with different conversations each continue their own prefix", async () => {
    const systems = ["Client A, boiler room", "Client B, cooling tower", "Client C, turbine hall"];
    const prompts = new Map<string, number>();
    await Promise.all(
      systems.map((system) =>
        converse(system, 4, (t, withCache, without) => {
          expect(withCache.choices[0].message.content).toBe(without.choices[0].message.content);
          if (t > 0) expect(cachedTokens(withCache)).toBeGreaterThanOrEqual(prompts.get(system)!);
          prompts.set(system, withCache.usage!.prompt_tokens);
        }),
      ),
    );
  });

  it("a cancelled reply leaves no half-made state: the same chat afterwards replies as without the cache", async () => {
    const messages: Message[] = [{ role: "user", content: "Describe the alarm history of line 3 at length." }];
    const abort = new AbortController();
    const stream = await cached.client().chat.completions.create({ model: "tiny-lfm2", messages, max_tokens: 4000, temperature: 0, stream: true }, { signal: abort.signal });
    try {
      for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) abort.abort();
    } catch {
      /* aborted */
    }
    // Wait for the server to see the cancellation.
    for (let i = 0; i < 200 && (await metricValue(cached.url, 'lfm_generations_cancelled_total{model="tiny-lfm2"}')) < 1; i++) await new Promise((r) => setTimeout(r, 25));
    const again = await ask(cached, messages, 12);
    // The prompt's state (complete before the first token) was kept; nothing of the cut reply was.
    expect(cachedTokens(again)).toBe(again.usage!.prompt_tokens);
    expect(again.choices[0].message.content).toBe((await ask(plain, messages, 12)).choices[0].message.content);
    const next: Message[] = [...messages, { role: "assistant", content: again.choices[0].message.content ?? "" }, { role: "user", content: "And line 4?" }];
    const continued = await ask(cached, next, 12);
    expect(continued.choices[0].message.content).toBe((await ask(plain, next, 12)).choices[0].message.content);
  });

  it("the byte bound evicts the least recently used states", async () => {
    const probe = await serverWithCache(64 * 1024 ** 2);
    try {
      const first: Message[] = [{ role: "user", content: "Conversation one: the compressor." }];
      await ask(probe, first);
      const entries = await metricValue(probe.url, 'lfm_prompt_cache_entries{model="tiny-lfm2"}');
      const perState = (await metricValue(probe.url, 'lfm_prompt_cache_bytes{model="tiny-lfm2"}')) / entries;
      expect(perState).toBeGreaterThan(0);
      // Room for about three states: after a few other conversations the first one's are gone.
      const bound = Math.floor(perState * 3.5);
      const small = await serverWithCache(bound);
      try {
        const r1 = await ask(small, first);
        expect(cachedTokens(r1)).toBe(0);
        expect(cachedTokens(await ask(small, first))).toBe(r1.usage!.prompt_tokens);
        for (let i = 0; i < 4; i++) await ask(small, [{ role: "user", content: `Another conversation, number ${i}, about the chiller.` }]);
        expect(await metricValue(small.url, 'lfm_prompt_cache_bytes{model="tiny-lfm2"}')).toBeLessThanOrEqual(bound);
        expect(await metricValue(small.url, 'lfm_prompt_cache_entries{model="tiny-lfm2"}')).toBeLessThanOrEqual(4);
        expect(cachedTokens(await ask(small, first))).toBe(0);
      } finally {
        await small.close();
      }
    } finally {
      await probe.close();
    }
  });

  it("counts in its model's memory and is freed when the model is unloaded (--memory-budget)", async () => {
    // A budget of one byte: every idle model but the one used last is unloaded.
    const registry = new ModelRegistry(entriesOf(TINY_MODELS), { cacheDir: TEST_CACHE, precision: "fp32", promptCacheBytes: 64 * 1024 ** 2, memoryBudgetBytes: 1 });
    const server = await startTestServer({ registry, metrics: new Metrics() });
    try {
      await ask(server, [{ role: "user", content: "Kept, then freed." }]);
      const [text] = registry.loaded();
      expect(text.id).toBe("tiny-lfm2");
      expect(text.promptCache!.entries).toBe(2); // after the prompt, after the reply
      const cache = await registry.use("tiny-lfm2", async (loaded) => (loaded.kind === "text" ? loaded.promptCache : undefined));
      expect(cache!.bytes).toBe(text.promptCache!.bytes);
      expect(registry.loaded()[0].bytes).toBeGreaterThanOrEqual(cache!.bytes);
      expect(await metricValue(server.url, 'lfm_model_memory_bytes{model="tiny-lfm2"}')).toBeGreaterThanOrEqual(cache!.bytes);
      await server.client().chat.completions.create({ model: "tiny-lfm2-vl", messages: [{ role: "user", content: "Another model." }], max_tokens: 2 });
      expect(registry.loaded().map((m) => m.id)).toEqual(["tiny-lfm2-vl"]);
      expect(cache!.size).toBe(0);
      expect(cache!.bytes).toBe(0);
    } finally {
      await server.close();
    }
  });
});
