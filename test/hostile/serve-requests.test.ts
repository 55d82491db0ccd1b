/**
 * Malformed requests to `lfm serve`: each is a 4xx with OpenAI's error JSON and a stable code,
 * never a 5xx, a hang or a crash — and the server still answers afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestServer, startTestServer } from "../server/server-harness.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ bodyLimitBytes: 64 * 1024 });
});
afterAll(async () => {
  await server?.close();
});

const chat = { model: "tiny-lfm2", messages: [{ role: "user", content: "Hi" }], max_tokens: 1 };

interface Case {
  name: string;
  body: string;
  contentType?: string;
  path?: string;
  method?: string;
  status?: number;
  code?: string;
}

const json = (value: unknown) => JSON.stringify(value);

const CASES: Case[] = [
  { name: "bad JSON", body: '{"model": "tiny-lfm2", "messages": [' },
  { name: "an empty body", body: "" },
  { name: "a JSON list", body: "[1, 2]" },
  { name: "a JSON string", body: '"hello"' },
  { name: "a prototype key", body: '{"__proto__": {"x": 1}, "model": "tiny-lfm2", "messages": []}' },
  { name: "no model", body: json({ messages: chat.messages }) },
  { name: "a numeric model", body: json({ ...chat, model: 7 }) },
  { name: "messages as a string", body: json({ ...chat, messages: "Hi" }) },
  { name: "no messages", body: json({ ...chat, messages: [] }) },
  { name: "a message without a role", body: json({ ...chat, messages: [{ content: "Hi" }] }) },
  { name: "an unknown role", body: json({ ...chat, messages: [{ role: "wizard", content: "Hi" }] }) },
  { name: "numeric content", body: json({ ...chat, messages: [{ role: "user", content: 42 }] }) },
  { name: "an unknown part type", body: json({ ...chat, messages: [{ role: "user", content: [{ type: "video", video: "x" }] }] }) },
  { name: "a negative max_tokens", body: json({ ...chat, max_tokens: -1 }) },
  { name: "a fractional max_tokens", body: json({ ...chat, max_tokens: 1.5 }) },
  { name: "a huge max_tokens", body: json({ ...chat, max_tokens: 1e12 }) },
  { name: "a string temperature", body: json({ ...chat, temperature: "hot" }) },
  { name: "top_p 0", body: json({ ...chat, top_p: 0 }) },
  { name: "a negative seed", body: json({ ...chat, seed: -5 }) },
  { name: "stream as a string", body: json({ ...chat, stream: "yes" }) },
  { name: "stream_options without stream", body: json({ ...chat, stream_options: { include_usage: true } }) },
  { name: "an empty stop string", body: json({ ...chat, stop: [""] }) },
  { name: "tools as an object", body: json({ ...chat, tools: { name: "x" } }) },
  { name: "a tool without a name", body: json({ ...chat, tools: [{ type: "function", function: {} }] }) },
  { name: "a tool_choice of an unknown tool", body: json({ ...chat, tools: [{ type: "function", function: { name: "a" } }], tool_choice: { type: "function", function: { name: "b" } } }) },
  { name: "tool_choice without tools", body: json({ ...chat, tool_choice: "required" }) },
  { name: "an unknown response_format", body: json({ ...chat, response_format: { type: "xml" } }) },
  { name: "a json_schema without a schema", body: json({ ...chat, response_format: { type: "json_schema", json_schema: { name: "x" } } }) },
  { name: "a schema that is not one", body: json({ ...chat, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "banana" } } } }) },
  { name: "bad base64 in an image", body: json({ ...chat, model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,@@@@" } }] }] }) },
  { name: "an image that is not one", body: json({ ...chat, model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: `data:image/png;base64,${Buffer.from("not an image at all").toString("base64")}` } }] }] }) },
  { name: "a remote image", body: json({ ...chat, model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://169.254.169.254/latest" } }] }] }) },
  { name: "a file:// image without --allow-files", body: json({ ...chat, model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "file:///etc/passwd" } }] }] }) },
  { name: "an image in a system message", body: json({ ...chat, model: "tiny-lfm2-vl", messages: [{ role: "system", content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }] }] }) },
  { name: "audio that is not audio", body: json({ ...chat, model: "tiny-lfm2-audio", messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: Buffer.from("hello").toString("base64"), format: "wav" } }] }] }) },
  { name: "an unknown audio format", body: json({ ...chat, model: "tiny-lfm2-audio", messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "AAAA", format: "m4a" } }] }] }) },
  { name: "audio to a text model", body: json({ ...chat, messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "AAAA", format: "wav" } }] }] }) },
  { name: "an unknown model", body: json({ ...chat, model: "../../etc/passwd" }), status: 404, code: "MODEL_NOT_FOUND" },
  { name: "a body over the limit", body: json({ ...chat, messages: [{ role: "user", content: "x".repeat(100 * 1024) }] }), status: 413, code: "REQUEST_TOO_LARGE" },
  { name: "a form body", body: "model=tiny-lfm2", contentType: "application/x-www-form-urlencoded", status: 415 },
  { name: "an unknown route", body: json(chat), path: "/v1/completions", status: 404, code: "ROUTE_NOT_FOUND" },
  { name: "a GET of the chat route", body: "", method: "GET", status: 404, code: "ROUTE_NOT_FOUND" },
  { name: "an unknown model by id", body: "", method: "GET", path: "/v1/models/nope", status: 404, code: "MODEL_NOT_FOUND" },
];

describe("malformed requests to lfm serve", () => {
  it.each(CASES)("$name → 4xx with error JSON", async (c) => {
    const method = c.method ?? "POST";
    const res = await fetch(`${server.url}${c.path ?? "/v1/chat/completions"}`, {
      method,
      headers: method === "POST" ? { "content-type": c.contentType ?? "application/json" } : {},
      body: method === "POST" ? c.body : undefined,
    });
    const text = await res.text();
    expect(res.status, text).toBe(c.status ?? 400);
    const { error } = JSON.parse(text) as { error: { message: string; type: string; param: string | null; code: string } };
    expect(error.message.length).toBeGreaterThan(0);
    expect(error.code).toMatch(c.code ? new RegExp(`^${c.code}$`) : /^[A-Z_]+$/);
    expect(["invalid_request_error", "not_found_error"]).toContain(error.type);
    expect(error).toHaveProperty("param");
  });

  it("still answers after all of them", async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: string }).status).toBe("ok");
  });
});
