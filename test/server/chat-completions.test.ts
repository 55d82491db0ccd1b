/**
 * `lfm serve`'s OpenAI API, called as an app would: the official `openai` client against a
 * server on a free port over the bundled tiny models (random weights: the replies are noise,
 * their shapes and the server's behaviour are what is checked).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURES } from "../helpers/reference.ts";
import { type TestServer, metricValue, startTestServer } from "./server-harness.ts";

let server: TestServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestServer({ allowFiles: join(FIXTURES, "vision", "images") });
  client = server.client();
});
afterAll(async () => {
  await server?.close();
});

const HELLO = [{ role: "user" as const, content: "Status of pump 7?" }];

describe("GET /v1/models", () => {
  it("lists the bundled models with their modalities, loaded on first use", async () => {
    const models = (await client.models.list()).data as unknown as { id: string; input_modalities: string[]; output_modalities: string[] }[];
    const byId = Object.fromEntries(models.map((m) => [m.id, m]));
    expect(Object.keys(byId).sort()).toEqual(["tiny-lfm2", "tiny-lfm2-audio", "tiny-lfm2-vl"]);
    expect(byId["tiny-lfm2"].input_modalities).toEqual(["text"]);
    expect(byId["tiny-lfm2-vl"].input_modalities).toEqual(["text", "image"]);
    expect(byId["tiny-lfm2-audio"].input_modalities).toEqual(["text", "audio"]);
    expect((await client.models.retrieve("tiny-lfm2")).id).toBe("tiny-lfm2");
  });
});

describe("POST /v1/chat/completions", () => {
  it("answers with content, usage and timings; the stream carries the same text and usage", async () => {
    const reply = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 12, temperature: 0 });
    const choice = reply.choices[0];
    expect(choice.message.role).toBe("assistant");
    expect(typeof choice.message.content).toBe("string");
    expect(reply.usage).toMatchObject({ completion_tokens: choice.finish_reason === "length" ? 12 : expect.any(Number) });
    expect(reply.usage!.total_tokens).toBe(reply.usage!.prompt_tokens + reply.usage!.completion_tokens);
    const timings = (reply as unknown as { timings: Record<string, number> }).timings;
    expect(timings.total_ms).toBeGreaterThan(0);
    expect(timings.total_ms).toBeGreaterThanOrEqual(timings.prompt_ms);

    const stream = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.delta.content ?? "";
        finish ??= c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(choice.message.content); // greedy: the same reply, streamed
    expect(finish).toBe(choice.finish_reason);
    expect(usage).toEqual(reply.usage);
  });

  it("cuts the reply at a stop string", async () => {
    const full = (await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 24, temperature: 0 })).choices[0].message.content!;
    const stop = full.slice(4, 6);
    expect(stop.length).toBe(2);
    const cut = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 24, temperature: 0, stop: [stop] });
    expect(cut.choices[0].message.content).toBe(full.slice(0, full.indexOf(stop)));
    expect(cut.choices[0].finish_reason).toBe("stop");
  });

  it("returns parsed tool_calls when the model must call a tool", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: "function",
        function: {
          name: "get_pump_status",
          description: "Status of a pump",
          parameters: { type: "object", properties: { pump: { type: "integer", minimum: 1, maximum: 9 }, site: { type: "string", enum: ["north", "south"] } }, required: ["pump", "site"] },
        },
      },
    ];
    const reply = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, tools, tool_choice: "required", max_tokens: 64 });
    const choice = reply.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    const calls = choice.message.tool_calls!;
    expect(calls.length).toBeGreaterThan(0);
    for (const call of calls) {
      expect(call.type).toBe("function");
      expect(call.id).toMatch(/^call_\w{24}$/);
      if (call.type !== "function") continue;
      expect(call.function.name).toBe("get_pump_status");
      const args = JSON.parse(call.function.arguments) as { pump: number; site: string };
      expect(args.pump).toBeGreaterThanOrEqual(1);
      expect(["north", "south"]).toContain(args.site);
    }
    // The call goes back as history with its result, as an agent loop sends it.
    const call = calls[0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    const next = await client.chat.completions.create({
      model: "tiny-lfm2",
      messages: [...HELLO, { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", tool_call_id: call.id, content: '{"status": "ok"}' }],
      tools,
      max_tokens: 4,
    });
    expect(next.usage!.prompt_tokens).toBeGreaterThan(reply.usage!.prompt_tokens);
  });

  it("streams tool calls as one delta after the text", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [{ type: "function", function: { name: "reset", parameters: { type: "object", properties: {} } } }];
    const stream = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, tools, tool_choice: { type: "function", function: { name: "reset" } }, max_tokens: 32, stream: true });
    const names: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        for (const call of c.delta.tool_calls ?? []) names.push(call.function?.name ?? "");
        finish ??= c.finish_reason;
      }
    }
    expect(names.length).toBeGreaterThan(0);
    expect(new Set(names)).toEqual(new Set(["reset"]));
    expect(finish).toBe("tool_calls");
  });

  it("enforces a json_schema response format", async () => {
    const schema = {
      type: "object",
      properties: { pump: { type: "integer", minimum: 0, maximum: 99 }, ok: { type: "boolean" }, site: { type: "string", enum: ["north", "south"] } },
      required: ["pump", "ok", "site"],
      additionalProperties: false,
    };
    const reply = await client.chat.completions.create({
      model: "tiny-lfm2",
      messages: HELLO,
      max_tokens: 64,
      temperature: 0.8,
      seed: 7,
      response_format: { type: "json_schema", json_schema: { name: "status", schema, strict: true } },
    });
    expect(reply.choices[0].finish_reason).toBe("stop");
    const value: unknown = JSON.parse(reply.choices[0].message.content!);
    const validate = new Ajv2020().compile(schema);
    expect(validate(value), JSON.stringify(validate.errors)).toBe(true);

    const object = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 64, response_format: { type: "json_object" } });
    if (object.choices[0].finish_reason === "stop") expect(typeof JSON.parse(object.choices[0].message.content!)).toBe("object");
    else expect(object.choices[0].message.content!.startsWith("{")).toBe(true);
  });

  it("reads an image part (data URL, and file:// inside --allow-files) through LFM2-VL", async () => {
    const png = readFileSync(join(FIXTURES, "vision", "images", "tiny_64x48.png"));
    const text = await client.chat.completions.create({ model: "tiny-lfm2-vl", messages: [{ role: "user", content: "What is it?" }], max_tokens: 2 });
    const image = await client.chat.completions.create({
      model: "tiny-lfm2-vl",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: `data:image/png;base64,${png.toString("base64")}` } }, { type: "text", text: "What is it?" }] }],
      max_tokens: 2,
    });
    // The image's tokens are in the prompt.
    expect(image.usage!.prompt_tokens).toBeGreaterThan(text.usage!.prompt_tokens + 4);
    const fromFile = await client.chat.completions.create({
      model: "tiny-lfm2-vl",
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: `file://${join(FIXTURES, "vision", "images", "tiny_64x48.png")}` } }, { type: "text", text: "What is it?" }] }],
      max_tokens: 2,
    });
    expect(fromFile.usage!.prompt_tokens).toBe(image.usage!.prompt_tokens);
  });

  it("reads an input_audio part through LFM2-Audio", async () => {
    const wav = readFileSync(join(FIXTURES, "audio", "clips", "speech_en_16k.wav"));
    const text = await client.chat.completions.create({ model: "tiny-lfm2-audio", messages: [{ role: "user", content: "Transcribe." }], max_tokens: 2 });
    const audio = await client.chat.completions.create({
      model: "tiny-lfm2-audio",
      messages: [
        { role: "system", content: "Perform ASR." },
        { role: "user", content: [{ type: "input_audio", input_audio: { data: wav.toString("base64"), format: "wav" } }] },
      ],
      max_tokens: 4,
    });
    expect(typeof audio.choices[0].message.content).toBe("string");
    // 4.5 s of audio is about 56 rows of 80 ms in the prompt.
    expect(audio.usage!.prompt_tokens).toBeGreaterThan(text.usage!.prompt_tokens + 40);
  });
});

describe("logprobs", () => {
  type Entry = OpenAI.ChatCompletionTokenLogprob;
  /** The reply's text from its tokens' bytes (special tokens, which the content leaves out, removed). */
  const textOf = (entries: Entry[]) => Buffer.from(entries.flatMap((e) => e.bytes ?? [])).toString("utf8").replace(/<\|[^|]*\|>/g, "");

  it("gives each token's log-probability, bytes and top alternatives in OpenAI's shape, changing no output", async () => {
    const plain = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 10, temperature: 0 });
    expect(plain.choices[0].logprobs).toBeNull();
    const reply = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 5 });
    const choice = reply.choices[0];
    expect(choice.message.content).toBe(plain.choices[0].message.content);
    const content = choice.logprobs!.content!;
    expect(content).toHaveLength(reply.usage!.completion_tokens);
    for (const e of content) {
      expect(typeof e.token).toBe("string");
      expect(Number.isFinite(e.logprob) && e.logprob <= 0).toBe(true);
      expect(e.bytes!.every((b) => Number.isInteger(b) && b >= 0 && b < 256)).toBe(true);
      expect(e.top_logprobs).toHaveLength(5);
      for (let i = 1; i < 5; i++) expect(e.top_logprobs[i].logprob).toBeLessThanOrEqual(e.top_logprobs[i - 1].logprob);
      // Greedy: the chosen token is the likeliest.
      expect(e.top_logprobs[0]).toEqual({ token: e.token, logprob: e.logprob, bytes: e.bytes });
    }
    expect(textOf(content)).toBe(choice.message.content);
    // Sampled: the same reply for a seed, with or without logprobs; top_logprobs 0 lists none.
    const sampled = { model: "tiny-lfm2", messages: HELLO, max_tokens: 10, temperature: 1, seed: 7 };
    const a = await client.chat.completions.create(sampled);
    const b = await client.chat.completions.create({ ...sampled, logprobs: true, top_logprobs: 0 });
    expect(b.choices[0].message.content).toBe(a.choices[0].message.content);
    expect(b.choices[0].logprobs!.content!.every((e) => e.top_logprobs.length === 0)).toBe(true);
  });

  it("streams each chunk's tokens with it: joined, the same entries as the reply", async () => {
    const body = { model: "tiny-lfm2", messages: HELLO, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 2 } as const;
    const whole = (await client.chat.completions.create(body)).choices[0].logprobs!.content!;
    const stream = await client.chat.completions.create({ ...body, stream: true });
    const streamed: Entry[] = [];
    let text = "";
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        expect(c.logprobs).not.toBeNull();
        streamed.push(...(c.logprobs?.content ?? []));
        text += c.delta.content ?? "";
      }
    }
    expect(streamed.map((e) => [e.token, e.bytes, e.top_logprobs.length])).toEqual(whole.map((e) => [e.token, e.bytes, 2]));
    streamed.forEach((e, i) => expect(e.logprob).toBeCloseTo(whole[i].logprob, 4));
    expect(textOf(streamed)).toBe(text);
  });

  it("works under a json_schema format: tokens the grammar forces have probability 1", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
    const reply = await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 20, logprobs: true, top_logprobs: 3, response_format: { type: "json_schema", json_schema: { name: "s", schema } } });
    const content = reply.choices[0].logprobs!.content!;
    expect(JSON.parse(reply.choices[0].message.content!)).toHaveProperty("ok");
    expect(content.some((e) => e.logprob === 0)).toBe(true); // `{"ok":` is forced
    for (const e of content) if (e.logprob === 0) expect(e.top_logprobs).toEqual([{ token: e.token, logprob: 0, bytes: e.bytes }]);
  });

  it("gives them for the vision and audio models too", async () => {
    for (const model of ["tiny-lfm2-vl", "tiny-lfm2-audio"]) {
      const reply = await client.chat.completions.create({ model, messages: HELLO, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 1 });
      const content = reply.choices[0].logprobs!.content!;
      expect(content, model).toHaveLength(reply.usage!.completion_tokens);
      for (const e of content) expect(e.top_logprobs[0], model).toEqual({ token: e.token, logprob: e.logprob, bytes: e.bytes });
    }
  });

  it("refuses top_logprobs without logprobs, or out of 0–20, naming the field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ top_logprobs: 3 }, "top_logprobs"],
      [{ logprobs: false, top_logprobs: 3 }, "top_logprobs"],
      [{ logprobs: true, top_logprobs: 21 }, "top_logprobs"],
      [{ logprobs: true, top_logprobs: 1.5 }, "top_logprobs"],
      [{ logprobs: "yes" }, "logprobs"],
    ];
    for (const [body, param] of cases) {
      const e = (await client.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, ...body } as never).catch((x: unknown) => x)) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e, JSON.stringify(body)).toBeInstanceOf(OpenAI.BadRequestError);
      expect(e.param).toBe(param);
    }
  });
});

describe("errors as OpenAI's error JSON with our codes", () => {
  it("an unknown model is a 404 naming the models there are", async () => {
    const e = await client.chat.completions.create({ model: "gpt-4o", messages: HELLO }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    const err = e as InstanceType<typeof OpenAI.NotFoundError>;
    expect(err.status).toBe(404);
    expect(err.code).toBe("MODEL_NOT_FOUND");
    expect(err.message).toContain("tiny-lfm2");
  });

  it("an unsupported field, a bad value or a part the model cannot take is a 400 naming the field", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ model: "tiny-lfm2", messages: HELLO, logit_bias: { "1": 5 } }, "logit_bias"],
      [{ model: "tiny-lfm2", messages: HELLO, n: 2 }, "n"],
      [{ model: "tiny-lfm2", messages: HELLO, temperature: 3 }, "temperature"],
      [{ model: "tiny-lfm2", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }] }] }, "messages[0].content[0].image_url.url"],
      [{ model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }] }] }, "messages[0].content[0].image_url.url"],
    ];
    for (const [body, param] of cases) {
      const e = (await client.chat.completions.create(body as never).catch((x: unknown) => x)) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect(e.param).toBe(param);
      expect(e.code).toBe("INVALID_ARGUMENT");
    }
  });

  it("file:// URLs outside --allow-files are refused, links and .. included", async () => {
    for (const url of ["file:///etc/passwd", `file://${join(FIXTURES, "vision", "images", "..", "reference.json")}`, "file://remote-host/x.png"]) {
      const e = (await client.chat.completions
        .create({ model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }] })
        .catch((x: unknown) => x)) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e, url).toBeInstanceOf(OpenAI.BadRequestError);
      expect(e.param).toBe("messages[0].content[0].image_url.url");
    }
  });
});

describe("under load", () => {
  it("a request past the server's time limit stops and answers 504 DEADLINE_EXCEEDED", async () => {
    const strict = await startTestServer({ requestTimeoutMs: 1500 });
    try {
      const c = strict.client();
      await c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 1 }); // loaded before the clock matters
      const started = performance.now();
      const e = (await c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 20_000 }).catch((x: unknown) => x)) as InstanceType<typeof OpenAI.APIError>;
      expect(e).toBeInstanceOf(OpenAI.InternalServerError);
      expect(e.status).toBe(504);
      expect(e.code).toBe("DEADLINE_EXCEEDED");
      expect(performance.now() - started).toBeLessThan(10_000);
      expect(await metricValue(strict.url, 'lfm_deadline_exceeded_total{model="tiny-lfm2"}')).toBe(1);
      expect(await metricValue(strict.url, 'lfm_queue_running{model="tiny-lfm2"}')).toBe(0);
    } finally {
      await strict.close();
    }
  });

  it("a client that leaves before a non-streamed reply cancels its generation", async () => {
    const c = server.client();
    await c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 1 });
    const cancelledBefore = await metricValue(server.url, 'lfm_generations_cancelled_total{model="tiny-lfm2"}');
    const tokens = () => metricValue(server.url, 'lfm_completion_tokens_total{model="tiny-lfm2"}');
    const before = await tokens();
    const abort = new AbortController();
    const pending = c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 4000 }, { signal: abort.signal }).catch((x: unknown) => x);
    while ((await tokens()) < before + 3) await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError);
    let cancelled = cancelledBefore;
    for (let i = 0; i < 200 && cancelled === cancelledBefore; i++) {
      await new Promise((r) => setTimeout(r, 25));
      cancelled = await metricValue(server.url, 'lfm_generations_cancelled_total{model="tiny-lfm2"}');
    }
    expect(cancelled).toBe(cancelledBefore + 1);
    expect((await tokens()) - before).toBeLessThan(1000);
  });

  it("a full queue answers 429 with Retry-After; a disconnected client's generation stops", async () => {
    const busy = await startTestServer({ maxQueue: 0 });
    try {
      const c = busy.client();
      const tokens = () => metricValue(busy.url, 'lfm_completion_tokens_total{model="tiny-lfm2"}');
      // Warm the model, so the long request below is generating, not loading, when the second comes.
      await c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 1 });
      const before = await tokens();
      const abort = new AbortController();
      const long = await c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 4000, stream: true }, { signal: abort.signal });
      const reading = (async () => {
        let chunks = 0;
        try {
          for await (const _ of long) if (++chunks === 3) break; // break ends the response: the client is gone
        } catch {
          /* aborted */
        }
      })();
      // Wait until tokens flow, then a second request finds the queue full.
      while ((await tokens()) < before + 3) await new Promise((r) => setTimeout(r, 20));
      const res = await fetch(`${busy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny-lfm2", messages: HELLO, max_tokens: 1 }),
      });
      expect(res.status).toBe(429);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(((await res.json()) as { error: { code: string; type: string } }).error).toMatchObject({ code: "QUEUE_FULL", type: "rate_limit_error" });

      await reading;
      abort.abort();
      // The generation ends: the count stops growing long before 4000 tokens, and the model is free.
      let cancelled = 0;
      for (let i = 0; i < 200 && cancelled === 0; i++) {
        await new Promise((r) => setTimeout(r, 25));
        cancelled = await metricValue(busy.url, 'lfm_generations_cancelled_total{model="tiny-lfm2"}');
      }
      expect(cancelled).toBe(1);
      const stopped = await tokens();
      await new Promise((r) => setTimeout(r, 300));
      expect(await tokens()).toBe(stopped);
      expect(stopped - before).toBeLessThan(1000);
      expect(await metricValue(busy.url, 'lfm_queue_running{model="tiny-lfm2"}')).toBe(0);
      const after = await c.chat.completions.create({ model: "tiny-lfm2", messages: HELLO, max_tokens: 1 });
      expect(after.usage!.completion_tokens).toBe(1);
    } finally {
      await busy.close();
    }
  });
});
