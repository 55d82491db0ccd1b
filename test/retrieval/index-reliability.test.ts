/**
 * Reliability of the plaid index beyond process kills (index-crash.test.ts): a disk that fills up
 * during a commit, and readers that search while a compaction runs and after it commits.
 */
import * as realFs from "node:fs";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { SyntheticCorpus } from "../../bench/synthetic-colbert.ts";
import { IndexReader, type SearchHit, verifyIndex } from "../../retrieval/index/reader.ts";
import { IndexWriter, type NewDocument } from "../../retrieval/index/writer.ts";
import { expectCode } from "../helpers/errors.ts";

/**
 * A disk that is full from a chosen moment: writes to files whose name matches `failing` throw
 * ENOSPC, as writeSync does when the file system has no free blocks. The index code imports
 * node:fs by name, so the module is wrapped rather than patched.
 */
const disk = vi.hoisted(() => ({ failing: null as RegExp | null, failures: 0, paths: new Map<number, string>() }));
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const openSync = ((path: realFs.PathLike, ...rest: unknown[]) => {
    const fd = (fs.openSync as (...a: unknown[]) => number)(path, ...rest);
    disk.paths.set(fd, String(path));
    return fd;
  }) as typeof fs.openSync;
  const writeSync = ((fd: number, ...rest: unknown[]) => {
    const path = disk.paths.get(fd) ?? "";
    if (disk.failing?.test(path)) {
      disk.failures++;
      throw Object.assign(new Error(`ENOSPC: no space left on device, write`), { code: "ENOSPC", errno: -28, syscall: "write" });
    }
    return (fs.writeSync as (...a: unknown[]) => number)(fd, ...rest);
  }) as typeof fs.writeSync;
  return { ...fs, default: { ...fs, openSync, writeSync }, openSync, writeSync };
});

const root = mkdtempSync(join(tmpdir(), "lfm-reliability-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => {
  disk.failing = null;
});
let folders = 0;
const newDir = () => join(root, `idx-${folders++}`);

const DIM = 32;
const corpus = new SyntheticCorpus({ dim: DIM, topics: 24, termsPerTopic: 24, functionWords: 32, minTokens: 6, maxTokens: 18, queryLength: 8, seed: 5 });
const doc = (i: number): NewDocument => ({ id: `d${i}`, embeddings: corpus.document(i), text: `passage ${i}`, source: `/docs/file${i % 7}.txt`, metadata: { n: i } });
const ids = (hits: SearchHit[]) => hits.map((h) => `${h.id} ${h.score.toFixed(5)}`);
/** The index's files other than the writer's lock. */
const filesOf = (dir: string) => readdirSync(dir).filter((f) => !f.startsWith("writer-")).sort();

describe("disk full during a commit", () => {
  // Each kind of file a plaid commit writes: the full vectors, the passages, the compressed rows,
  // a deletion list, and the manifest's temporary file (the last write before the commit point).
  for (const [what, failing] of [
    ["the vectors", /seg-\d+\.vec$/],
    ["the passages", /seg-\d+\.docs\.json$/],
    ["the compressed rows", /seg-\d+\.plaid$/],
    ["a deletion list", /seg-\d+\.del-\d+$/],
    ["the new manifest", /manifest\.json\.tmp-\d+$/],
  ] as const) {
    it(`filling up while writing ${what}: INDEX_WRITE_FAILED, nothing committed is lost, and the commit succeeds once there is space`, async () => {
      const dir = newDir();
      const w = await IndexWriter.open(dir, { create: { dim: DIM, layout: "plaid" } });
      w.upsert(Array.from({ length: 200 }, (_, i) => doc(i)));
      await w.commit();
      w.upsert(Array.from({ length: 10 }, (_, i) => doc(200 + i)));
      await w.commit(); // two segments: a small commit merges the small one only, and writes the big one a deletion list
      const before = filesOf(dir);
      const query = corpus.query(1, 3);
      const reader = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
      const answer = ids(await reader.search(query, { k: 20 }));

      w.delete(["d3"]);
      w.upsert(Array.from({ length: 10 }, (_, i) => doc(300 + i)));
      disk.failing = failing;
      disk.failures = 0;
      const error = await expectCode(w.commit(), "INDEX_WRITE_FAILED", "no space left");
      expect(error.message).toContain("generation 2");
      expect(disk.failures).toBeGreaterThan(0); // the failure really happened where intended
      disk.failing = null;

      // The index is exactly the last commit: same files (no part-written ones), every checksum good.
      expect(filesOf(dir)).toEqual(before);
      expect(() => verifyIndex(dir)).not.toThrow();
      expect(await reader.refresh()).toBe(false);
      const other = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
      expect(other.generation).toBe(2);
      expect(ids(await other.search(query, { k: 20 }))).toEqual(answer);
      await other.close();

      // Space is back: the same writer commits its pending changes.
      expect(w.pendingChanges).toEqual({ upserts: 10, deletes: 1 });
      expect((await w.commit()).generation).toBe(3);
      await w.close();
      expect(() => verifyIndex(dir)).not.toThrow();
      expect(await reader.refresh()).toBe(true);
      expect(reader.stats().documents).toBe(219);
      expect(reader.get("d3")).toBeUndefined();
      expect(reader.get("d305")?.text).toBe("passage 305");
      await reader.close();
    });
  }
});

describe("readers during compaction", () => {
  it("a reader opened before keeps answering the same while compaction runs and after it commits; one opened after sees the compacted index", async () => {
    const dir = newDir();
    const w = await IndexWriter.open(dir, { create: { dim: DIM, layout: "plaid" } });
    w.upsert(Array.from({ length: 200 }, (_, i) => doc(i)));
    await w.commit();
    for (let b = 0; b < 2; b++) {
      w.upsert(Array.from({ length: 10 }, (_, i) => doc(200 + b * 10 + i)));
      await w.commit(); // merges the small segments only: two segments stay
    }
    w.delete(Array.from({ length: 30 }, (_, i) => `d${i * 3}`));
    await w.commit();
    const queries = Array.from({ length: 4 }, (_, q) => corpus.query(q, q * 37 + 1));
    // exhaustiveBelowRows 0: the plaid path (centroids, residuals, rows read from the .vec files by range).
    const early = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    const segmentsBefore = early.stats().segments;
    expect(segmentsBefore).toBeGreaterThan(1);
    const answers = await Promise.all(queries.map(async (q) => ids(await early.search(q, { k: 10 }))));
    const exact = await Promise.all(queries.map(async (q) => ids(await early.search(q, { k: 10, exhaustive: true }))));

    // Search at every stage of the compaction (the callbacks run between its steps), and open readers then too.
    const during: Array<Promise<string[][]>> = [];
    const openedDuring: Array<Promise<IndexReader>> = [];
    const stages = new Set<string>();
    const result = await w.compact({
      onProgress: (stage) => {
        if (stages.has(stage)) return;
        stages.add(stage);
        during.push(Promise.all(queries.map(async (q) => ids(await early.search(q, { k: 10 })))));
        openedDuring.push(IndexReader.open(dir, { exhaustiveBelowRows: 0 }));
      },
    });
    expect(stages.size).toBeGreaterThan(3);
    for (const d of await Promise.all(during)) expect(d).toEqual(answers);
    for (const r of await Promise.all(openedDuring)) {
      expect(r.generation).toBe(4); // the manifest being written is not the commit point until renamed
      expect(await Promise.all(queries.map(async (q) => ids(await r.search(q, { k: 10 }))))).toEqual(answers);
      await r.close();
    }
    expect(result.segments).toBe(1);
    await w.close();

    // After the commit the old segment files are gone; the early reader holds what it needs (no ENOENT).
    expect(readdirSync(dir).filter((f) => f.startsWith("seg-") && f.endsWith(".vec"))).toHaveLength(1);
    expect(await Promise.all(queries.map(async (q) => ids(await early.search(q, { k: 10 }))))).toEqual(answers);
    expect(early.generation).toBe(4);

    const late = await IndexReader.open(dir, { exhaustiveBelowRows: 0 });
    expect(late.generation).toBe(5);
    expect(late.stats()).toMatchObject({ segments: 1, documents: 190, deletedDocuments: 0 });
    // Compaction retrains the centroids: the approximate stages may rank differently, exact scores do not.
    expect(await Promise.all(queries.map(async (q) => ids(await late.search(q, { k: 10, exhaustive: true }))))).toEqual(exact);
    expect(await early.refresh()).toBe(true);
    expect(early.stats().segments).toBe(1);
    await late.close();
    await early.close();
  });
});
