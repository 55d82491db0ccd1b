/** Runs the real `lfm` entry point in a child process, as a user or a script would. */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { TEST_CACHE } from "./reference.ts";

export const LFM_BIN = join(import.meta.dirname, "..", "..", "bin", "lfm.mjs");

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runLfm(args: string[], opts: { input?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [LFM_BIN, ...args], {
    encoding: "utf8",
    input: opts.input ?? "",
    timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function runLfmJson<T = Record<string, unknown>>(args: string[]): T {
  const r = runLfm(args);
  if (r.status !== 0) throw new Error(`lfm ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
