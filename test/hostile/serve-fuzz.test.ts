/**
 * 1,200 malformed requests to `lfm serve`, made from valid ones by seeded random mutations, on
 * every route: JSON text cut or corrupted, a field deleted or given a value of the wrong type or
 * size, unknown fields, wrong content types, bad base64, `file://` path tricks, bodies over the
 * limit (chat, speech, answers, documents, search); multipart uploads with a part missing, damaged
 * bytes or boundary, a schema that is not JSON or is huge, audio bytes that are not audio, a bad
 * response_format (extract, transcriptions); index names and document ids with path tricks
 * (DELETE /v1/documents, GET /v1/indexes, GET /v1/models). Every answer must be a 4xx with
 * OpenAI's error JSON, or — where the mutation left a valid request — a 200; never a 5xx, a hang
 * or a crash.
 */
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rng as random } from "../../bench/synthetic-colbert.ts";
import { DEFAULT_COLBERT_PRECISION } from "../../retrieval/colbert.ts";
import { modelIdentity } from "../../retrieval/index/model-identity.ts";
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { loadPylateFolder } from "../../retrieval/pylate-config.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { type TestServer, startTestServer } from "../server/server-harness.ts";

const REQUESTS = 1200;
const BODY_LIMIT = 256 * 1024;
const COLBERT = join(FIXTURES, "retrieval", "tiny-lfm2-colbert");

let server: TestServer;
let allowDir: string;
/** The server's failure lines (a 5xx's stack), shown with the request that caused one. */
const serverLog: string[] = [];

beforeAll(async () => {
  allowDir = mkdtempSync(join(tmpdir(), "serve-fuzz-allow-"));
  writeFileSync(join(allowDir, "pic.png"), readFileSync(join(FIXTURES, "vision", "images", "tiny_64x48.png")));
  symlinkSync("/etc/passwd", join(allowDir, "escape.png")); // a link inside that leads out
  // An index "notes" made by the bundled ColBERT model (empty; its first passage comes through the server).
  const indexes = join(allowDir, "indexes");
  mkdirSync(indexes);
  const model = modelIdentity(COLBERT);
  const dim = loadPylateFolder(COLBERT).dense.at(-1)?.outFeatures;
  if (dim === undefined) throw new Error(`${COLBERT} has no Dense head`);
  const writer = await IndexWriter.open(join(indexes, "notes"), { create: { dim, storage: "float16", layout: "plaid", model: { ...model, precision: DEFAULT_COLBERT_PRECISION } }, model });
  await writer.close();
  server = await startTestServer({ allowFiles: allowDir, bodyLimitBytes: BODY_LIMIT, maxQueue: 64, search: { indexesDir: indexes, load: { cacheDir: TEST_CACHE } }, log: (line) => serverLog.push(line) });
  const added = await fetch(`${server.url}/v1/documents`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ index: "notes", source: "pumps.txt", text: "Pump 7 pressure dropped to 31 bar; the relief valve was replaced." }) });
  if (added.status !== 200) throw new Error(`the fuzz index could not be filled: ${await added.text()}`);
}, 120_000);
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
    { path: "/v1/audio/speech", body: { model: "tiny-lfm2-audio", input: "Hi", voice: "nova", response_format: "wav", speed: 1, instructions: "Calm.", max_frames: 1 } },
    { path: "/v1/search", body: { index: "notes", query: "pump pressure", k: 2, filter: { type: ["text", "pdf"] } } },
    // min_score 2 abstains before the model runs (cheap); the other template writes one token.
    { path: "/v1/answers", body: { index: "notes", model: "tiny-lfm2", question: "What happened to pump 7?", k: 2, min_score: 2 } },
    { path: "/v1/answers", body: { index: "notes", model: "tiny-lfm2", question: "Pump?", k: 1, max_tokens: 1, min_score: -1000, stream: true, strict_citations: false } },
    { path: "/v1/documents", body: { index: "notes", source: "fuzz/doc.txt", text: "The boiler stays between 80 and 90 degrees.", metadata: { site: "north", shift: 2 } } },
  ];
}

const WEIRD: Json[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, "", "x".repeat(3000), "y ".repeat(40_000), "\u0000\u202e", [], {}, [[[[[]]]]], { a: { b: { c: {} } } }, ["x"], [1, 2], "NaN", "tiny-lfm2", "data:image/png;base64,", "../../etc/passwd", "notes/../notes", "%2e%2e"];
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

/** A request as sent: JSON routes send a string; uploads send bytes with their boundary. */
interface SentRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
  what: string;
}

/** 16 kHz mono 16-bit PCM WAV bytes of `samples` (a short tone: a transcription stays cheap). */
function wavBytes(samples: number, declaredBytes = samples * 2): Uint8Array<ArrayBuffer> {
  const out = Buffer.alloc(44 + samples * 2);
  out.write("RIFF", 0);
  out.writeUInt32LE(36 + declaredBytes, 4);
  out.write("WAVEfmt ", 8);
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20);
  out.writeUInt16LE(1, 22);
  out.writeUInt32LE(16000, 24);
  out.writeUInt32LE(32000, 28);
  out.writeUInt16LE(2, 32);
  out.writeUInt16LE(16, 34);
  out.write("data", 36);
  out.writeUInt32LE(declaredBytes, 40);
  for (let i = 0; i < samples; i++) out.writeInt16LE(Math.round(3000 * Math.sin(i / 8)), 44 + i * 2);
  return new Uint8Array(out);
}

type Part = [name: string, value: string | { bytes: Uint8Array<ArrayBuffer>; type: string; filename: string }];

/** The bytes and content type of a multipart form (as a client builds it). */
async function multipart(parts: Part[]): Promise<{ body: Uint8Array<ArrayBuffer>; contentType: string }> {
  const form = new FormData();
  for (const [name, value] of parts) {
    if (typeof value === "string") form.append(name, value);
    else form.append(name, new Blob([value.bytes], { type: value.type }), value.filename);
  }
  const res = new Response(form);
  return { body: new Uint8Array(await res.arrayBuffer()), contentType: res.headers.get("content-type") ?? "" };
}

/** A malformed upload to /v1/extract or /v1/audio/transcriptions. */
async function mutateUpload(rand: () => number): Promise<SentRequest> {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)];
  const png = readFileSync(join(FIXTURES, "vision", "images", "tiny_64x48.png"));
  const schema = JSON.stringify({ type: "object", properties: { serial: { type: "string", maxLength: 4 } }, required: ["serial"] });
  const extract = (file: Part[1] | null, more: Part[] = []): Part[] => [...(file === null ? [] : [["file", file] as Part]), ["schema", schema], ["model", "tiny-lfm2-vl"], ["max_tokens", "1"], ...more];
  const audio = (file: Part[1] | null, more: Part[] = []): Part[] => [...(file === null ? [] : [["file", file] as Part]), ["model", "tiny-lfm2-audio"], ...more];
  const pngFile = { bytes: new Uint8Array(png), type: "image/png", filename: "pic.png" };
  const wavFile = { bytes: wavBytes(800), type: "audio/wav", filename: "a.wav" };
  const junk = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
  const cases: Array<[string, string, Part[]]> = [
    ["/v1/extract", "no file", extract(null)],
    ["/v1/extract", "file as a text field", [["file", "not a file"], ["schema", schema]]],
    ["/v1/extract", "schema not JSON", extract(pngFile).map(([k, v]): Part => [k, k === "schema" ? pick(["{", "{'a': 1}", "[1,", "null x", "\u0000"]) : v])],
    ["/v1/extract", "schema not an object schema", extract(pngFile).map(([k, v]): Part => [k, k === "schema" ? pick(['{"type": "array"}', "[]", "42", '"x"', '{"type": "object", "properties": 5}', '{"$ref": "http://x/y"}']) : v])],
    ["/v1/extract", "huge schema", extract(pngFile).map(([k, v]): Part => [k, k === "schema" ? JSON.stringify({ type: "object", properties: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`f${i}`, { type: "string" }])) }) : v])],
    ["/v1/extract", "deeply nested schema", extract(pngFile).map(([k, v]): Part => [k, k === "schema" ? `${'{"type":"object","properties":{"a":'.repeat(2000)}{"type":"string"}${"}}".repeat(2000)}` : v])],
    ["/v1/extract", "file that is neither a PDF nor an image", extract({ bytes: junk(2000), type: pick(["application/pdf", "image/png", "application/octet-stream"]), filename: pick(["x.pdf", "x.png", "x"]) })],
    ["/v1/extract", "a PDF cut short", extract({ bytes: new TextEncoder().encode("%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>"), type: "application/pdf", filename: "cut.pdf" })],
    ["/v1/extract", "an unknown field", extract(pngFile, [["temperature", "0.5"]])],
    ["/v1/extract", "a bad max_tokens", extract(pngFile).map(([k, v]): Part => [k, k === "max_tokens" ? pick(["0", "-1", "1e9", "x", "", "1.5"]) : v])],
    ["/v1/extract", "a model that does not see", extract(pngFile).map(([k, v]): Part => [k, k === "model" ? pick(["tiny-lfm2", "tiny-lfm2-audio", "nope", "../x"]) : v])],
    ["/v1/audio/transcriptions", "no file", audio(null)],
    ["/v1/audio/transcriptions", "audio bytes that are not audio", audio({ bytes: junk(pick([0, 1, 12, 44, 3000])), type: "audio/wav", filename: "x.wav" })],
    ["/v1/audio/transcriptions", "a WAV whose header lies about its size", audio({ bytes: wavBytes(400, 0x7ffffff0), type: "audio/wav", filename: "lie.wav" })],
    ["/v1/audio/transcriptions", "a WAV cut inside its header", audio({ bytes: wavBytes(400).subarray(0, Math.floor(rand() * 44)), type: "audio/wav", filename: "cut.wav" })],
    ["/v1/audio/transcriptions", "a bad response_format", audio(wavFile, [["response_format", pick(["xml", "JSON", "", "srt ", "verbose-json", "a".repeat(5000)])]])],
    ["/v1/audio/transcriptions", "an unsupported option", audio(wavFile, [pick<Part>([["temperature", "0.7"], ["stream", "true"], ["prompt", "x"], ["timestamp_granularities[]", "word"], ["n", "2"]])])],
    ["/v1/audio/transcriptions", "a model that does not hear", audio(wavFile).map(([k, v]): Part => [k, k === "model" ? pick(["tiny-lfm2", "tiny-lfm2-vl", "", "nope"]) : v])],
  ];
  const [path, what, parts] = pick(cases);
  const { body, contentType } = await multipart(parts);
  const how = rand();
  if (how < 0.12) {
    // Damaged bytes somewhere in the body (the boundary, a part header or the payload).
    const bytes = body.slice();
    for (let n = 0; n < 4; n++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
    return { method: "POST", path, headers: { "content-type": contentType }, body: bytes, what: `${path} ${what}, bytes damaged` };
  }
  if (how < 0.2) return { method: "POST", path, headers: { "content-type": pick(["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=wrong", "multipart/mixed; boundary=x"]) }, body, what: `${path} ${what}, boundary wrong` };
  if (how < 0.26) return { method: "POST", path, headers: { "content-type": pick(["application/json", "text/plain", "audio/wav", "application/pdf", "application/octet-stream"]) }, body: pick([body, new TextEncoder().encode("{}")]), what: `${path} ${what}, content type` };
  if (how < 0.3) return { method: "POST", path, headers: { "content-type": contentType }, body: body.subarray(0, Math.floor(rand() * body.length)), what: `${path} ${what}, cut short` };
  return { method: "POST", path, headers: { "content-type": contentType }, body, what: `${path} ${what}` };
}

const ID_TRICKS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/manifest.json", "notes/../../x", "a%00b", "%", "%zz", "x".repeat(3000), "pumps.txt#0", "pumps.txt", "fuzz/doc.txt", "%E2%80%AE", "./.", "a?b", "a#b"];
const INDEX_TRICKS = ["notes", "../notes", "..", ".", "%2e%2e", "notes%2F..", "/etc", "", "x".repeat(500), "notes%00", "notes&index=other", "__proto__", "constructor"];

/** A malformed request with a path or query: DELETE /v1/documents ids and index names, GET routes. */
function mutatePath(rand: () => number): SentRequest {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)];
  const how = rand();
  if (how < 0.6) {
    const id = pick(ID_TRICKS);
    const query = pick([`?index=${pick(INDEX_TRICKS)}`, "", "?index=notes&index=notes", "?index[]=notes", "?index=notes&extra=1", "?", "?index"]);
    return { method: "DELETE", path: `/v1/documents/${id}${query}`, headers: {}, what: `DELETE id ${id.slice(0, 40)} ${query.slice(0, 40)}` };
  }
  if (how < 0.7) return { method: "DELETE", path: "/v1/documents/pumps.txt?index=notes", headers: { "content-type": "application/json" }, body: pick(["{", '{"index": "notes"}', "x".repeat(1000)]), what: "DELETE with a body" };
  if (how < 0.8) return { method: "GET", path: pick(["/v1/indexes", "/v1/indexes?x=../..", "/v1/indexes/notes", "/v1/indexes/../../etc"]), headers: {}, what: "GET indexes" };
  if (how < 0.9) return { method: "GET", path: `/v1/models/${pick(["..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "tiny-lfm2/../tiny-lfm2", "%00", "x".repeat(2000)])}`, headers: {}, what: "GET a model" };
  return { method: pick(["PUT", "PATCH", "DELETE", "GET"]), path: pick(["/v1/answers", "/v1/search", "/v1/documents", "/v1/extract", "/v1/audio/speech", "/v1/audio/transcriptions"]), headers: {}, what: "a method the route does not take" };
}

describe("fuzzing lfm serve with malformed requests", () => {
  it("refuses a schema nested too deep before the grammar compiler (whose WASM stack it would overflow), which keeps working", async () => {
    const chat = (schema: unknown) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny-lfm2", messages: [{ role: "user", content: "JSON" }], max_tokens: 4, response_format: { type: "json_schema", json_schema: { name: "x", schema } } }),
      });
    const deep = JSON.parse(`${'{"type":"object","properties":{"a":'.repeat(100)}{"type":"string"}${"}}".repeat(100)}`);
    const refused = await chat(deep);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("SCHEMA_UNSUPPORTED");
    const tools = { model: "tiny-lfm2", messages: [{ role: "user", content: "x" }], max_tokens: 1, tool_choice: "required", tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: deep } } } }] };
    const toolsRefused = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(tools) });
    expect(toolsRefused.status).toBe(400);
    // 20 nested properties still compile, and so does every grammar after the refusals.
    const nested = JSON.parse(`${'{"type":"object","properties":{"a":'.repeat(20)}{"type":"string"}${"}}".repeat(20)}`);
    expect((await chat(nested)).status).toBe(200);
    expect((await chat({ type: "object", properties: { ok: { type: "boolean" } } })).status).toBe(200);
  }, 120_000);

  it(`answers ${REQUESTS} mutated requests with a 4xx and error JSON (or a 200 where still valid), never a 5xx`, async () => {
    const rand = random(20261203);
    const statuses = new Map<number, number>();
    const routes = new Set<string>();
    for (let i = 0; i < REQUESTS; i++) {
      // Of every 6: 4 mutated JSON bodies, 1 upload, 1 path or query trick.
      let req: SentRequest;
      if (i % 6 === 4) req = await mutateUpload(rand);
      else if (i % 6 === 5) req = mutatePath(rand);
      else {
        const json = mutate(rand, i - Math.floor(i / 6) * 2);
        req = { method: "POST", path: json.path, headers: { "content-type": json.contentType }, body: json.body, what: json.what };
      }
      routes.add(`${req.method} ${req.path.split("?")[0].replace(/^\/v1\/documents\/.*/, "/v1/documents/{id}").replace(/^\/v1\/models\/.*/, "/v1/models/{id}")}`);
      const res = await fetch(`${server.url}${req.path}`, { method: req.method, headers: req.headers, body: req.body, signal: AbortSignal.timeout(60_000) });
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const where = `request ${i} (${req.method} ${req.what}) → ${res.status}: ${text.slice(0, 300)}${res.status >= 500 ? `\nserver log: ${serverLog.join("\n").slice(0, 3000)}` : ""}`;
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
    for (const route of ["POST /v1/chat/completions", "POST /v1/audio/speech", "POST /v1/audio/transcriptions", "POST /v1/extract", "POST /v1/search", "POST /v1/answers", "POST /v1/documents", "DELETE /v1/documents/{id}", "GET /v1/indexes", "GET /v1/models/{id}"]) {
      expect(routes, route).toContain(route);
    }
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    // The index still answers: no malformed write left it broken.
    const search = await fetch(`${server.url}/v1/search`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ index: "notes", query: "pump", k: 1 }) });
    expect(search.status).toBe(200);
  }, 600_000);
});
