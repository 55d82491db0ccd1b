/** `lfm serve` as a user starts it: a child process, its URL read from the "listening on" line it prints. */
import { type ChildProcess, spawn } from "node:child_process";
import { LFM_BIN } from "../helpers/cli.ts";
import { TEST_CACHE } from "../helpers/reference.ts";

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** What the server wrote on stderr so far. */
  stderr(): string;
  /** Ctrl-C; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `lfm serve ARGS`; resolves once it listens, rejects if it exits first or takes longer than `startTimeoutMs`. */
export function startServe(args: string[], startTimeoutMs = 90_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [LFM_BIN, "serve", ...args], { env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`lfm serve did not start: ${stderr}`));
    }, startTimeoutMs);
    child.on("exit", () => reject(new Error(`lfm serve exited: ${stderr}`)));
    child.stdout!.on("data", (d) => {
      stdout += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        url: m[1],
        child,
        stderr: () => stderr,
        stop: () => {
          child.kill("SIGINT");
          return exited;
        },
      });
    });
  });
}
