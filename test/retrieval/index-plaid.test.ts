/** The plaid (compressed, format version 2) index layout: recall at the defaults, round trips, checks, upgrade. */
import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SyntheticCorpus, bruteForceMaxSim } from "../../bench/synthetic-colbert.ts";
import { centroidCountFor } from "../../retrieval/index/centroid-codec.ts";
import { MANIFEST_FILE } from "../../retrieval/index/format.ts";
import { IndexReader, verifyIndex } from "../../retrieval/index/reader.ts";
import { MaxSimScorer } from "../../retrieval/index/rerank.ts";
import { decodeRows, encodeRows } from "../../retrieval/index/vector-codec.ts";
import { IndexWriter, type NewDocument } from "../../retrieval/index/writer.ts";
import { expectCode } from "../helpers/errors.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-plaid-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let folders = 0;
const newDir = () => join(root, `idx-${folders++}`);

type Vectors = { rows: number; dim: number; data: Float32Array };

/** Exact top-k ids by brute force over the vectors as stored (float16 unless said otherwise). */
function bruteForce(query: Vectors, docs: NewDocument[], k: number, storage: "float16" | "float32" = "float16"): string[] {
  const scored = docs.map((d) => {
    const e = d.embeddings;
    return { id: d.id, score: bruteForceMaxSim(query, { rows: e.rows, dim: e.dim, data: decodeRows(encodeRows(storage, e.data, e.rows, e.dim)) }) };
  });
  return scored
    .sort((a, b) => b.score - a.score)
    .slice(0, k)
    .map((s) => s.id);
}

describe("plaid index: recall", () => {
  it("the default search settings reach recall@10 ≥ 0.97 against exact float32 MaxSim on 20k synthetic passages", { timeout: 240_000 }, async () => {
    // 64-d and ~20 tokens a passage keep this to CI size (0.4 M vectors); clustered like real ColBERT vectors (bench/synthetic-colbert.ts).
    const corpus = new SyntheticCorpus({ dim: 64, minTokens: 12, maxTokens: 28, queryLength: 16, seed: 11 });
    const DOCS = 20_000;
    const dir = newDir();
    const w = await IndexWriter.open(dir, { create: { dim: 64, layout: "plaid" } });
    const docs: Vectors[] = [];
    for (let i = 0; i < DOCS; i++) {
      docs.push(corpus.document(i));
      w.upsert({ id: `d${i}`, embeddings: docs[i], text: "" });
    }
    await w.commit();
    await w.close();

    const queries = Array.from({ length: 40 }, (_, q) => corpus.query(q, (q * 7919) % DOCS));
    // Exact top 10 over the float32 vectors: one Gemm per query and block of passages.
    const scorer = await MaxSimScorer.create("float32", 64);
    const truth: Array<Set<string>> = [];
    for (const q of queries) {
      const scores: number[] = [];
      for (let first = 0; first < DOCS; first += 2000) {
        const block = docs.slice(first, first + 2000);
        const rows = block.reduce((n, d) => n + d.rows, 0);
        const data = new Float32Array(rows * 64);
        const ranges = [];
        let at = 0;
        for (const d of block) {
          data.set(d.data, at * 64);
          ranges.push({ start: at, count: d.rows });
          at += d.rows;
        }
        scores.push(...(await scorer.score(q, { storage: "float32", dim: 64, rows, codes: data }, ranges)));
      }
      truth.push(new Set([...scores.keys()].sort((a, b) => scores[b] - scores[a]).slice(0, 10).map((i) => `d${i}`)));
    }
    await scorer.release();

    const reader = await IndexReader.open(dir);
    expect(reader.stats()).toMatchObject({ layout: "plaid", documents: DOCS, segments: 1, centroids: centroidCountFor(reader.stats().rows, 4) });
    let hits = 0;
    for (let q = 0; q < queries.length; q++) for (const h of await reader.search(queries[q])) hits += truth[q].has(h.id) ? 1 : 0;
    await reader.close();
    const recall = hits / (10 * queries.length);
    expect(recall).toBeGreaterThanOrEqual(0.97);
  });
});

describe("plaid index: changes and files", () => {
  const DIM = 32;
  const corpus = new SyntheticCorpus({ dim: DIM, topics: 24, termsPerTopic: 24, functionWords: 32, minTokens: 6, maxTokens: 18, queryLength: 8, seed: 7 });
  const doc = (i: number, extra: Partial<NewDocument> = {}): NewDocument => ({
    id: `d${i}`,
    embeddings: corpus.document(i),
    text: `passage ${i}`,
    source: `/docs/file${i % 5}.txt`,
    start: i,
    end: i + 9,
    metadata: { lang: i % 3 === 0 ? "fr" : "en", n: i },
    ...extra,
  });

  it("adds over several commits (merging), deletes, replaces, searches like brute force, reopens and compacts", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 300 }, (_, i) => doc(i));
    const w = await IndexWriter.open(dir, { create: { dim: DIM, layout: "plaid" } });
    for (let b = 0; b < 6; b++) {
      w.upsert(docs.slice(b * 50, (b + 1) * 50));
      await w.commit();
    }
    expect(w.delete(["d7", "d8", "missing"])).toBe(2);
    w.upsert(doc(5, { text: "passage 5, second version", embeddings: corpus.document(900) }));
    await w.commit();
    await w.close();
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8"));
    expect(manifest.version).toBe(2);
    expect(readdirSync(dir).some((f) => f.endsWith(".plaid"))).toBe(true);
    expect(readdirSync(dir).some((f) => f.endsWith(".hnsw"))).toBe(false);

    const live = docs.filter((d) => d.id !== "d7" && d.id !== "d8").map((d) => (d.id === "d5" ? doc(5, { text: "passage 5, second version", embeddings: corpus.document(900) }) : d));
    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    expect(reader.layout).toBe("plaid");
    expect(reader.stats()).toMatchObject({ documents: 298, deletedDocuments: 3 });
    expect(reader.get("d7")).toBeUndefined();
    expect(reader.get("d5")?.text).toBe("passage 5, second version");
    for (const d of live.slice(0, 40)) {
      expect(reader.get(d.id)).toMatchObject({ text: d.text, source: d.source, start: d.start, end: d.end, metadata: d.metadata, rows: d.embeddings.rows });
      const back = decodeRows(reader.storedRows(d.id) as NonNullable<ReturnType<typeof reader.storedRows>>);
      for (let i = 0; i < back.length; i++) expect(Math.abs(back[i] - d.embeddings.data[i])).toBeLessThan(1e-3);
    }
    // Candidates wide enough to hold every true top-5: the result is exact MaxSim over the stored rows.
    const wide = { k: 5, nprobe: 65_536, centroidDocs: 300, residualDocs: 300, rerankDocs: 300 };
    const queries = Array.from({ length: 6 }, (_, q) => corpus.query(q, (q * 37) % 300));
    queries.push(corpus.query(50, 900)); // aimed at d5's new vectors
    const before: string[][] = [];
    for (const query of queries) {
      const hits = await reader.search(query, wide);
      expect(hits.map((h) => h.id)).toEqual(bruteForce(query, live, 5));
      before.push(hits.map((h) => h.id));
      // The default settings find the same passages here.
      expect((await reader.search(query, { k: 5 })).map((h) => h.id)).toEqual(hits.map((h) => h.id));
    }
    expect(before.at(-1)?.[0]).toBe("d5");
    // Filters apply before ranking.
    const fr = await reader.search(queries[0], { ...wide, k: 10, filter: { lang: "fr" } });
    expect(fr.map((h) => h.id)).toEqual(bruteForce(queries[0], live.filter((d) => d.metadata?.lang === "fr"), 10));

    const w2 = await IndexWriter.open(dir);
    expect((await w2.compact()).segments).toBe(1);
    await w2.close();
    expect(await reader.refresh()).toBe(true);
    expect(reader.stats()).toMatchObject({ documents: 298, deletedDocuments: 0, segments: 1 });
    for (let q = 0; q < queries.length; q++) expect((await reader.search(queries[q], wide)).map((h) => h.id)).toEqual(before[q]);
    await reader.close();
    expect(readdirSync(dir).filter((f) => f.startsWith("seg-")).length).toBe(3); // vectors, documents, compressed rows

    const reopened = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    for (let q = 0; q < queries.length; q++) expect((await reopened.search(queries[q], wide)).map((h) => h.id)).toEqual(before[q]);
    await reopened.close();
  });

  it("open checks sizes, verifyIndex checks every checksum", async () => {
    const build = async () => {
      const dir = newDir();
      const w = await IndexWriter.open(dir, { create: { dim: DIM, layout: "plaid" } });
      w.upsert(Array.from({ length: 40 }, (_, i) => doc(i)));
      await w.commit();
      await w.close();
      return dir;
    };
    const file = (dir: string, suffix: string) => join(dir, readdirSync(dir).find((f) => f.endsWith(suffix)) as string);
    const clean = await build();
    expect(verifyIndex(clean).files).toBe(3);

    const flipped = await build();
    const vec = file(flipped, ".vec");
    const bytes = readFileSync(vec);
    bytes[Math.floor(bytes.length / 2)] ^= 0x5a;
    writeFileSync(vec, bytes);
    await (await IndexReader.open(flipped)).close(); // a flipped byte in the full rows is only found by verify
    expect(() => verifyIndex(flipped)).toThrow(/fails its checksum/);
    await expectCode(IndexReader.open(flipped, { verify: true }), "INDEX_CORRUPT");

    for (const suffix of [".vec", ".plaid"]) {
      const truncated = await build();
      truncateSync(file(truncated, suffix), 100);
      await expectCode(IndexReader.open(truncated), "INDEX_CORRUPT");
    }
    const garbled = await build();
    const plaid = file(garbled, ".plaid");
    const raw = readFileSync(plaid);
    raw.fill(0xff, raw.length - 64); // inverted lists naming documents that do not exist, same size
    writeFileSync(plaid, raw);
    const error = await expectCode(IndexReader.open(garbled), "INDEX_CORRUPT");
    // Compressed rows derive from the stored vectors: the advice is compact, and it works.
    expect(error.message).toContain(`lfm index compact --index ${garbled}`);
    const repair = await IndexWriter.open(garbled);
    await repair.compact();
    await repair.close();
    expect(verifyIndex(garbled).files).toBe(3);
    const repaired = await IndexReader.open(garbled);
    expect(repaired.stats().documents).toBe(40);
    await repaired.close();
  });

  it("after a writer crashed (its lock left, its process gone) the next open checks every checksum, once", async () => {
    const build = async () => {
      const dir = newDir();
      const w = await IndexWriter.open(dir, { create: { dim: DIM, layout: "plaid" } });
      w.upsert(Array.from({ length: 40 }, (_, i) => doc(i)));
      await w.commit();
      await w.close();
      return dir;
    };
    // A pid that is certainly not running: a child that has exited.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    const deadPid = Number(dead.stdout);
    const leaveLock = (dir: string) => writeFileSync(join(dir, `writer-${deadPid}.lock`), JSON.stringify({ pid: deadPid, host: hostname(), since: "2026-01-01T00:00:00Z" }));
    const flipVectors = (dir: string) => {
      const vec = join(dir, readdirSync(dir).find((f) => f.endsWith(".vec")) as string);
      const bytes = readFileSync(vec);
      bytes[Math.floor(bytes.length / 2)] ^= 0x5a; // same size: only a checksum finds it
      writeFileSync(vec, bytes);
    };

    const damagedReader = await build();
    flipVectors(damagedReader);
    await (await IndexReader.open(damagedReader)).close(); // no crash seen: sizes only
    leaveLock(damagedReader);
    await expectCode(IndexReader.open(damagedReader), "INDEX_CORRUPT");
    expect(readdirSync(damagedReader).some((f) => f.endsWith(".lock"))).toBe(true); // still owed a check

    const damagedWriter = await build();
    flipVectors(damagedWriter);
    leaveLock(damagedWriter);
    await expectCode(IndexWriter.open(damagedWriter), "INDEX_CORRUPT");

    const clean = await build();
    leaveLock(clean);
    const reader = await IndexReader.open(clean);
    expect(reader.stats().documents).toBe(40);
    await reader.close();
    expect(readdirSync(clean).some((f) => f.endsWith(".lock"))).toBe(false); // checked once, then fast again
    leaveLock(clean);
    const writer = await IndexWriter.open(clean);
    writer.upsert(doc(40));
    await writer.commit();
    await writer.close();
    expect(verifyIndex(clean).files).toBeGreaterThan(3);
  });

  it("upgrade rewrites an hnsw index as plaid keeping every document, its vectors and the search results", async () => {
    const dir = newDir();
    const docs = Array.from({ length: 200 }, (_, i) => doc(i));
    const w = await IndexWriter.open(dir, { create: { dim: DIM, graph: { m: 8, efConstruction: 32 } } });
    w.upsert(docs.slice(0, 120));
    await w.commit();
    w.upsert(docs.slice(120));
    w.delete("d3");
    await w.commit();
    await w.close();
    const queries = Array.from({ length: 8 }, (_, q) => corpus.query(q, (q * 23) % 200));
    const old = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    expect(old.layout).toBe("hnsw");
    const before: Array<Array<[string, number]>> = [];
    for (const q of queries) before.push((await old.search(q, { k: 10, candidatesPerToken: 64, rerankDocs: 200 })).map((h): [string, number] => [h.id, h.score]));
    await old.close();

    const up = await IndexWriter.open(dir);
    const result = await up.upgrade();
    expect(result?.segments).toBe(1);
    expect(await up.upgrade()).toBeNull(); // already plaid
    await up.close();
    expect(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), "utf8")).version).toBe(2);

    const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    expect(reader.layout).toBe("plaid");
    expect([...reader.documents()].map((d) => d.id).sort()).toEqual(docs.filter((d) => d.id !== "d3").map((d) => d.id).sort());
    for (const d of docs.filter((x) => x.id !== "d3")) {
      expect(reader.get(d.id)).toMatchObject({ text: d.text, source: d.source, metadata: d.metadata });
      const back = decodeRows(reader.storedRows(d.id) as NonNullable<ReturnType<typeof reader.storedRows>>);
      for (let i = 0; i < back.length; i++) expect(Math.abs(back[i] - d.embeddings.data[i])).toBeLessThan(1e-3);
    }
    for (let q = 0; q < queries.length; q++) {
      const after = (await reader.search(queries[q], { k: 10 })).map((h) => [h.id, h.score]);
      expect(after.map((x) => x[0])).toEqual(before[q].map((x) => x[0]));
      after.forEach((x, i) => expect(Math.abs((x[1] as number) - (before[q][i][1] as number))).toBeLessThan(1e-4));
    }
    await reader.close();
    expect(readdirSync(dir).some((f) => f.endsWith(".hnsw"))).toBe(false);
  });
});
