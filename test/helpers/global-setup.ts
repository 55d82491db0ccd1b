/**
 * vitest globalSetup: every temporary file the tests make — theirs and their CLI children's — goes
 * under one folder for the run (TMPDIR, which os.tmpdir() and child processes read), removed when
 * the run ends, so repeated runs leave nothing behind. Built test graphs stay cached across runs
 * outside it (TEST_CACHE); those no run has loaded for a day (a changed graph builder makes new
 * ones, ~1.5 GB per real-shape model) are pruned at the end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pruneCache } from "../../text-core/graph-cache.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

export default function setup(): () => void {
  const base = tmpdir();
  const graphCache = (process.env.LFM_TEST_GRAPH_CACHE ??= join(base, "lfm2-edge-test-graphs"));
  const dir = mkdtempSync(join(base, "lfm2-edge-test-run-"));
  process.env.TMPDIR = dir;
  return () => {
    rmSync(dir, { recursive: true, force: true });
    pruneCache(graphCache, { unusedForMs: DAY_MS });
  };
}
