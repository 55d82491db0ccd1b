/**
 * Crash safety: a writer process (crash-child.ts) committing adds, updates, deletes and
 * compactions is killed with SIGKILL at random instants, 24 times in a row on the same index.
 * After every kill the index must open cleanly (every checksum verified), hold exactly the state
 * of one commit, that commit must not be older than the last one the child acknowledged, and the
 * next writer must get past the dead writer's lock.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { rng } from "../../bench/synthetic-colbert.ts";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { decodeRows, encodeRows } from "../../retrieval/index/vector-codec.ts";
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { CRASH_DIM, expectedState, textOf, vectorsOf } from "./crash-ops.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const TRIALS = 24;
/** Kills of a writer of a plaid index (the same commit protocol; fewer, to keep the test short). */
const PLAID_TRIALS = 12;
const hnswDir = mkdtempSync(join(tmpdir(), "lfm-index-crash-"));
const plaidDir = mkdtempSync(join(tmpdir(), "lfm-index-crash-plaid-"));
afterAll(() => {
  rmSync(hnswDir, { recursive: true, force: true });
  rmSync(plaidDir, { recursive: true, force: true });
});

interface Trial {
  acked: number;
  opened: boolean;
}

/** Starts the child and kills it `delayMs` after it opened the index (or after it started, if `killBeforeOpen`). */
function runChild(dir: string, layout: "hnsw" | "plaid", delayMs: number, killBeforeOpen: boolean): Promise<Trial> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [join(ROOT, "bin/run-ts.mjs"), join(ROOT, "test/retrieval/crash-child.ts"), dir, layout], { stdio: ["ignore", "pipe", "pipe"] });
    const trial: Trial = { acked: -1, opened: false };
    let stderr = "";
    let buffered = "";
    const kill = () => child.kill("SIGKILL");
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        const [word, n] = line.split(" ");
        if (word === "open") {
          trial.opened = true;
          trial.acked = Number(n);
          if (!killBeforeOpen) setTimeout(kill, delayMs);
        } else if (word === "ack") trial.acked = Number(n);
      }
    });
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    if (killBeforeOpen) setTimeout(kill, delayMs);
    child.on("exit", (code, signal) => {
      if (signal !== "SIGKILL") reject(new Error(`the writer exited by itself (code ${code}): ${stderr}`));
      else resolve(trial);
    });
  });
}

async function checkIndex(dir: string, minGeneration: number): Promise<number> {
  const reader = await IndexReader.open(dir, { verify: true });
  try {
    const generation = reader.generation;
    expect(generation).toBeGreaterThanOrEqual(minGeneration);
    const expected = expectedState(generation);
    const actual = [...reader.documents()];
    expect(actual.map((d) => d.id).sort()).toEqual([...expected.keys()].sort());
    for (const doc of actual) {
      const want = expected.get(doc.id);
      if (!want) throw new Error(`unexpected document ${doc.id}`);
      expect(doc.text).toBe(textOf(want));
      expect(doc.metadata).toEqual({ version: want.version });
      const stored = reader.storedRows(doc.id);
      if (!stored) throw new Error(`no vectors for ${doc.id}`);
      const v = vectorsOf(want);
      expect(Array.from(decodeRows(stored))).toEqual(Array.from(decodeRows(encodeRows("float16", v.data, v.rows, CRASH_DIM))));
    }
    if (actual.length > 0) {
      const first = expected.get(actual[0].id);
      if (first) expect((await reader.search(vectorsOf(first), { k: 1, exhaustive: true }))[0].id).toBe(actual[0].id);
    }
    return generation;
  } finally {
    await reader.close();
  }
}

/** Kills the writer `trials` times; returns the newest generation seen. */
async function killRepeatedly(dir: string, layout: "hnsw" | "plaid", trials: number): Promise<number> {
  const next = rng(2024);
  let acked = 0;
  let committedMax = 0;
  for (let t = 0; t < trials; t++) {
    // Every fourth kill lands while the child starts and opens the index (lock takeover, clean-up).
    const killBeforeOpen = t % 4 === 3;
    const trial = await runChild(dir, layout, killBeforeOpen ? 200 + next() * 800 : next() * 700, killBeforeOpen);
    acked = Math.max(acked, trial.acked);
    const generation = await checkIndex(dir, acked);
    // Never older than what a previous check saw either (a commit is never undone).
    expect(generation).toBeGreaterThanOrEqual(committedMax);
    committedMax = generation;
  }
  return committedMax;
}

describe("index crash safety", () => {
  it(`survives ${TRIALS} SIGKILLs of a writer at random instants without losing a committed document`, { timeout: 120_000 }, async () => {
    const dir = hnswDir;
    const next = rng(2024);
    let acked = 0;
    let committedMax = 0;
    for (let t = 0; t < TRIALS; t++) {
      // Every fourth kill lands while the child starts and opens the index (lock takeover, clean-up).
      const killBeforeOpen = t % 4 === 3;
      const trial = await runChild(dir, "hnsw", killBeforeOpen ? 200 + next() * 800 : next() * 700, killBeforeOpen);
      acked = Math.max(acked, trial.acked);
      const generation = await checkIndex(dir, acked);
      // Never older than what a previous check saw either (a commit is never undone).
      expect(generation).toBeGreaterThanOrEqual(committedMax);
      committedMax = generation;
    }
    expect(committedMax).toBeGreaterThan(10); // the workload got through compactions too
    // The folder ends clean once a writer opens: one manifest, referenced files only, no stale locks.
    const writer = await IndexWriter.open(dir);
    await writer.close();
    const files = readdirSync(dir);
    expect(files.filter((f) => f.endsWith(".lock") || f.includes(".tmp-"))).toEqual([]);
    const reader = await IndexReader.open(dir);
    const referenced = reader.stats().segments;
    await reader.close();
    expect(files.filter((f) => f.endsWith(".hnsw")).length).toBe(referenced);
  });

  it(`survives ${PLAID_TRIALS} SIGKILLs of a writer of a plaid index the same way`, { timeout: 120_000 }, async () => {
    const committedMax = await killRepeatedly(plaidDir, "plaid", PLAID_TRIALS);
    expect(committedMax).toBeGreaterThan(5);
    const writer = await IndexWriter.open(plaidDir);
    await writer.close();
    const files = readdirSync(plaidDir);
    expect(files.filter((f) => f.endsWith(".lock") || f.includes(".tmp-"))).toEqual([]);
    const reader = await IndexReader.open(plaidDir);
    const referenced = reader.stats().segments;
    expect(reader.layout).toBe("plaid");
    await reader.close();
    expect(files.filter((f) => f.endsWith(".plaid")).length).toBe(referenced);
    expect(files.some((f) => f.endsWith(".hnsw"))).toBe(false);
  });
});
