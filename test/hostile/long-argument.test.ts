/**
 * One long command-line argument used to kill every model command with SIGSEGV: onnxruntime-node
 * 1.30's telemetry client parses /proc/self/cmdline recursively (text-core/runtime.ts,
 * docs/onnxruntime-telemetry.md). Each command that takes text from an argument, with 40–66 KB of it.
 */
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runLfm } from "../helpers/cli.ts";

const LONG = "pump valve ".repeat(6000); // 66 KB; the crash began near 30 KB
/** The runtime's telemetry switch as a user's shell would have it: unset. */
const PLAIN_ENV = { ORT_DISABLE_TELEMETRY: undefined };

describe("a long argument", () => {
  it("lfm generate --stop with 40 KB of ids runs, and onnxruntime writes no telemetry under HOME", () => {
    const home = mkdtempSync(join(tmpdir(), "lfm-home-"));
    const stops = Array.from({ length: 8000 }, (_, i) => 900 + (i % 100)).join(",");
    const r = runLfm(["generate", "--prompt", "pump", "--stop", stops, "--max-tokens", "2", "--json"], { env: { ...PLAIN_ENV, HOME: home } });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { ids: number[] };
    expect(out.ids.length).toBeGreaterThan(0);
    expect(existsSync(join(home, ".cache", "Microsoft"))).toBe(false);
  });

  it("a prompt longer than the context, as --prompt or --message, is PROMPT_TOO_LONG, not a crash", () => {
    for (const args of [["generate", "--prompt", LONG], ["chat", "--message", LONG]]) {
      const r = runLfm([...args, "--max-tokens", "1", "--json"], { env: PLAIN_ENV });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error \[PROMPT_TOO_LONG\]/m);
    }
  });

  it("lfm encode --document with 40 KB of text runs", () => {
    const r = runLfm(["encode", "--document", LONG.slice(0, 40_000), "--json"], { env: PLAIN_ENV });
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { embeddings: number[][] }).embeddings.length).toBeGreaterThan(0);
  });
});
