/**
 * vitest globalSetup: every temporary file the tests make — theirs and their CLI children's — goes
 * under one folder for the run (TMPDIR, which os.tmpdir() and child processes read), removed when
 * the run ends, so repeated runs leave nothing behind. Built test graphs stay cached across runs
 * outside it (TEST_CACHE).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export default function setup(): () => void {
  const base = tmpdir();
  process.env.LFM_TEST_GRAPH_CACHE ??= join(base, "lfm2-edge-test-graphs");
  const dir = mkdtempSync(join(base, "lfm2-edge-test-run-"));
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
