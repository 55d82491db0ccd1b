/** Metadata filters beyond equality: path prefixes and date ranges, in the library and the CLI's flags. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SyntheticCorpus, bruteForceMaxSim } from "../../bench/synthetic-colbert.ts";
import { searchFilter } from "../../cli/index-search.ts";
import type { StoredDocument } from "../../retrieval/index/format.ts";
import { compileFilter, parseDate } from "../../retrieval/index/metadata-filter.ts";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { decodeRows, encodeRows } from "../../retrieval/index/vector-codec.ts";
import { IndexWriter, type NewDocument } from "../../retrieval/index/writer.ts";
import { ApiError } from "../../server/errors.ts";
import { readSearchRequest } from "../../server/search.ts";
import { expectCode } from "../helpers/errors.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-filter-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const stored = (source: string, metadata: StoredDocument["metadata"]): StoredDocument => ({ id: `${source}#0`, source, start: 0, end: 1, text: "", metadata, sourceHash: "", rows: 1 });

describe("parseDate", () => {
  it("reads ISO 8601 dates and date-times (UTC unless an offset is given) and refuses the rest", () => {
    expect(parseDate("2024-01-31")).toBe(Date.UTC(2024, 0, 31));
    expect(parseDate("2024-01-31T12:30")).toBe(Date.UTC(2024, 0, 31, 12, 30));
    expect(parseDate("2024-01-31T12:30:15Z")).toBe(Date.UTC(2024, 0, 31, 12, 30, 15));
    expect(parseDate("2024-01-31T12:30:15.250Z")).toBe(Date.UTC(2024, 0, 31, 12, 30, 15, 250));
    expect(parseDate("2024-01-31T12:30:00+02:00")).toBe(Date.UTC(2024, 0, 31, 10, 30));
    expect(parseDate("2024-01-31T12:30:00-0130")).toBe(Date.UTC(2024, 0, 31, 14, 0));
    for (const bad of ["2024-02-30", "2023-02-29", "2024-13-01", "2024-1-5", "31/01/2024", "yesterday", "", "2024-01-31T24:00", "2024-01-31T12:00+25:00", "1706700000000"]) {
      expect(parseDate(bad), bad).toBeNull();
    }
    expect(parseDate("2024-02-29")).toBe(Date.UTC(2024, 1, 29));
  });
});

describe("compileFilter", () => {
  const docs = [
    stored("/docs/manuals/pump.txt", { type: "txt", modified: "2024-03-05T10:00:00Z" }),
    stored("/docs/manuals2/valve.md", { type: "md", modified: "2024-12-31T23:59:59Z" }),
    stored("/docs/notes/old.txt", { type: "txt", modified: "2023-06-01T00:00:00Z" }),
    stored("/docs/notes/undated.txt", { type: "txt" }),
    stored("/docs/notes/odd.txt", { type: "txt", modified: "not a date" }),
  ];
  const pick = (filter: Parameters<typeof compileFilter>[0]) => docs.filter(compileFilter(filter)).map((d) => d.source);

  it("prefixes match the start of a string value; a list matches any; keys combine with and", () => {
    expect(pick({ source: { prefix: "/docs/manuals/" } })).toEqual(["/docs/manuals/pump.txt"]);
    expect(pick({ source: { prefix: "/docs/manuals" } })).toEqual(["/docs/manuals/pump.txt", "/docs/manuals2/valve.md"]);
    expect(pick({ source: [{ prefix: "/docs/manuals/" }, "/docs/notes/old.txt"] })).toEqual(["/docs/manuals/pump.txt", "/docs/notes/old.txt"]);
    expect(pick({ source: { prefix: "/docs/" }, type: "md" })).toEqual(["/docs/manuals2/valve.md"]);
    expect(pick({ type: { prefix: "t" } }).length).toBe(4);
  });

  it("date ranges: on or after `after`, strictly before `before`; undated or unparsable values never match", () => {
    expect(pick({ modified: { after: "2024-01-01", before: "2025-01-01" } })).toEqual(["/docs/manuals/pump.txt", "/docs/manuals2/valve.md"]);
    expect(pick({ modified: { after: "2024-03-05T10:00:00Z" } })).toEqual(["/docs/manuals/pump.txt", "/docs/manuals2/valve.md"]);
    expect(pick({ modified: { before: "2024-03-05T10:00:00Z" } })).toEqual(["/docs/notes/old.txt"]);
    expect(pick({ modified: { before: "2024-03-05T10:00:01Z" } })).toEqual(["/docs/manuals/pump.txt", "/docs/notes/old.txt"]);
    // An offset moves the instant: 2025-01-01T00:30+01:00 is 2024-12-31T23:30Z.
    expect(pick({ modified: { after: "2025-01-01T00:30:00+01:00" } })).toEqual(["/docs/manuals2/valve.md"]);
    expect(pick({ modified: { after: "2000-01-01" }, type: "txt" })).toEqual(["/docs/manuals/pump.txt", "/docs/notes/old.txt"]);
  });

  it("refuses malformed conditions with INVALID_ARGUMENT naming the key", () => {
    expectCode(() => compileFilter({ modified: { after: "2024-02-30" } }), "INVALID_ARGUMENT", "filter.modified", "after must be a date");
    expectCode(() => compileFilter({ modified: { before: "soon" } }), "INVALID_ARGUMENT", "before must be a date");
    expectCode(() => compileFilter({ modified: { after: "2025-01-01", before: "2024-01-01" } }), "INVALID_ARGUMENT", "matches nothing");
    expectCode(() => compileFilter({ modified: { after: "2024-01-01", before: "2024-01-01" } }), "INVALID_ARGUMENT", "matches nothing");
    expectCode(() => compileFilter({ source: { prefix: "" } }), "INVALID_ARGUMENT", "filter.source", "non-empty");
    expectCode(() => compileFilter({ source: { prefix: "/a", after: "2024-01-01" } as never }), "INVALID_ARGUMENT", "not both");
    expectCode(() => compileFilter({ source: { since: "2024-01-01" } as never }), "INVALID_ARGUMENT", 'unknown field "since"');
    expectCode(() => compileFilter({ source: {} as never }), "INVALID_ARGUMENT", "filter.source");
    expectCode(() => compileFilter({ source: [] }), "INVALID_ARGUMENT", "empty list");
    expectCode(() => compileFilter({ modified: { after: 20240101 } as never }), "INVALID_ARGUMENT", "after must be a date");
  });
});

describe("search with prefix and date filters (plaid index)", () => {
  it("ranks only the matching passages, exactly like brute force over them, also when few match", async () => {
    const DIM = 32;
    const corpus = new SyntheticCorpus({ dim: DIM, topics: 24, termsPerTopic: 24, functionWords: 32, minTokens: 6, maxTokens: 18, queryLength: 8, seed: 3 });
    const docs: NewDocument[] = Array.from({ length: 400 }, (_, i) => ({
      id: `d${i}`,
      embeddings: corpus.document(i),
      text: `passage ${i}`,
      source: `/corpus/${i % 4 === 0 ? "manuals" : "notes"}/file${i}.txt`,
      metadata: { modified: new Date(Date.UTC(2020 + (i % 5), i % 12, 1 + (i % 28))).toISOString() },
    }));
    const dir = join(root, "plaid");
    const w = await IndexWriter.open(dir, { create: { dim: DIM, layout: "plaid" } });
    w.upsert(docs.slice(0, 300));
    await w.commit();
    w.upsert(docs.slice(300));
    await w.commit();
    await w.close();
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    const brute = (query: { rows: number; dim: number; data: Float32Array }, keep: (d: NewDocument) => boolean, k: number) =>
      docs
        .filter(keep)
        .map((d) => ({ id: d.id, score: bruteForceMaxSim(query, { rows: d.embeddings.rows, dim: DIM, data: decodeRows(encodeRows("float16", d.embeddings.data, d.embeddings.rows, DIM)) }) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, k)
        .map((s) => s.id);
    const date = (d: NewDocument) => Date.parse(d.metadata?.modified as string);
    for (let q = 0; q < 4; q++) {
      const query = corpus.query(q, q * 53);
      const manuals = await reader.search(query, { k: 10, filter: { source: { prefix: "/corpus/manuals/" } } });
      expect(manuals.map((h) => h.id)).toEqual(brute(query, (d) => (d.source as string).startsWith("/corpus/manuals/"), 10));
      const in2022 = await reader.search(query, { k: 10, filter: { modified: { after: "2022-01-01", before: "2023-01-01" } } });
      expect(in2022.map((h) => h.id)).toEqual(brute(query, (d) => date(d) >= Date.UTC(2022, 0, 1) && date(d) < Date.UTC(2023, 0, 1), 10));
      // Few match (2 passages): all of them, best first.
      const narrow = await reader.search(query, { k: 10, filter: { source: { prefix: "/corpus/manuals/file1" }, modified: { before: "2021-01-01" } } });
      expect(narrow.map((h) => h.id)).toEqual(brute(query, (d) => (d.source as string).startsWith("/corpus/manuals/file1") && date(d) < Date.UTC(2021, 0, 1), 10));
      expect(narrow.length).toBeGreaterThan(0);
    }
    await expectCode(reader.search(corpus.query(0, 1), { filter: { modified: { after: "2024-02-30" } } }), "INVALID_ARGUMENT", "filter.modified");
    await reader.close();
  });
});

describe("lfm search / lfm ask filter flags (searchFilter)", () => {
  it("builds prefix and date conditions and refuses bad values before anything is opened", () => {
    expect(searchFilter({})).toBeUndefined();
    expect(searchFilter({ filter: ["type=pdf", "source^=/srv/docs/", "type=md"] as never })).toEqual({ type: ["pdf", "md"], source: { prefix: "/srv/docs/" } });
    // --path-prefix resolves against the current folder and keeps a trailing slash (a folder).
    expect(searchFilter({ "path-prefix": ["docs/manuals/", "/abs/file"] as never })).toEqual({ source: [{ prefix: `${resolve("docs/manuals")}/` }, { prefix: "/abs/file" }] });
    expect(searchFilter({ after: "2024-01-01", before: "2025-01-01" })).toEqual({ modified: { after: "2024-01-01", before: "2025-01-01" } });
    expect(searchFilter({ before: "2024-06-01T12:00:00+02:00", "date-key": "published" })).toEqual({ published: { before: "2024-06-01T12:00:00+02:00" } });
    expect(searchFilter({ filter: ["a=b=c"] as never })).toEqual({ a: "b=c" });

    expectCode(() => searchFilter({ after: "2024-13-01" }), "INVALID_ARGUMENT", "--after must be a date", "2024-13-01");
    expectCode(() => searchFilter({ before: "last week" }), "INVALID_ARGUMENT", "--before must be a date");
    expectCode(() => searchFilter({ after: "2025-01-01", before: "2024-01-01" }), "INVALID_ARGUMENT", "--before (2024-01-01) must be later than --after");
    expectCode(() => searchFilter({ "date-key": "published" }), "INVALID_ARGUMENT", "--date-key", "--after");
    expectCode(() => searchFilter({ "path-prefix": ["docs"] as never, filter: ["source=/x"] as never }), "INVALID_ARGUMENT", "--path-prefix");
    expectCode(() => searchFilter({ after: "2024-01-01", filter: ["modified=2024-01-01"] as never }), "INVALID_ARGUMENT", "modified");
    expectCode(() => searchFilter({ filter: ["source^="] as never }), "INVALID_ARGUMENT", "prefix after ^= is empty");
    expectCode(() => searchFilter({ "path-prefix": [""] as never }), "INVALID_ARGUMENT", "--path-prefix needs a path");
  });
});

describe("POST /v1/search body (readSearchRequest)", () => {
  it("takes prefix and date conditions in filter, and answers a bad one with INVALID_ARGUMENT naming the field", () => {
    const filter = { source: { prefix: "/srv/docs/" }, modified: { after: "2024-01-01", before: "2025-01-01" }, type: ["pdf", { prefix: "htm" }] };
    expect(readSearchRequest({ index: "notes", query: "pump", filter }).filter).toEqual(filter);
    const bad = (f: unknown) => {
      try {
        readSearchRequest({ index: "notes", query: "pump", filter: f });
      } catch (e) {
        expect(e).toBeInstanceOf(ApiError);
        return { code: (e as ApiError).code, param: (e as ApiError).param, message: (e as ApiError).message };
      }
      throw new Error("accepted");
    };
    expect(bad({ modified: { after: "2024-02-30" } })).toMatchObject({ code: "INVALID_ARGUMENT", param: "filter.modified", message: expect.stringContaining("after must be a date") });
    expect(bad({ source: { prefix: "" } })).toMatchObject({ code: "INVALID_ARGUMENT", param: "filter.source" });
    expect(bad({ source: { near: "x" } })).toMatchObject({ code: "INVALID_ARGUMENT", param: "filter.source", message: expect.stringContaining('unknown field "near"') });
    expect(bad({ source: [[1]] })).toMatchObject({ code: "INVALID_ARGUMENT", param: "filter.source" });
    // A key "__proto__" is an ordinary (unmatched) key, not the filter's prototype.
    const parsed = readSearchRequest(JSON.parse('{"index": "notes", "query": "q", "filter": {"__proto__": {"prefix": "x"}}}'));
    expect(Object.keys(parsed.filter ?? {})).toEqual(["__proto__"]);
  });
});
