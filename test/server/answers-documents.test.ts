/**
 * POST /v1/answers (the RAG pipeline over HTTP) and POST/DELETE /v1/documents (maintaining an
 * index through its writer), against an in-process server on the bundled tiny models.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { TEST_CACHE } from "../helpers/reference.ts";
import { type TestServer, indexFiles, startTestServer } from "./server-harness.ts";

const PASSAGES = {
  "pumps.txt": "Pump 7 pressure dropped to 31 bar at 08:15. The pressure relief valve was replaced.",
  "boilers.txt": "The boiler feed water temperature stays between 80 and 90 degrees.",
};

let dir: string;
let indexes: string;
let server: TestServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lfm-serve-answers-"));
  indexes = indexFiles(dir, "notes", PASSAGES);
  server = await startTestServer({ search: { indexesDir: indexes, load: { cacheDir: TEST_CACHE } } });
}, 400_000);

afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const send = (method: string, path: string, body?: unknown) =>
  fetch(`${server.url}${path}`, { method, headers: body === undefined ? {} : { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
const post = (path: string, body: unknown) => send("POST", path, body);

async function expectError(res: Response, status: number, code: string, param?: string): Promise<string> {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string; param: string | null } };
  expect(body.error.code).toBe(code);
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body.error.message;
}

interface Passage {
  n: number;
  id: string;
  score: number;
  source: string;
  text: string;
}
interface AnswerBody {
  answer: string;
  abstained: boolean;
  citations: Array<{ n: number; id: string; source: string; text: string }>;
  unsupported_citations: number[];
  passages: Passage[];
  min_score: { value: number; source: string };
  timings: { total_ms: number; retrieval_ms: number };
}

describe("POST /v1/answers", () => {
  it("answers from the index's passages; every citation is one of the passages it was given", async () => {
    // Random weights put little probability on "[": sampled answers, seed after seed, until one cites
    // (strict_citations makes each finished sentence end with a citation), so the check is not vacuous.
    let cited = 0;
    for (let seed = 1; seed <= 12 && cited === 0; seed++) {
      const res = await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "What happened to pump 7?", k: 2, max_tokens: 600, temperature: 1, seed, min_score: -1e9, strict_citations: true });
      expect(res.status).toBe(200);
      const body = (await res.json()) as AnswerBody;
      expect(body.abstained).toBe(false);
      expect(body.min_score).toEqual({ value: -1e9, source: "option" });
      expect(body.passages.map((p) => p.text).sort()).toEqual(Object.values(PASSAGES).sort());
      expect(body.passages.map((p) => p.n)).toEqual([1, 2]);
      expect(body.unsupported_citations).toEqual([]);
      for (const c of body.citations) {
        const passage = body.passages.find((p) => p.n === c.n);
        expect(passage).toBeDefined();
        expect(c.id).toBe(passage!.id);
        expect(c.source).toBe(passage!.source);
        expect(body.answer).toContain(`[${c.n}]`);
      }
      expect(body.timings.total_ms).toBeGreaterThanOrEqual(body.timings.retrieval_ms);
      cited += body.citations.length;
    }
    expect(cited).toBeGreaterThan(0);
  }, 240_000);

  it("streams the answer as text deltas, then the whole result as the last event", async () => {
    const res = await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "What happened to pump 7?", k: 2, max_tokens: 40, min_score: -1e9, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = (await res.text()).split("\n\n").filter((e) => e !== "").map((e) => e.replace(/^data: /, ""));
    expect(events.at(-1)).toBe("[DONE]");
    const parsed = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; delta?: string } & Partial<AnswerBody>);
    const final = parsed.at(-1)!;
    expect(final.object).toBe("answer");
    expect(final.passages).toHaveLength(2);
    const deltas = parsed.slice(0, -1);
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.every((d) => d.object === "answer.delta")).toBe(true);
    expect(deltas.map((d) => d.delta).join("")).toBe(final.answer);
    // Checked before the stream starts: still a plain JSON error with its status.
    await expectError(await post("/v1/answers", { index: "nope", model: "tiny-lfm2", question: "x", stream: true }), 404, "INDEX_NOT_FOUND");
  }, 120_000);

  it("abstains when no passage reaches min_score", async () => {
    const res = await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "What happened to pump 7?", min_score: 1e9 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as AnswerBody;
    expect(body.abstained).toBe(true);
    expect(body.citations).toEqual([]);
    expect(body.answer.length).toBeGreaterThan(0);
  }, 120_000);

  it("refuses bad requests with error JSON", async () => {
    expect(await expectError(await post("/v1/answers", { index: "nope", model: "tiny-lfm2", question: "x" }), 404, "INDEX_NOT_FOUND")).toContain("notes");
    await expectError(await post("/v1/answers", { index: "notes", model: "no-such-model", question: "x" }), 404, "MODEL_NOT_FOUND");
    await expectError(await post("/v1/answers", { index: "notes", model: "tiny-lfm2" }), 400, "INVALID_ARGUMENT", "question");
    await expectError(await post("/v1/answers", { model: "tiny-lfm2", question: "x" }), 400, "INVALID_ARGUMENT", "index");
    await expectError(await post("/v1/answers", { index: "notes", question: "x" }), 400, "INVALID_ARGUMENT", "model");
    await expectError(await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "x", k: 0 }), 400, "INVALID_ARGUMENT", "k");
    await expectError(await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "x", min_score: "high" }), 400, "INVALID_ARGUMENT", "min_score");
    await expectError(await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "x", stream: "yes" }), 400, "INVALID_ARGUMENT", "stream");
    await expectError(await post("/v1/answers", { index: "notes", model: "tiny-lfm2", question: "x", top_k: 3 }), 400, "INVALID_ARGUMENT", "top_k");
    await expectError(await post("/v1/answers", { index: "notes", model: "tiny-lfm2-vl", question: "x" }), 400, "INVALID_ARGUMENT", "model");
    const bad = await fetch(`${server.url}/v1/answers`, { method: "POST", headers: { "content-type": "application/json" }, body: "{\"index\": " });
    await expectError(bad, 400, "INVALID_ARGUMENT", "body");
  });
});

describe("POST /v1/documents, DELETE /v1/documents/{source-or-id}", () => {
  const search = async (query: string) =>
    ((await (await post("/v1/search", { index: "notes", query, k: 10 })).json()) as { data: Array<{ id: string; text: string; source: string; metadata: Record<string, unknown> }> }).data;

  it("adds a text document that search then finds, replaces it by source, and deletes it", async () => {
    const text = "The conveyor belt motor overheated twice on Tuesday; its bearing was greased.";
    const res = await post("/v1/documents", { index: "notes", source: "notes/conveyor", text, metadata: { shift: "night" } });
    expect(res.status).toBe(200);
    const added = (await res.json()) as { added: string[]; removed: string[]; generation: number; source: string };
    expect(added.added).toEqual(["notes/conveyor#0"]);
    expect(added.removed).toEqual([]);
    expect(added.generation).toBeGreaterThan(0);
    const found = (await search("conveyor motor")).find((h) => h.source === "notes/conveyor");
    expect(found).toMatchObject({ id: "notes/conveyor#0", text, metadata: { type: "text", shift: "night" } });

    // The same source again replaces the document (one passage still; the new text).
    const replaced = (await (await post("/v1/documents", { index: "notes", source: "notes/conveyor", text: "The conveyor was fixed." })).json()) as typeof added;
    expect(replaced.added).toEqual(["notes/conveyor#0"]);
    expect(replaced.generation).toBe(added.generation + 1);
    expect((await search("conveyor")).filter((h) => h.source === "notes/conveyor").map((h) => h.text)).toEqual(["The conveyor was fixed."]);

    const del = await send("DELETE", "/v1/documents/notes/conveyor?index=notes");
    expect(del.status).toBe(200);
    const deleted = (await del.json()) as { removed: string[]; generation: number };
    expect(deleted.removed).toEqual(["notes/conveyor#0"]);
    expect(deleted.generation).toBe(replaced.generation + 1);
    expect((await search("conveyor")).some((h) => h.source === "notes/conveyor")).toBe(false);
    expect(await search("pump")).toHaveLength(2);
    await expectError(await send("DELETE", "/v1/documents/notes/conveyor?index=notes"), 404, "DOCUMENT_NOT_FOUND");
  }, 120_000);

  it("serialises concurrent writes to one index: every document lands", async () => {
    const sources = ["a", "b", "c"].map((s) => `/srv/batch/${s} notes`);
    const replies = await Promise.all(sources.map((source) => post("/v1/documents", { index: "notes", source, text: `Document ${source} about valves.` })));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200]);
    const generations = await Promise.all(replies.map(async (r) => ((await r.json()) as { generation: number }).generation));
    expect(new Set(generations).size).toBe(3);
    const hits = await search("valves");
    expect(sources.every((s) => hits.some((h) => h.source === s))).toBe(true);
    // Percent-encoded, a source or id may hold anything (a leading slash, spaces, an id's "#").
    const byId = (await (await send("DELETE", `/v1/documents/${encodeURIComponent(`${sources[0]}#0`)}?index=notes`)).json()) as { removed: string[] };
    expect(byId.removed).toEqual([`${sources[0]}#0`]);
    for (const s of sources.slice(1)) expect((await send("DELETE", `/v1/documents/${encodeURIComponent(s)}?index=notes`)).status).toBe(200);
    expect((await search("valves")).some((h) => h.source.startsWith("/srv/batch/"))).toBe(false);
  }, 120_000);

  it("answers 409 INDEX_LOCKED while another writer holds the index, and works once it lets go", async () => {
    const writer = await IndexWriter.open(join(indexes, "notes"));
    try {
      await expectError(await post("/v1/documents", { index: "notes", source: "locked", text: "Held out by the lock." }), 409, "INDEX_LOCKED");
      await expectError(await send("DELETE", "/v1/documents/pumps.txt?index=notes"), 409, "INDEX_LOCKED");
    } finally {
      await writer.close();
    }
    expect((await search("lock")).some((h) => h.source === "locked")).toBe(false);
    const ok = await post("/v1/documents", { index: "notes", source: "locked", text: "Held out by the lock." });
    expect(ok.status).toBe(200);
    expect((await send("DELETE", "/v1/documents/locked?index=notes")).status).toBe(200);
  }, 120_000);

  it("refuses bad requests with error JSON", async () => {
    await expectError(await post("/v1/documents", { index: "nope", source: "s", text: "t" }), 404, "INDEX_NOT_FOUND");
    await expectError(await post("/v1/documents", { index: "notes", text: "t" }), 400, "INVALID_ARGUMENT", "source");
    await expectError(await post("/v1/documents", { index: "notes", source: "s" }), 400, "INVALID_ARGUMENT", "text");
    await expectError(await post("/v1/documents", { source: "s", text: "t" }), 400, "INVALID_ARGUMENT", "index");
    await expectError(await post("/v1/documents", { index: "notes", source: "s", text: "t", metadata: { a: { b: 1 } } }), 400, "INVALID_ARGUMENT", "metadata.a");
    await expectError(await post("/v1/documents", { index: "notes", source: "s", text: "t", extra: 1 }), 400, "INVALID_ARGUMENT", "extra");
    await expectError(await send("DELETE", "/v1/documents/pumps.txt"), 400, "INVALID_ARGUMENT", "index");
    await expectError(await send("DELETE", "/v1/documents/pumps.txt?index=nope"), 404, "INDEX_NOT_FOUND");
    await expectError(await send("DELETE", "/v1/documents/nothing-here?index=notes"), 404, "DOCUMENT_NOT_FOUND");
    const bad = await fetch(`${server.url}/v1/documents`, { method: "POST", headers: { "content-type": "application/json" }, body: "not json" });
    await expectError(bad, 400, "INVALID_ARGUMENT", "body");
    // Hostile: names that try to leave --indexes-dir, a poisoned prototype, a source with control characters.
    await expectError(await post("/v1/documents", { index: "../indexes/notes", source: "s", text: "t" }), 404, "INDEX_NOT_FOUND");
    await expectError(await send("DELETE", "/v1/documents/pumps.txt?index=..%2Fnotes"), 404, "INDEX_NOT_FOUND");
    await expectError(await post("/v1/answers", { index: "../indexes/notes", model: "tiny-lfm2", question: "x" }), 404, "INDEX_NOT_FOUND");
    await expectError(await post("/v1/documents", { index: "notes", source: "a\u0000b", text: "t" }), 400, "INVALID_ARGUMENT", "source");
    const poisoned = await fetch(`${server.url}/v1/documents`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"index": "notes", "source": "s", "text": "t", "metadata": {"__proto__": {"x": 1}}}' });
    expect(poisoned.status).toBe(400);
    expect(((await poisoned.json()) as { error: { code: string } }).error.code).toBe("INVALID_ARGUMENT");
    expect(await search("pump")).toHaveLength(2);
  });

  it("answers an index name that tries to leave --indexes-dir with the same 404 on every index route", async () => {
    const tricks = ["../indexes/notes", "..", ".", "notes/", "/etc", `..${"/.."}/etc/passwd`, "%2e%2e", "notes\u0000", "a".repeat(5000)];
    for (const index of tricks) {
      const answers = await post("/v1/answers", { index, model: "tiny-lfm2", question: "x" });
      const documents = await post("/v1/documents", { index, source: "s", text: "t" });
      const deleted = await send("DELETE", `/v1/documents/pumps.txt?index=${encodeURIComponent(index)}`);
      const searched = await post("/v1/search", { index, query: "x" });
      for (const res of [answers, documents, deleted, searched]) {
        const message = await expectError(res, 404, "INDEX_NOT_FOUND");
        expect(message, index).toContain("the indexes are: notes");
        expect(message.length, index).toBeLessThan(400); // a long name is shown cut short
      }
    }
    expect(await search("pump")).toHaveLength(2);
  });
});
