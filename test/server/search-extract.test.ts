/**
 * POST /v1/search, GET /v1/indexes, POST /v1/extract and the page's files, over HTTP against an
 * in-process server on the bundled tiny models (the page itself: web-page.test.ts, in Chromium).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { citationPieces, highlightPieces, queryTerms, termRanges } from "../../server/web/highlight.js";
import { runLfm } from "../helpers/cli.ts";
import { makePdf } from "../helpers/pdfs.ts";
import { TEST_CACHE } from "../helpers/reference.ts";
import { type TestServer, indexFiles, startTestServer } from "./server-harness.ts";

const PASSAGES = {
  "pumps.txt": "Pump 7 pressure dropped to 31 bar at 08:15. The pressure relief valve was replaced.",
  "boilers.txt": "The boiler feed water temperature stays between 80 and 90 degrees.",
};
const SCHEMA = {
  type: "object",
  properties: { serial: { type: "string", maxLength: 8 }, ok: { type: "boolean" } },
  required: ["serial", "ok"],
  additionalProperties: false,
};

let dir: string;
let server: TestServer;
let keyed: TestServer;
let pdf: Uint8Array;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lfm-serve-search-"));
  const indexes = indexFiles(dir, "notes", PASSAGES);
  mkdirSync(join(indexes, "not-an-index"));
  pdf = await makePdf([["Serial number: SN-4471", "Status: ok"]]);
  server = await startTestServer({ search: { indexesDir: indexes, load: { cacheDir: TEST_CACHE } } });
  keyed = await startTestServer({ apiKey: "secret-key-1234" });
}, 400_000);

afterAll(async () => {
  await server?.close();
  await keyed?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, body: unknown, base = server.url) =>
  fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function expectError(res: Response, status: number, code: string, param?: string): Promise<string> {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string; param: string | null } };
  expect(body.error.code).toBe(code);
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body.error.message;
}

describe("query-term highlighting (server/web/highlight.js)", () => {
  it("marks each query word at word starts, case-insensitively, longest first", () => {
    expect(queryTerms("Pump pressure, pump!")).toEqual(["pump", "pressure"]);
    expect(queryTerms("a 7 ß")).toEqual(["7"]); // one-letter words are noise; numbers are not
    const text = "Pumps: pressure PUMP repump";
    expect(termRanges(text, ["pump", "press"]).map(([s, e]) => text.slice(s, e))).toEqual(["Pumps", "pressure", "PUMP"]);
    expect(highlightPieces("Pump 7 failed", "pump")).toEqual([
      { text: "Pump", mark: true },
      { text: " 7 failed", mark: false },
    ]);
    expect(highlightPieces("no match", "(.*)")).toEqual([{ text: "no match", mark: false }]);
  });

  it("cuts an answer around its citation brackets, as pipelines/citations.ts reads them", () => {
    expect(citationPieces("Pump 7 failed [2]. Valve [1, 3; 4] and [note] [see 2].")).toEqual([
      { text: "Pump 7 failed " },
      { cite: [2] },
      { text: ". Valve " },
      { cite: [1, 3, 4] },
      { text: " and [note] [see 2]." },
    ]);
    expect(citationPieces("")).toEqual([]);
  });
});

describe("POST /v1/search", () => {
  it("lists the indexes of --indexes-dir (folders without a manifest left out)", async () => {
    const body = (await (await fetch(`${server.url}/v1/indexes`)).json()) as { data: Array<{ id: string; documents: number; model: string }> };
    expect(body.data.map((ix) => ix.id)).toEqual(["notes"]);
    expect(body.data[0].documents).toBe(2);
    expect(body.data[0].model).toBe("tiny-lfm2-colbert");
  });

  it("returns the passages of a named index, ranked, with their text, source and metadata", async () => {
    const res = await post("/v1/search", { index: "notes", query: "pump pressure", k: 5 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { index: string; data: Array<{ id: string; score: number; text: string; source: string; metadata: Record<string, unknown> }> };
    expect(body.index).toBe("notes");
    expect(body.data).toHaveLength(2);
    expect(body.data.map((h) => h.text).sort()).toEqual(Object.values(PASSAGES).sort());
    expect(body.data[0].score).toBeGreaterThanOrEqual(body.data[1].score);
    expect(body.data.every((h) => h.source.endsWith(".txt") && h.metadata.type === "txt")).toBe(true);
    const one = (await (await post("/v1/search", { index: "notes", query: "boiler", k: 1, filter: { source: body.data[1].source } })).json()) as typeof body;
    expect(one.data.map((h) => h.source)).toEqual([body.data[1].source]);
  });

  it("refuses bad requests with a 400 naming the field, and unknown or escaping index names", async () => {
    await expectError(await post("/v1/search", { index: "notes" }), 400, "INVALID_ARGUMENT", "query");
    await expectError(await post("/v1/search", { index: "notes", query: "x", k: 0 }), 400, "INVALID_ARGUMENT", "k");
    await expectError(await post("/v1/search", { index: "notes", query: "x", filter: { page: { $gt: 1 } } }), 400, "INVALID_ARGUMENT", "filter.page");
    await expectError(await post("/v1/search", { index: "notes", query: "x", top_k: 3 }), 400, "INVALID_ARGUMENT", "top_k");
    // As on /v1/answers and /v1/documents: a name that tries to leave --indexes-dir names no index (404).
    await expectError(await post("/v1/search", { index: "../indexes/notes", query: "x" }), 404, "INDEX_NOT_FOUND");
    await expectError(await post("/v1/search", { index: "", query: "x" }), 400, "INVALID_ARGUMENT", "index");
    expect(await expectError(await post("/v1/search", { index: "nope", query: "x" }), 404, "INDEX_NOT_FOUND")).toContain("notes");
    await expectError(await post("/v1/search", { index: "not-an-index", query: "x" }), 404, "INDEX_NOT_FOUND");
    await expectError(await post("/v1/search", { index: "notes", query: "x" }, keyed.url), 401, "UNAUTHORIZED");
  });

  it("lfm serve --indexes-dir must name a folder", () => {
    const r = runLfm(["serve", "--port", "0", "--indexes-dir", join(dir, "no-such-folder")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("error [FILE_NOT_FOUND]: --indexes-dir");
  });

  it("says so when the server has no --indexes-dir", async () => {
    const res = await fetch(`${keyed.url}/v1/indexes`, { headers: { authorization: "Bearer secret-key-1234" } });
    expect(((await res.json()) as { data: unknown[] }).data).toEqual([]);
    const search = await fetch(`${keyed.url}/v1/search`, { method: "POST", headers: { authorization: "Bearer secret-key-1234", "content-type": "application/json" }, body: JSON.stringify({ index: "notes", query: "x" }) });
    expect(await expectError(search, 400, "INVALID_ARGUMENT", "index")).toContain("--indexes-dir");
  });
});

describe("POST /v1/extract", () => {
  const form = (fields: Record<string, string | Blob>) => {
    const f = new FormData();
    for (const [k, v] of Object.entries(fields)) f.append(k, v);
    return f;
  };
  const extract = (fields: Record<string, string | Blob>) => fetch(`${server.url}/v1/extract`, { method: "POST", body: form(fields) });
  const pdfBlob = () => new File([Buffer.from(pdf)], "serial.pdf", { type: "application/pdf" });

  it("a PDF and a schema → JSON valid under it, with confidence and page per value", async () => {
    const res = await extract({ file: pdfBlob(), schema: JSON.stringify(SCHEMA), max_tokens: "48" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model: string; filename: string; sha256: string; data: { serial: string; ok: boolean }; confidence: Record<string, number>; provenance: Record<string, { page: number }>; pages: unknown[] };
    expect(body.model).toBe("tiny-lfm2-vl");
    expect(body.filename).toBe("serial.pdf");
    expect(body.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(typeof body.data.serial).toBe("string");
    expect(body.data.serial.length).toBeLessThanOrEqual(8);
    expect(typeof body.data.ok).toBe("boolean");
    expect(body.pages).toEqual([{ page: 1, route: "text" }]);
    expect(Object.keys(body.confidence).sort()).toEqual(["/ok", "/serial"]);
    expect(Object.values(body.confidence).every((c) => c <= 0)).toBe(true);
    expect(body.provenance["/ok"].page).toBe(1);
  });

  it("refuses a bad schema, a missing file, a non-vision model and a JSON body", async () => {
    await expectError(await extract({ file: pdfBlob(), schema: "{not json" }), 400, "SCHEMA_INVALID", "schema");
    await expectError(await extract({ file: pdfBlob(), schema: '{"type": "array"}' }), 400, "SCHEMA_INVALID", "schema");
    await expectError(await extract({ schema: JSON.stringify(SCHEMA) }), 400, "INVALID_ARGUMENT", "file");
    await expectError(await extract({ file: pdfBlob(), model: "tiny-lfm2" }), 400, "INVALID_ARGUMENT", "model");
    await expectError(await extract({ file: pdfBlob(), model: "nope" }), 404, "MODEL_NOT_FOUND");
    await expectError(await extract({ file: pdfBlob(), pages: "1" }), 400, "INVALID_ARGUMENT", "pages");
    await expectError(await extract({ file: pdfBlob(), max_tokens: "0" }), 400, "INVALID_ARGUMENT", "max_tokens");
    await expectError(await post("/v1/extract", { file: "x" }), 400, "INVALID_ARGUMENT", "body");
    const broken = await extract({ file: new File([new TextEncoder().encode("%PDF-1.7\nnot really\n")], "broken.pdf") });
    expect(broken.status).toBe(400);
  });

  it("answers hostile uploads and searches with a 4xx and error JSON, never a 5xx", async () => {
    const cases: Array<[string, () => Promise<Response>]> = [
      ["garbage bytes as an image", () => extract({ file: new File([new Uint8Array(4096).fill(7)], "x.png") })],
      ["an empty file", () => extract({ file: new File([], "empty.pdf") })],
      ["a schema file part", () => extract({ file: pdfBlob(), schema: new File(["{]"], "s.json") })],
      ["a damaged multipart body", () => fetch(`${server.url}/v1/extract`, { method: "POST", headers: { "content-type": "multipart/form-data; boundary=zzz" }, body: "--zzz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc" })],
      ["a query too long", () => post("/v1/search", { index: "notes", query: "x".repeat(5000) })],
      ["an index name with a NUL", () => post("/v1/search", { index: "notes\u0000", query: "x" })],
      ["an absolute index path", () => post("/v1/search", { index: "/etc", query: "x" })],
      ["a filter with too many values", () => post("/v1/search", { index: "notes", query: "x", filter: { type: Array.from({ length: 65 }, () => "txt") } })],
      ["a non-object body", () => post("/v1/search", ["notes", "x"])],
      ["a k that is a string", () => post("/v1/search", { index: "notes", query: "x", k: "5" })],
    ];
    for (const [name, send] of cases) {
      const res = await send();
      expect(res.status, name).toBeGreaterThanOrEqual(400);
      expect(res.status, name).toBeLessThan(500);
      const body = (await res.json()) as { error?: { code?: string } };
      expect(typeof body.error?.code, name).toBe("string");
    }
  });
});

describe("the page's files", () => {
  it("serves the page and its modules with a strict content security policy, without the API key", async () => {
    for (const [path, type] of [
      ["/", "text/html"],
      ["/web/app.js", "text/javascript"],
      ["/web/style.css", "text/css"],
      ["/web/icon.svg", "image/svg+xml"],
    ]) {
      const res = await fetch(`${keyed.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type")).toContain(type);
      expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    }
    const html = await (await fetch(`${server.url}/`)).text();
    expect(html).toContain('<script type="module" src="/web/app.js">');
    expect(html).not.toMatch(/https?:\/\//); // nothing from elsewhere
  });

  it("serves nothing else from its folder", async () => {
    for (const path of ["/web/highlight.d.ts", "/web/..%2Fweb-page.ts", "/web/%2e%2e%2fapp.ts", "/web/nope.js"]) {
      await expectError(await fetch(`${server.url}${path}`), 404, "ROUTE_NOT_FOUND");
    }
  });
});
