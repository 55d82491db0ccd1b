/**
 * Ctrl-C in `lfm chat` on a terminal: readline's raw mode used to eat it, so the reply streamed to
 * its end and the session exited 0. Driven on a real pseudo-terminal by pty-chat.py. The stopped
 * reply's summary line says "finish: cancelled".
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { LFM_BIN } from "../helpers/cli.ts";
import { TEST_CACHE } from "../helpers/reference.ts";

it("Ctrl-C during a reply stops it and returns to the prompt; Ctrl-D then leaves with status 0", () => {
  const r = spawnSync("python3", [join(import.meta.dirname, "pty-chat.py"), process.execPath, LFM_BIN, "chat", "--max-tokens", "4000", "--temperature", "0"], {
    encoding: "utf8",
    timeout: 240_000,
    env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
  });
  expect(r.status, r.stderr).toBe(0);
  const events = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(events, String(events.output_tail)).toMatchObject({ first_prompt: true, reply_started: true, stopped: true, summary: true, prompt_again: true, exit_status: 0 });
});
