import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { LFM_BIN, runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE, readJson } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "text/tiny-lfm2");

interface TextReference {
  tokenize: Array<{ text: string; ids: number[]; ids_no_special: number[] }>;
  chat: Array<{ messages: unknown[]; tools?: unknown[]; add_generation_prompt: boolean; ids: number[] }>;
  greedy: { prompt_ids: number[]; new_ids: number[] };
}
const ref = readJson<TextReference>("text/reference.json");

describe("lfm CLI (scriptable contract)", () => {
  it("--help lists the commands and exits 0", () => {
    const r = runLfm(["--help"]);
    expect(r.status).toBe(0);
    for (const c of ["tokenize", "generate", "chat"]) expect(r.stdout).toContain(c);
    expect(runLfm(["generate", "--help"]).stdout).toContain("--prompt-ids");
  });

  it("tokenize --json prints the HF ids, with and without special tokens", () => {
    const c = ref.tokenize[2];
    expect(runLfmJson(["tokenize", "--model", MODEL, "--json", c.text])).toEqual({ ids: c.ids });
    expect(runLfmJson(["tokenize", "--model", MODEL, "--no-special", "--json", c.text])).toEqual({ ids: c.ids_no_special });
  });

  it("generate --prompt-ids greedy reproduces HF generate", async () => {
    const out = runLfmJson<{ prompt_ids: number[]; ids: number[]; text: string }>([
      "generate", "--model", MODEL, "--prompt-ids", ref.greedy.prompt_ids.join(","),
      "--max-tokens", String(ref.greedy.new_ids.length), "--temperature", "0", "--precision", "fp32", "--json",
    ]);
    expect(out.prompt_ids).toEqual(ref.greedy.prompt_ids);
    expect(out.ids).toEqual(ref.greedy.new_ids);
    // The text is those ids decoded as the library does (special tokens skipped), not the prompt's or a raw decode.
    const decoded = (await Lfm2Tokenizer.fromDir(MODEL)).decode(ref.greedy.new_ids, { skipSpecialTokens: true });
    expect(decoded.length).toBeGreaterThan(0);
    expect(out.text).toBe(decoded);
  });

  it("chat --messages/--tools renders the template exactly as HF (prompt_ids)", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-cli-"));
    for (const [i, c] of ref.chat.entries()) {
      if (!c.add_generation_prompt) continue;
      const messages = join(dir, `m${i}.json`);
      writeFileSync(messages, JSON.stringify(c.messages));
      const args = ["chat", "--model", MODEL, "--messages", messages, "--max-tokens", "4", "--temperature", "0", "--precision", "fp32", "--json"];
      if (c.tools) {
        writeFileSync(join(dir, `t${i}.json`), JSON.stringify(c.tools));
        args.push("--tools", join(dir, `t${i}.json`));
      }
      const out = runLfmJson<{ prompt_ids: number[]; ids: number[] }>(args);
      expect(out.prompt_ids, `chat case ${i}`).toEqual(c.ids);
      expect(out.ids.length).toBeLessThanOrEqual(4);
    }
  });

  it("chat --message with --system builds the conversation", () => {
    const out = runLfmJson<{ prompt_ids: number[] }>(["chat", "--model", MODEL, "--system", "You are a field assistant.", "--message", "Hi", "--max-tokens", "1", "--json"]);
    const c = ref.chat[1];
    // The fixture conversation starts with the same system turn and user "Hi".
    expect(out.prompt_ids.slice(0, 20)).toEqual(c.ids.slice(0, 20));
  });

  it("profile --json reports each phase's time by block type, and leaves no files behind", () => {
    interface Phase {
      wallMs: number;
      kernelMs: Record<string, number>;
      topOps: Array<{ op: string; ms: number }>;
      overheadMs: number;
    }
    // Its own temporary folder, to see what the profiler (and onnxruntime) leave there.
    const tmp = mkdtempSync(join(tmpdir(), "lfm-profile-"));
    const r = spawnSync(process.execPath, [LFM_BIN, "profile", "--model", MODEL, "--prompt-tokens", "24", "--decode-steps", "3", "--threads", "2", "--json"], {
      encoding: "utf8",
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE, TMPDIR: tmp },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { promptTokens: number; decodeSteps: number; prefill: Phase; decode: Phase; peakRssMb: number };
    expect([out.promptTokens, out.decodeSteps]).toEqual([24, 3]);
    for (const phase of [out.prefill, out.decode]) {
      expect(Object.keys(phase.kernelMs)).toEqual(["conv", "attention", "ffn", "head", "embedding", "other"]);
      const kernels = Object.values(phase.kernelMs).reduce((a, b) => a + b, 0);
      // The tiny model has conv, attention and FFN layers and a head: each takes some time.
      for (const block of ["conv", "attention", "ffn", "head"]) expect(phase.kernelMs[block], block).toBeGreaterThan(0);
      expect(kernels + phase.overheadMs).toBeCloseTo(phase.wallMs, 1);
      expect(phase.topOps.length).toBeGreaterThan(0);
    }
    expect(out.peakRssMb).toBeGreaterThan(0);
    // Neither the profiler's JSON nor onnxruntime's empty mat-debug-<pid>.log (tsx's cache and a
    // .ses id file are not ours).
    expect(readdirSync(tmp).filter((f) => f.startsWith("lfm-profile") || f.startsWith("mat-debug"))).toEqual([]);
  });

  it("bad input exits 2 with a typed error, never a stack trace", () => {
    const cases: Array<[string[], string]> = [
      [["frobnicate"], "INVALID_ARGUMENT"],
      [["generate", "--model", "/nonexistent/model", "--prompt", "hi"], "MODEL_NOT_FOUND"],
      [["generate", "--model", MODEL, "--prompt-ids", "1,x"], "INVALID_ARGUMENT"],
      [["generate", "--model", MODEL, "--prompt", "hi", "--max-tokens", "abc"], "INVALID_ARGUMENT"],
      [["generate", "--model", MODEL, "--prompt", "hi", "--precision", "q3"], "INVALID_ARGUMENT"],
      [["generate", "--model", MODEL, "--prompt", ""], "EMPTY_PROMPT"],
      [["generate", "--model", MODEL, "--prompt", "hi", "--top-p", "0"], "INVALID_ARGUMENT"],
      [["generate", "--model", MODEL, "--bogus-flag"], "INVALID_ARGUMENT"],
      [["chat", "--model", MODEL, "--messages", "/nonexistent.json"], "FILE_NOT_FOUND"],
    ];
    for (const [args, code] of cases) {
      const r = runLfm(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toContain(`[${code}]`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("chat rejects a messages file that is not a list of messages", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-cli-"));
    writeFileSync(join(dir, "bad.json"), JSON.stringify({ role: "user" }));
    const r = runLfm(["chat", "--model", MODEL, "--messages", join(dir, "bad.json"), "--json"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("[INVALID_ARGUMENT]");
  });

  it("stops quietly when the reader of its output goes away (lfm … | head)", async () => {
    const child = spawn(process.execPath, [LFM_BIN, "generate", "--model", MODEL, "--prompt", "The pump", "--max-tokens", "400"], {
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    // Read the first chunk of text, then close the pipe, as `head -c` would.
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stderr).not.toMatch(/EPIPE|Unhandled|internal error/);
    expect(code).toBe(0);
  });
});
