/**
 * What generate, chat and describe print around a reply: the summary line on stderr (tokens,
 * tok/s, time to first token, total, finish reason; --quiet drops it), the same numbers as
 * "usage"/"timings" in --json (and no stderr line then), and generated text with its control
 * characters made visible on a terminal but kept byte for byte in a pipe.
 */
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type GenerationStats, summaryJson, summaryLine } from "../../cli/generation-output.ts";
import { textForStream } from "../../cli/terminal-text.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { LFM_BIN, runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "text/tiny-lfm2");
const VL_MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");
const IMAGE = join(FIXTURES, "vision/images/photo_320x240.jpg");
const FAST = ["--precision", "fp32", "--threads", "2", "--temperature", "0"];
const SUMMARY = /^(\d+) tokens?(?:, [\d.]+ tok\/s)?(?:, first token \d+ ms)?, total \d+ ms, finish: (stop|length|cancelled)$/m;

interface ReplyJson {
  prompt_ids: number[];
  ids: number[];
  text: string;
  finish_reason: string;
  usage: { prompt_tokens: number; completion_tokens: number };
  timings: { ttft_ms: number | null; tokens_per_s: number | null; total_ms: number };
}

const stats = (over: Partial<GenerationStats>): GenerationStats => ({
  promptTokens: 9,
  completionTokens: 12,
  ttftMs: 85.04,
  tokensPerSecond: 48.349,
  totalMs: 312.6,
  finishReason: "stop",
  ...over,
});

describe("the summary line and its --json keys", () => {
  it("says tokens, tok/s, first token, total and the finish reason; leaves out what it cannot know", () => {
    expect(summaryLine(stats({}))).toBe("12 tokens, 48.3 tok/s, first token 85 ms, total 313 ms, finish: stop");
    expect(summaryLine(stats({ completionTokens: 1, tokensPerSecond: undefined, finishReason: "length" }))).toBe("1 token, first token 85 ms, total 313 ms, finish: length");
    expect(summaryLine(stats({ completionTokens: 0, ttftMs: undefined, tokensPerSecond: undefined, finishReason: "cancelled" }))).toBe("0 tokens, total 313 ms, finish: cancelled");
    expect(summaryLine(stats({ totalMs: 61_250 }))).toBe("12 tokens, 48.3 tok/s, first token 85 ms, total 61.3 s, finish: stop");
    expect(summaryJson(stats({}))).toEqual({ usage: { prompt_tokens: 9, completion_tokens: 12 }, timings: { ttft_ms: 85, tokens_per_s: 48.35, total_ms: 312.6 } });
    expect(summaryJson(stats({ ttftMs: undefined, tokensPerSecond: undefined })).timings).toEqual({ ttft_ms: null, tokens_per_s: null, total_ms: 312.6 });
  });

  it("lfm generate: the line on stderr agrees with the --json of the same run", () => {
    const args = ["generate", "--model", MODEL, "--prompt", "The pump", "--max-tokens", "6", ...FAST];
    const out = runLfmJson<ReplyJson>([...args, "--json"]);
    expect(Object.keys(out)).toEqual(["prompt_ids", "ids", "text", "finish_reason", "usage", "timings"]);
    expect(out.usage).toEqual({ prompt_tokens: out.prompt_ids.length, completion_tokens: out.ids.length });
    const { ttft_ms, tokens_per_s, total_ms } = out.timings;
    expect(ttft_ms).toBeGreaterThan(0);
    expect(total_ms).toBeGreaterThanOrEqual(ttft_ms!);
    expect(out.ids.length < 2 ? tokens_per_s === null : tokens_per_s! > 0).toBe(true);

    const plain = runLfm(args);
    expect(plain.status, plain.stderr).toBe(0);
    const line = SUMMARY.exec(plain.stderr);
    expect(line, plain.stderr).not.toBeNull();
    expect([Number(line![1]), line![2]]).toEqual([out.ids.length, out.finish_reason]);
    expect(plain.stdout).toBe(`The pump${out.text}\n`); // the summary is not in the text
  });

  it("--quiet (-q) drops the line; --json never prints it", () => {
    for (const flag of ["--quiet", "-q"]) {
      const r = runLfm(["generate", "--model", MODEL, "--prompt", "The pump", "--max-tokens", "3", flag, ...FAST]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/token|finish/); // no summary (stderr may hold bin/lfm.mjs's "building dist/" line)
    }
    const json = runLfm(["chat", "--model", MODEL, "--message", "Hi", "--max-tokens", "3", "--json", ...FAST]);
    expect(json.status, json.stderr).toBe(0);
    expect(json.stderr).not.toMatch(/token|finish/);
  });

  it("lfm chat and lfm describe carry usage and timings in --json and the line on stderr", () => {
    const chat = runLfmJson<ReplyJson>(["chat", "--model", MODEL, "--message", "Status of pump 7?", "--max-tokens", "4", "--json", ...FAST]);
    expect(Object.keys(chat)).toEqual(["prompt_ids", "ids", "text", "tool_calls", "tool_call_errors", "finish_reason", "usage", "timings"]);
    expect(chat.usage).toEqual({ prompt_tokens: chat.prompt_ids.length, completion_tokens: chat.ids.length });
    const describeArgs = ["describe", "--model", VL_MODEL, IMAGE, "--max-tokens", "3", ...FAST];
    const described = runLfmJson<ReplyJson>([...describeArgs, "--json"]);
    expect(Object.keys(described)).toEqual(["prompt_ids", "ids", "text", "finish_reason", "usage", "timings"]);
    expect(described.usage).toEqual({ prompt_tokens: described.prompt_ids.length, completion_tokens: described.ids.length });
    for (const args of [["chat", "--model", MODEL, "--message", "Status of pump 7?", "--max-tokens", "4", ...FAST], describeArgs]) {
      const r = runLfm(args);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr, args[0]).toMatch(SUMMARY);
    }
  });

  it("Ctrl-C during a streamed reply: the line ends, the summary says cancelled, exit 130", async () => {
    const child = spawn(process.execPath, [LFM_BIN, "generate", "--model", MODEL, "--prompt", "The pump", "--max-tokens", "4000", ...FAST], {
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    await new Promise<void>((resolve) => {
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        if (stdout.length > "The pump".length) resolve();
      });
    });
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    expect(stdout.endsWith("\n")).toBe(true);
    expect(SUMMARY.exec(stderr)?.[2], stderr).toBe("cancelled");
    expect(stderr).toMatch(/^error \[ABORTED\]/m);
  });
});

describe("control characters in generated and decoded text", () => {
  it("are shown as escapes on a terminal and kept byte for byte otherwise", () => {
    expect(textForStream("red \x1b[31mX\x1b[0m\n", true)).toBe("red \\x1b[31mX\\x1b[0m\n");
    expect(textForStream("red \x1b[31mX\x1b[0m\n", false)).toBe("red \x1b[31mX\x1b[0m\n");
    expect(textForStream("red \x1b[31mX\x1b[0m\n", undefined)).toBe("red \x1b[31mX\x1b[0m\n");
  });

  it("lfm tokenize --decode and lfm generate on a pseudo-terminal show \\x1b; in a pipe the bytes stay", async () => {
    const tokenizer = await Lfm2Tokenizer.fromDir(MODEL);
    const ids = tokenizer.encode("\x1b[31mred\x1b[0m", { addSpecialTokens: false });
    expect(tokenizer.decode(ids)).toBe("\x1b[31mred\x1b[0m");
    const onTerminal = (args: string[]) => {
      const r = spawnSync("python3", [join(import.meta.dirname, "..", "helpers", "pty-run.py"), "60", process.execPath, LFM_BIN, ...args], {
        encoding: "utf8",
        timeout: 90_000,
        env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      });
      expect(r.status, r.stderr).toBe(0);
      const { status, output } = JSON.parse(r.stdout) as { status: number; output: string };
      const text = Buffer.from(output, "hex").toString("utf8");
      expect(status, text).toBe(0);
      return text;
    };

    const decode = ["tokenize", "--model", MODEL, "--decode", ids.join(",")];
    expect(onTerminal(decode)).toBe("\\x1b[31mred\\x1b[0m\r\n"); // the terminal turns \n into \r\n
    expect(runLfm(decode).stdout).toBe("\x1b[31mred\x1b[0m\n");

    const generate = ["generate", "--model", MODEL, "--prompt-ids", [tokenizer.bosTokenId, ...ids].join(","), "--max-tokens", "3", ...FAST];
    const shown = onTerminal(generate);
    expect(shown).toContain("\\x1b[31mred\\x1b[0m"); // the echoed prompt (after dim loading lines on stderr)
    expect(shown).not.toContain("\x1b[31m");
    expect(shown).toMatch(/\x1b\[2m\d+ tokens?, .*finish: (stop|length)\x1b\[0m/); // our own dim summary line
    expect(runLfm(generate).stdout.startsWith("\x1b[31mred\x1b[0m")).toBe(true);
  });
});
