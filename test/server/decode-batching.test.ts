/**
 * `lfm serve --max-batch`: concurrent chats on a text model share decode steps and still get the
 * replies they get one after another (the test server loads fp32, where batching changes no token:
 * test/text-core/decode-batcher.test.ts); other models keep one job at a time.
 */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DecodeBatcher } from "../../text-core/decode-batcher.ts";
import { type TestServer, metricValue, startTestServer } from "./server-harness.ts";

let server: TestServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestServer({ maxBatch: 4 });
  client = server.client();
});
afterAll(async () => {
  await server?.close();
});

/** Four requests: greedy and seeded sampling, different prompts and lengths, one with a JSON schema. */
const REQUESTS: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming[] = [
  { model: "tiny-lfm2", messages: [{ role: "user", content: "Status of pump 7?" }], max_tokens: 40, temperature: 0 },
  { model: "tiny-lfm2", messages: [{ role: "user", content: "Hi" }], max_tokens: 25, temperature: 0.9, seed: 3 },
  {
    model: "tiny-lfm2",
    messages: [
      { role: "system", content: "You are a field assistant. Answer briefly and name the pump." },
      { role: "user", content: "The pressure on the north pump fell to 2 bar this morning; what should I check first?" },
    ],
    max_tokens: 50,
    temperature: 0.7,
    top_p: 0.9,
    seed: 11,
  },
  {
    model: "tiny-lfm2",
    messages: [{ role: "user", content: "Which pump?" }],
    max_tokens: 40,
    temperature: 0.8,
    seed: 5,
    response_format: {
      type: "json_schema",
      json_schema: { name: "pump", schema: { type: "object", properties: { pump: { enum: ["north", "south"] }, running: { type: "boolean" } }, required: ["pump", "running"], additionalProperties: false } },
    },
  },
];

async function streamed(request: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming): Promise<{ content: string; finish: string | null }> {
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let content = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    content += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  return { content, finish };
}

function batcherOf(): Promise<DecodeBatcher> {
  return server.registry.use("tiny-lfm2", async (loaded) => {
    if (loaded.kind !== "text") throw new Error("tiny-lfm2 is a text model");
    return loaded.model.decodeBatcher;
  });
}

describe("--max-batch", () => {
  it("four concurrent streaming chats get the replies of four sequential ones, in shared decode steps", async () => {
    const sequential: { content: string; finish: string | null }[] = [];
    for (const request of REQUESTS) sequential.push(await streamed(request));
    expect(sequential.every((r) => r.content.length > 0)).toBe(true);

    const batcher = await batcherOf();
    const [steps, rowSteps] = [batcher.steps, batcher.rowSteps];
    const concurrent = await Promise.all(REQUESTS.map((r) => streamed(r)));
    expect(concurrent).toEqual(sequential);
    // The concurrent replies shared steps (the sequential ones ran one row per step).
    expect((batcher.rowSteps - rowSteps) / (batcher.steps - steps)).toBeGreaterThan(1.2);

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/^lfm_decode_batch_size\{model="tiny-lfm2"\} 0$/m);
    expect(metrics).toMatch(/^lfm_queue_running\{model="tiny-lfm2"\} 0$/m);
  });

  it("non-streaming replies agree with the streamed ones when batched", async () => {
    const once = await Promise.all(REQUESTS.map((r) => client.chat.completions.create(r)));
    const again = await Promise.all(REQUESTS.map((r) => streamed(r)));
    expect(once.map((r) => ({ content: r.choices[0].message.content, finish: r.choices[0].finish_reason }))).toEqual(again);
  });

  it("a client that leaves mid-reply leaves the batch; the others finish with their own replies", async () => {
    const expected = await Promise.all([streamed(REQUESTS[0]), streamed(REQUESTS[2])]);
    const cancelledBefore = await metricValue(server.url, 'lfm_generations_cancelled_total{model="tiny-lfm2"}');
    const abort = new AbortController();
    const leaving = (async () => {
      const long = await client.chat.completions.create({ ...REQUESTS[1], max_tokens: 4000, stream: true }, { signal: abort.signal });
      let chunks = 0;
      try {
        for await (const _ of long) if (++chunks === 5) break; // the client goes away mid-reply
      } catch {
        /* aborted */
      }
      abort.abort();
      return chunks;
    })();
    const [chunks, ...rest] = await Promise.all([leaving, streamed(REQUESTS[0]), streamed(REQUESTS[2])]);
    expect(chunks).toBe(5);
    expect(rest).toEqual(expected);
    let cancelled = cancelledBefore;
    for (let i = 0; i < 200 && cancelled === cancelledBefore; i++) {
      await new Promise((r) => setTimeout(r, 25));
      cancelled = await metricValue(server.url, 'lfm_generations_cancelled_total{model="tiny-lfm2"}');
    }
    expect(cancelled).toBe(cancelledBefore + 1);
    expect(await metricValue(server.url, 'lfm_queue_running{model="tiny-lfm2"}')).toBe(0);
    expect((await batcherOf()).activeRows).toBe(0);
  });
});
