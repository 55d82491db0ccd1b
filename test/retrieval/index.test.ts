/** The persistent ColBERT index: round trips, changes, search exactness, storage, errors. */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SyntheticCorpus, bruteForceMaxSim } from "../../bench/synthetic-colbert.ts";
import { FORMAT_VERSION, MANIFEST_FILE } from "../../retrieval/index/format.ts";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { decodeRows, encodeRows } from "../../retrieval/index/vector-codec.ts";
import { type CreateOptions, IndexWriter, type NewDocument } from "../../retrieval/index/writer.ts";
import { expectCode } from "../helpers/errors.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-index-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let folders = 0;
const newDir = () => join(root, `idx-${folders++}`);

const DIM = 32;
const corpus = new SyntheticCorpus({ dim: DIM, topics: 24, termsPerTopic: 24, functionWords: 32, minTokens: 6, maxTokens: 18, queryLength: 8, seed: 7 });

function doc(i: number, extra: Partial<NewDocument> = {}): NewDocument {
  return { id: `d${i}`, embeddings: corpus.document(i), text: `passage ${i}`, source: `/docs/file${i % 5}.txt`, start: i * 10, end: i * 10 + 9, metadata: { lang: i % 3 === 0 ? "fr" : "en", n: i }, ...extra };
}

async function build(dir: string, docs: NewDocument[], opts: { batches?: number; create?: Partial<CreateOptions> } = {}): Promise<void> {
  const w = await IndexWriter.open(dir, { create: { dim: DIM, graph: { m: 8, efConstruction: 32 }, ...opts.create } });
  const batches = opts.batches ?? 1;
  const size = Math.ceil(docs.length / batches);
  for (let b = 0; b < batches; b++) {
    w.upsert(docs.slice(b * size, (b + 1) * size));
    await w.commit();
  }
  await w.close();
}

/** Exact MaxSim by brute force over the vectors as the index stores them. */
function bruteForce(query: { rows: number; dim: number; data: Float32Array }, docs: NewDocument[], storage: "float16" | "int8" | "float32", k: number) {
  const scored = docs.map((d) => {
    const e = d.embeddings;
    const stored = { rows: e.rows, dim: e.dim, data: decodeRows(encodeRows(storage, e.data, e.rows, e.dim)) };
    return { id: d.id, score: bruteForceMaxSim(query, stored) };
  });
  return scored.sort((a, b) => b.score - a.score).slice(0, k);
}

describe("vector storage", () => {
  it("float16 encodes exactly where representable and rounds to nearest even", () => {
    const stored = (v: number) => decodeRows(encodeRows("float16", Float32Array.of(v), 1, 1))[0];
    for (const v of [0, 1, -2, 0.5, 65504, 2 ** -24, -(2 ** -14)]) expect(stored(v)).toBe(v);
    expect(stored(1 + 2 ** -11)).toBe(1); // tie → even
    expect(stored(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(stored(1e6)).toBe(Infinity);
    expect(stored(1e-9)).toBe(0);
    expect(Math.abs(stored(0.1) - 0.1)).toBeLessThan(0.1 * 2 ** -11);
  });

  it("int8 rows stay within half a quantisation step of the original", () => {
    const v = corpus.document(3);
    const stored = encodeRows("int8", v.data, v.rows, DIM);
    const back = decodeRows(stored);
    for (let r = 0; r < v.rows; r++) {
      if (stored.storage !== "int8") throw new Error("int8 expected");
      for (let d = 0; d < DIM; d++) expect(Math.abs(back[r * DIM + d] - v.data[r * DIM + d])).toBeLessThanOrEqual(stored.scales[r] / 2 + 1e-7);
    }
  });
});

describe("index round trip", () => {
  it("returns what was committed: documents, offsets, metadata, vectors (float16)", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 30 }, (_, i) => doc(i));
    await build(dir, docs, { batches: 3 });
    const reader = await IndexReader.open(dir);
    expect(reader.generation).toBe(3);
    expect(reader.stats()).toMatchObject({ documents: 30, deletedDocuments: 0, dim: DIM, storage: "float16", sources: 5 });
    for (const d of docs) {
      const got = reader.get(d.id);
      expect(got).toMatchObject({ id: d.id, text: d.text, source: d.source, start: d.start, end: d.end, metadata: d.metadata, rows: d.embeddings.rows });
      const back = decodeRows(reader.storedRows(d.id) as NonNullable<ReturnType<typeof reader.storedRows>>);
      for (let i = 0; i < back.length; i++) expect(Math.abs(back[i] - d.embeddings.data[i])).toBeLessThan(1e-3);
    }
    await reader.close();
  });

  it("search over several segments equals brute-force exact MaxSim (graph candidates + exact rerank)", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 400 }, (_, i) => doc(i));
    await build(dir, docs, { batches: 4, create: { storage: "float32" } });
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    for (let q = 0; q < 12; q++) {
      const query = corpus.query(q, (q * 37) % 400);
      // Generous candidate counts: every true top-10 document is then among the reranked ones.
      const hits = await reader.search(query, { k: 10, candidatesPerToken: 32, rerankDocs: 400 });
      const expected = bruteForce(query, docs, "float32", 10);
      expect(hits.map((h) => h.id)).toEqual(expected.map((e) => e.id));
      hits.forEach((h, i) => expect(Math.abs(h.score - expected[i].score)).toBeLessThan(1e-4));
    }
    await reader.close();
  });

  it("a document whose vectors are all dissimilar to a query token scores that token's true negative maximum, not 0", async () => {
    const dir = newDir();
    const w = await IndexWriter.open(dir, { create: { dim: 2, storage: "float32" } });
    w.upsert({ id: "short", embeddings: { rows: 1, dim: 2, data: Float32Array.from([-1, 0]) }, text: "short" });
    w.upsert({ id: "long", embeddings: { rows: 2, dim: 2, data: Float32Array.from([0, 1, 0, 1]) }, text: "long" });
    await w.commit();
    await w.close();
    const reader = await IndexReader.open(dir);
    const hits = await reader.search({ rows: 1, dim: 2, data: Float32Array.from([1, 0]) }, { k: 2 });
    expect(hits.map((h) => [h.id, h.score])).toEqual([
      ["long", 0],
      ["short", -1],
    ]);
    await reader.close();
  });
  it("leaves a document's near-duplicate vectors out of the graph but scores all of them", async () => {
    const dir = newDir();
    const w = await IndexWriter.open(dir, { create: { dim: 4, storage: "float32" } });
    const a = [1, 0, 0, 0];
    const b = [0, 1, 0, 0];
    const nearA = [0.99, 0.141, 0, 0]; // cosine 0.99 to a
    w.upsert({ id: "dup", embeddings: { rows: 5, dim: 4, data: Float32Array.from([...a, ...b, ...a, ...nearA, ...b]) }, text: "" });
    w.upsert({ id: "other", embeddings: { rows: 2, dim: 4, data: Float32Array.from([0, 0, 1, 0, 0, 0, 0, 1]) }, text: "" });
    await w.commit();
    await w.close();
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    expect(reader.stats()).toMatchObject({ rows: 7, graphRows: 4 });
    const [hit] = await reader.search({ rows: 2, dim: 4, data: Float32Array.from([...nearA, ...b]) }, { k: 1 });
    expect(hit.id).toBe("dup");
    expect(hit.score).toBeCloseTo(2, 4); // the left-out row nearA is still scored exactly
    await reader.close();
  });
});

describe("index changes", () => {
  it("updates replace, deletes hide, compaction drops deleted documents and keeps the results", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 120 }, (_, i) => doc(i));
    await build(dir, docs, { batches: 2 });
    const w = await IndexWriter.open(dir);
    w.upsert(doc(5, { text: "passage 5, second version", embeddings: corpus.document(500) }));
    expect(w.delete(["d7", "d8", "missing"])).toBe(2);
    expect(w.pendingChanges).toEqual({ upserts: 1, deletes: 3 });
    await w.commit();
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    expect(reader.get("d7")).toBeUndefined();
    expect(reader.get("d5")?.text).toBe("passage 5, second version");
    expect(reader.stats()).toMatchObject({ documents: 118, deletedDocuments: 3 });
    const query = corpus.query(1, 500);
    const before = await reader.search(query, { k: 5 });
    expect(before[0].id).toBe("d5"); // found through its new vectors
    expect(before.map((h) => h.id)).not.toContain("d7");

    const result = await w.compact();
    expect(result.segments).toBe(1);
    await reader.refresh();
    expect(reader.stats()).toMatchObject({ documents: 118, deletedDocuments: 0, segments: 1 });
    const after = await reader.search(query, { k: 5 });
    expect(after.map((h) => h.id)).toEqual(before.map((h) => h.id));
    await w.close();
    await reader.close();
    // Only the live segment's files remain.
    expect(readdirSync(dir).filter((f) => f.startsWith("seg-")).length).toBe(3);
  });

  it("many small commits keep few segments (merging) and exact results", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 200 }, (_, i) => doc(i));
    const w = await IndexWriter.open(dir, { create: { dim: DIM, graph: { m: 8, efConstruction: 32 } } });
    let maxSegments = 0;
    for (let b = 0; b < 40; b++) {
      w.upsert(docs.slice(b * 5, b * 5 + 5));
      if (b % 7 === 6) w.delete(`d${b * 5 - 10}`);
      maxSegments = Math.max(maxSegments, (await w.commit()).segments);
    }
    await w.close();
    expect(maxSegments).toBeLessThanOrEqual(4);
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    const live = docs.filter((d) => reader.get(d.id) !== undefined);
    expect(live.length).toBe(200 - 5);
    for (let q = 0; q < 5; q++) {
      const query = corpus.query(q, q * 31);
      expect((await reader.search(query, { k: 5, candidatesPerToken: 32, rerankDocs: 200 })).map((h) => h.id)).toEqual(bruteForce(query, live, "float16", 5).map((e) => e.id));
    }
    await reader.close();
  });

  it("filters by metadata (string form matches numbers) and by source, also when few documents match", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 300 }, (_, i) => doc(i));
    await build(dir, docs);
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    const query = corpus.query(3, 12);
    const fr = await reader.search(query, { k: 10, filter: { lang: "fr" }, candidatesPerToken: 32, rerankDocs: 300 });
    expect(fr.length).toBe(10);
    expect(fr.every((h) => h.metadata.lang === "fr")).toBe(true);
    expect(fr.map((h) => h.id)).toEqual(bruteForce(query, docs.filter((d) => d.metadata?.lang === "fr"), "float16", 10).map((e) => e.id));
    const one = await reader.search(query, { k: 10, filter: { n: "217" } });
    expect(one.map((h) => h.id)).toEqual(["d217"]);
    const either = await reader.search(query, { k: 10, filter: { n: [1, 2, "3"], source: "/docs/file1.txt" } });
    expect(either.map((h) => h.id)).toEqual(["d1"]);
    expect(await reader.search(query, { k: 10, filter: { lang: "de" } })).toEqual([]);
    await reader.close();
  });

  it("a reader keeps its snapshot while a writer commits and compacts, and refresh() moves it forward", async () => {
    const dir = newDir();
    await build(dir, Array.from({ length: 50 }, (_, i) => doc(i)));
    const reader = await IndexReader.open(dir);
    const w = await IndexWriter.open(dir);
    w.delete(Array.from({ length: 25 }, (_, i) => `d${i}`));
    w.upsert(doc(99));
    await w.compact();
    await w.close();
    const query = corpus.query(0, 3);
    expect(reader.generation).toBe(1);
    expect((await reader.search(query, { k: 50 })).length).toBe(50); // old files are gone, the snapshot is in memory
    expect(await reader.refresh()).toBe(true);
    expect(reader.generation).toBe(2);
    expect((await reader.search(query, { k: 50 })).length).toBe(26);
    expect(await reader.refresh()).toBe(false);
    await reader.close();
  });
});

describe("index storage precision", () => {
  it("recall@10 against exact float32 MaxSim: float16 ≥ 0.99, int8 ≥ 0.9", { timeout: 60_000 }, async () => {
    const big = new SyntheticCorpus({ dim: 64, topics: 32, termsPerTopic: 32, minTokens: 20, maxTokens: 30, queryLength: 16, seed: 3 });
    const docs: NewDocument[] = Array.from({ length: 600 }, (_, i) => ({ id: `d${i}`, embeddings: big.document(i), text: "" }));
    const queries = Array.from({ length: 20 }, (_, q) => big.query(q, q * 29));
    const truth = queries.map((q) => new Set(bruteForce(q, docs, "float32", 10).map((e) => e.id)));
    const recall: Record<string, number> = {};
    for (const storage of ["float16", "int8"] as const) {
      const dir = newDir();
      const w = await IndexWriter.open(dir, { create: { dim: 64, storage, graph: { m: 8, efConstruction: 32 } } });
      w.upsert(docs);
      await w.commit();
      await w.close();
      const reader = await IndexReader.open(dir);
      let hit = 0;
      for (let q = 0; q < queries.length; q++) for (const h of await reader.search(queries[q], { k: 10, exhaustive: true })) hit += truth[q].has(h.id) ? 1 : 0;
      recall[storage] = hit / (10 * queries.length);
      expect(reader.stats().bytesOnDisk.vectors).toBe(reader.stats().rows * (storage === "float16" ? 128 : 68));
      await reader.close();
    }
    expect(recall.float16).toBeGreaterThanOrEqual(0.99);
    expect(recall.int8).toBeGreaterThanOrEqual(0.9);
  });
});

describe("index errors", () => {
  it("refuses a newer format version with INDEX_NEWER_VERSION", async () => {
    const dir = newDir();
    await build(dir, [doc(1)]);
    const path = join(dir, MANIFEST_FILE);
    writeFileSync(path, readFileSync(path, "utf8").replace('"version":1', `"version":${FORMAT_VERSION + 1}`));
    await expectCode(IndexReader.open(dir), "INDEX_NEWER_VERSION");
    await expectCode(IndexWriter.open(dir), "INDEX_NEWER_VERSION");
  });

  it("detects damaged files with INDEX_CORRUPT: vectors, documents, graph, deletions, manifest", async () => {
    const damage = async (pick: (f: string) => boolean, how: (path: string) => void) => {
      const dir = newDir();
      await build(dir, Array.from({ length: 20 }, (_, i) => doc(i)));
      const w = await IndexWriter.open(dir);
      w.delete("d3");
      await w.commit();
      await w.close();
      const file = readdirSync(dir).find(pick);
      if (!file) throw new Error("no file to damage");
      how(join(dir, file));
      await expectCode(IndexReader.open(dir), "INDEX_CORRUPT");
      return dir;
    };
    const flipByte = (path: string) => {
      const b = readFileSync(path);
      b[Math.floor(b.length / 2)] ^= 0x5a;
      writeFileSync(path, b);
    };
    await damage((f) => f.endsWith(".docs.json"), (p) => truncateSync(p, 10));
    const vecDir = await damage((f) => f.endsWith(".vec"), flipByte);
    const w1 = await IndexWriter.open(vecDir);
    await expectCode(w1.compact(), "INDEX_CORRUPT"); // vectors are read back, checked, on merges
    await w1.close();
    // A damaged graph is derived data: compaction rebuilds every graph from the vectors.
    const graphDir = await damage((f) => f.endsWith(".hnsw"), flipByte);
    const w2 = await IndexWriter.open(graphDir);
    await w2.compact();
    await w2.close();
    const repaired = await IndexReader.open(graphDir);
    expect(repaired.stats().documents).toBe(19);
    await repaired.close();
    await damage((f) => f.includes(".del-"), flipByte);
    await damage((f) => f === MANIFEST_FILE, (p) => writeFileSync(p, readFileSync(p, "utf8").replace('"docs":20', '"docs":21')));
    await damage((f) => f === MANIFEST_FILE, (p) => writeFileSync(p, "{ not json"));
  });

  it("refuses a second writer (same process or a live other process) with INDEX_LOCKED and takes over a dead writer's lock", async () => {
    const dir = newDir();
    await build(dir, [doc(1)]);
    const first = await IndexWriter.open(dir);
    await expectCode(IndexWriter.open(dir), "INDEX_LOCKED");
    await first.close();

    const sleeper = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"]);
    const lock = join(dir, `writer-${sleeper.pid}.lock`);
    writeFileSync(lock, JSON.stringify({ pid: sleeper.pid, host: (await import("node:os")).hostname(), since: "now" }));
    try {
      await expectCode(IndexWriter.open(dir), "INDEX_LOCKED");
    } finally {
      sleeper.kill("SIGKILL");
      await new Promise((r) => sleeper.once("exit", r));
    }
    const second = await IndexWriter.open(dir); // the holder is dead now: stale
    expect(existsSync(lock)).toBe(false);
    await second.close();
  });

  it("checks the model and dimensions, and refuses bad input", async () => {
    const dir = newDir();
    const modelA = { name: "a", fingerprint: "aaaa" };
    const w = await IndexWriter.open(dir, { create: { dim: DIM, model: modelA }, model: modelA });
    expect(() => w.upsert({ id: "x", embeddings: { rows: 1, dim: 3, data: new Float32Array(3) }, text: "" })).toThrow(/16-d|32-d/);
    expect(() => w.upsert({ id: "", embeddings: corpus.document(1), text: "" })).toThrow(/id/);
    expect(() => w.upsert({ id: "x", embeddings: { rows: 0, dim: DIM, data: new Float32Array(0) }, text: "" })).toThrow(/no token vectors/);
    expect(() => w.upsert({ id: "x", embeddings: { rows: 1, dim: DIM, data: new Float32Array(DIM).fill(Number.NaN) }, text: "" })).toThrow(/NaN/);
    expect(() => w.upsert({ ...doc(1), metadata: { bad: [1] as unknown as string } })).toThrow(/metadata/);
    w.upsert(doc(1));
    await w.commit();
    await w.close();
    await expectCode(IndexWriter.open(dir, { model: { name: "b", fingerprint: "bbbb" } }), "INDEX_MODEL_MISMATCH");
    await expectCode(IndexWriter.open(dir, { create: { dim: 16 } }), "INDEX_MODEL_MISMATCH");
    const reader = await IndexReader.open(dir);
    await expectCode(reader.search({ rows: 1, dim: 16, data: new Float32Array(16) }), "INDEX_MODEL_MISMATCH");
    await expectCode(reader.search(corpus.query(1, 1), { k: 0 }), "INVALID_ARGUMENT");
    await reader.close();
  });

  it("says INDEX_NOT_FOUND for a folder without an index and will not create one among other files", async () => {
    const dir = newDir();
    await expectCode(IndexReader.open(dir), "INDEX_NOT_FOUND");
    await expectCode(IndexWriter.open(dir), "INDEX_NOT_FOUND");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "notes.txt"), "mine");
    await expectCode(IndexWriter.open(dir, { create: { dim: DIM } }), "INVALID_ARGUMENT");
  });

  it("a cancelled commit leaves the index unchanged and no stray files", async () => {
    const dir = newDir();
    await build(dir, Array.from({ length: 10 }, (_, i) => doc(i)));
    const before = readdirSync(dir).sort();
    const w = await IndexWriter.open(dir);
    w.upsert(Array.from({ length: 3000 }, (_, i) => doc(1000 + i)));
    const controller = new AbortController();
    const commit = w.commit({ signal: controller.signal, onProgress: (stage) => stage === "writing vectors" && setTimeout(() => controller.abort(), 0) });
    await expectCode(commit, "ABORTED");
    expect(w.pendingChanges.upserts).toBe(3000); // still pending: the caller may retry or close
    await w.close();
    expect(readdirSync(dir).sort()).toEqual(before.filter((f) => !f.endsWith(".lock")));
    const reader = await IndexReader.open(dir);
    expect(reader.stats().documents).toBe(10);
    await reader.close();
  });
});
