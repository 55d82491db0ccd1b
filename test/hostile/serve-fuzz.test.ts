/**
 * 1,000 malformed requests to `lfm serve`, made from valid ones by seeded random mutations: JSON
 * text cut or corrupted, a field deleted or given a value of the wrong type or size, unknown
 * fields, wrong content types, bad base64, `file://` path tricks, bodies over the limit. Every
 * answer must be a 4xx with OpenAI's error JSON, or — where the mutation left a valid request — a
 * 200; never a 5xx, a hang or a crash.
 */
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURES } from "../helpers/reference.ts";
import { type TestServer, startTestServer } from "../server/server-harness.ts";

const REQUESTS = 1000;
const BODY_LIMIT = 256 * 1024;

/** mulberry32: a small seeded generator, so a failure replays. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let server: TestServer;
let allowDir: string;

beforeAll(async () => {
  allowDir = mkdtempSync(join(tmpdir(), "serve-fuzz-allow-"));
  writeFileSync(join(allowDir, "pic.png"), readFileSync(join(FIXTURES, "vision", "images", "tiny_64x48.png")));
  symlinkSync("/etc/passwd", join(allowDir, "escape.png")); // a link inside that leads out
  server = await startTestServer({ allowFiles: allowDir, bodyLimitBytes: BODY_LIMIT, maxQueue: 64 });
});
afterAll(async () => {
  await server?.close();
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function templates(): { path: string; body: { [key: string]: Json } }[] {
  const png = readFileSync(join(FIXTURES, "vision", "images", "tiny_64x48.png")).toString("base64");
  const wav = readFileSync(join(FIXTURES, "audio", "clips", "speech_en_16k.wav")).toString("base64");
  const chat = "/v1/chat/completions";
  return [
    { path: chat, body: { model: "tiny-lfm2", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }], max_tokens: 1, temperature: 0, stop: ["\n"] } },
    { path: chat, body: { model: "tiny-lfm2", messages: [{ role: "user", content: "Hi" }], max_tokens: 1, stream: true, stream_options: { include_usage: true } } },
    {
      path: chat,
      body: {
        model: "tiny-lfm2",
        messages: [{ role: "user", content: "Pump?" }],
        max_tokens: 1,
        tools: [{ type: "function", function: { name: "get", parameters: { type: "object", properties: { id: { type: "integer" } } } } }],
        tool_choice: "auto",
      },
    },
    { path: chat, body: { model: "tiny-lfm2", messages: [{ role: "user", content: "JSON" }], max_tokens: 1, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "integer" } } } } } } },
    { path: chat, body: { model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: `data:image/png;base64,${png}` } }, { type: "text", text: "What?" }] }], max_tokens: 1 } },
    { path: chat, body: { model: "tiny-lfm2-vl", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: `file://${join(allowDir, "pic.png")}` } }] }], max_tokens: 1 } },
    { path: chat, body: { model: "tiny-lfm2-audio", messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: wav, format: "wav" } }] }], max_tokens: 1 } },
    { path: "/v1/audio/speech", body: { model: "tiny-lfm2-audio", input: "Hi", voice: "alloy", response_format: "pcm", max_frames: 1 } },
  ];
}

const WEIRD: Json[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, "", "x".repeat(3000), "\u0000\u202e", [], {}, [[[[[]]]]], { a: { b: { c: {} } } }, ["x"], [1, 2], "NaN", "tiny-lfm2", "data:image/png;base64,"];
const PATH_TRICKS = [
  "file:///etc/passwd",
  "file:///../../../../etc/passwd",
  "file://localhost/etc/passwd",
  "file://evil.example/share/x.png",
  "file:///%2e%2e/%2e%2e/etc/passwd",
  "http://127.0.0.1:1/x.png",
  "ftp://x/y.png",
  "javascript:alert(1)",
  "data:text/html;base64,PGI+",
  "data:image/png,notbase64",
  "data:image/png;base64,****",
];

/** Every path to a value inside `value` (containers included). */
function pathsOf(value: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...pathsOf(v, [...prefix, i])));
  else if (value !== null && typeof value === "object") for (const [k, v] of Object.entries(value)) out.push(...pathsOf(v, [...prefix, k]));
  return out;
}

function setAt(root: Json, path: (string | number)[], make: (old: Json) => Json | undefined): Json {
  if (path.length === 0) return make(root) ?? null;
  const parent = path.slice(0, -1).reduce<Json>((node, key) => (node as Record<string, Json>)[key as string], root) as Record<string, Json> | Json[];
  const key = path[path.length - 1];
  const next = make((parent as Record<string, Json>)[key as string]);
  if (next === undefined) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
  } else (parent as Record<string, Json>)[key as string] = next;
  return root;
}

interface FuzzRequest {
  path: string;
  contentType: string;
  body: string;
  what: string;
}

function mutate(rand: () => number, i: number): FuzzRequest {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)];
  const template = pick(templates());
  const body = structuredClone(template.body) as Json;
  const base = { path: template.path, contentType: "application/json" };
  const kind = i % 10;
  if (kind === 0) {
    const text = JSON.stringify(body);
    return { ...base, body: text.slice(0, Math.floor(rand() * text.length)), what: "cut JSON" };
  }
  if (kind === 1) {
    const text = JSON.stringify(body);
    const at = Math.floor(rand() * text.length);
    const junk = pick(["\u0000", "}", "{", '"', "\\", ",", "]", "\ud800", "%", "\n"]);
    return { ...base, body: text.slice(0, at) + junk + text.slice(at + 1), what: `corrupt JSON at ${at}` };
  }
  if (kind === 2) {
    return { ...base, contentType: pick(["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/octet-stream"]), body: JSON.stringify(body), what: "content type" };
  }
  if (kind === 3) {
    // A file:// or URL trick in an image part.
    const url = pick([...PATH_TRICKS, `file://${join(allowDir, "escape.png")}`, `file://${join(allowDir, "..", "x.png")}`, `file://${allowDir}`, `file://${join(allowDir, "missing.png")}`]);
    const tricked = { model: "tiny-lfm2-vl", max_tokens: 1, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }] };
    return { ...base, path: "/v1/chat/completions", body: JSON.stringify(tricked), what: `image url ${url}` };
  }
  if (kind === 4 && rand() < 0.2) {
    return { ...base, body: JSON.stringify({ ...(body as object), padding: "x".repeat(BODY_LIMIT) }), what: "over the body limit" };
  }
  // A value somewhere replaced, deleted, or a field added.
  const paths = pathsOf(body).filter((p) => p[0] !== "max_tokens" && p[0] !== "max_frames");
  const target = pick(paths);
  const how = rand();
  if (how < 0.15) return { ...base, body: JSON.stringify({ ...(body as object), [pick(["logit_bias", "functions", "best_of", "echo", "suffix", "__proto__x"])]: pick(WEIRD) }), what: "unknown field" };
  const value = how < 0.35 ? undefined : pick(WEIRD);
  setAt(body, target, () => value);
  return { ...base, body: JSON.stringify(body) ?? "", what: `${target.join(".") || "(body)"} = ${value === undefined ? "(deleted)" : JSON.stringify(value)?.slice(0, 40)}` };
}

describe("fuzzing lfm serve with malformed requests", () => {
  it(`answers ${REQUESTS} mutated requests with a 4xx and error JSON (or a 200 where still valid), never a 5xx`, async () => {
    const rand = random(20261203);
    const statuses = new Map<number, number>();
    for (let i = 0; i < REQUESTS; i++) {
      const req = mutate(rand, i);
      const res = await fetch(`${server.url}${req.path}`, { method: "POST", headers: { "content-type": req.contentType }, body: req.body, signal: AbortSignal.timeout(60_000) });
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const where = `request ${i} (${req.what}) → ${res.status}: ${text.slice(0, 300)}`;
      expect(res.status < 500, where).toBe(true);
      if (res.status >= 400) {
        const parsed = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; code?: unknown; param?: unknown } };
        expect(typeof parsed.error?.message, where).toBe("string");
        expect(parsed.error?.code, where).toMatch(/^[A-Z_]+$/);
        expect(typeof parsed.error?.type, where).toBe("string");
      } else expect(res.status, where).toBe(200);
    }
    const refused = [...statuses].filter(([s]) => s >= 400).reduce((n, [, c]) => n + c, 0);
    // Most mutations break the request; the rest must have been answered normally.
    expect(refused).toBeGreaterThan(REQUESTS * 0.6);
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
  }, 600_000);
});
