/** Runs the real `lfm` entry point in a child process, as a user or a script would. */
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { TEST_CACHE } from "./reference.ts";

export const LFM_BIN = join(import.meta.dirname, "..", "..", "bin", "lfm.mjs");

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** `env`: variables over this process's (an `undefined` value removes one). */
export function runLfm(args: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string | undefined> } = {}): CliResult {
  const env: Record<string, string | undefined> = { ...process.env, LFM_CACHE_DIR: TEST_CACHE, ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const r = spawnSync(process.execPath, [LFM_BIN, ...args], {
    encoding: "utf8",
    input: opts.input ?? "",
    timeout: opts.timeoutMs ?? 120_000,
    env,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function runLfmJson<T = Record<string, unknown>>(args: string[]): T {
  const r = runLfm(args);
  if (r.status !== 0) throw new Error(`lfm ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/**
 * Starts `lfm ARGS` writing audio into `dir`, waits until its temporary WAV (`*.partial-*`) holds
 * more than `frames` Mimi frames (1920 int16 samples each), then sends SIGINT, as Ctrl-C would.
 */
export async function interruptOnceAudioWritten(args: string[], dir: string, frames = 5): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [LFM_BIN, ...args], {
    env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const partial = readdirSync(dir).find((f) => f.includes(".partial-"));
    if (partial && statSync(join(dir, partial)).size > 44 + frames * 1920 * 2) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`no audio appeared: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill("SIGINT");
  const code = await exited;
  return { code, stderr };
}
