/**
 * How commands take their text: from a flag, a file (--prompt-file, --message-file, --messages,
 * --document-file, --text-file) or standard input — exactly one source each, files that are
 * regular UTF-8 text of bounded size, and argument errors in lfm's words before anything else is
 * printed. A 200 KB prompt used to be possible only on the command line (and once crashed there).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runLfm } from "../helpers/cli.ts";
import { FIXTURES } from "../helpers/reference.ts";

const TINY = join(FIXTURES, "text/tiny-lfm2");
const COLBERT = join(FIXTURES, "retrieval/tiny-lfm2-colbert");
const IMAGE = join(FIXTURES, "vision/images/photo_320x240.jpg");
const VL = join(FIXTURES, "vision/tiny-lfm2-vl");
const scratch = mkdtempSync(join(tmpdir(), "input-sources-"));

/** 200 KB of text: far past the tiny model's 4096-token context. */
const LONG = "pump valve ".repeat(20_000).slice(0, 200_000);

function file(name: string, content: string | Uint8Array): string {
  const path = join(scratch, name);
  writeFileSync(path, content);
  return path;
}

interface Json {
  prompt_ids: number[];
  ids: number[];
  embeddings?: number[][];
}

function json(args: string[], input?: string): Json {
  const r = runLfm([...args, "--json"], { input });
  expect(r.status, `lfm ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as Json;
}

function expectError(r: { status: number | null; stdout: string; stderr: string }, code: string, message: string | RegExp): void {
  expect(r.status, r.stderr).toBe(2);
  expect(r.stderr).toMatch(new RegExp(`^error \\[${code}\\]: `, "m"));
  if (typeof message === "string") expect(r.stderr).toContain(message);
  else expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at |ambiguous|ERR_PARSE_ARGS|internal error/);
}

const GENERATE = ["generate", "--model", TINY, "--max-tokens", "2", "--temperature", "0"];
const CHAT = ["chat", "--model", TINY, "--max-tokens", "2", "--temperature", "0"];

describe("a long prompt without the command line", () => {
  it("200 KB through --prompt-file, --prompt-file - and a pipe reaches the model whole (PROMPT_TOO_LONG, no crash)", () => {
    const long = file("long.txt", LONG);
    for (const [args, input] of [
      [["--prompt-file", long], undefined],
      [["--prompt-file", "-"], LONG],
      [[], LONG],
    ] as const) {
      const r = runLfm([...GENERATE, ...args, "--json"], { input });
      // Every token of it was counted: more than the context, not a truncated read.
      expectError(r, "PROMPT_TOO_LONG", /the prompt has \d{5,} tokens but the model's context is 4096/);
    }
  });

  it("200 KB as a chat message from --message-file and from a pipe reaches the model whole", () => {
    const long = file("long-message.txt", LONG);
    expectError(runLfm([...CHAT, "--message-file", long, "--json"]), "PROMPT_TOO_LONG", /the prompt has \d{5,} tokens/);
    expectError(runLfm([...CHAT, "--json"], { input: LONG }), "PROMPT_TOO_LONG", /the prompt has \d{5,} tokens/);
  });
});

describe("every source gives the same prompt", () => {
  it("generate: --prompt, prompt words, --prompt-file (BOM and final line break dropped), - and a pipe", () => {
    const want = json([...GENERATE, "--prompt", "The pump"]).prompt_ids;
    expect(json([...GENERATE, "The", "pump"]).prompt_ids).toEqual(want);
    expect(json([...GENERATE, "--prompt-file", file("bom.txt", "\uFEFFThe pump\n")]).prompt_ids).toEqual(want);
    expect(json([...GENERATE, "--prompt-file", file("crlf.txt", "The pump\r\n")]).prompt_ids).toEqual(want);
    expect(json([...GENERATE, "--prompt-file", "-"], "The pump\n").prompt_ids).toEqual(want);
    expect(json(GENERATE, "The pump\n").prompt_ids).toEqual(want);
    // Only one final line break goes: the rest of the text is the user's.
    expect(json([...GENERATE, "--prompt-file", file("two.txt", "The pump\n\n")]).prompt_ids).toEqual(json([...GENERATE, "--prompt", "The pump\n"]).prompt_ids);
  });

  it("generate ignores standard input when a prompt flag is given", () => {
    expect(json([...GENERATE, "--prompt", "The pump"], "something else").prompt_ids).toEqual(json([...GENERATE, "--prompt", "The pump"]).prompt_ids);
  });

  it("chat: --message, --message-file, a pipe; --messages FILE and --messages -", () => {
    const want = json([...CHAT, "--system", "Be brief.", "--message", "Status of pump 7?"]).prompt_ids;
    expect(json([...CHAT, "--system", "Be brief.", "--message-file", file("m.txt", "Status of pump 7?\n")]).prompt_ids).toEqual(want);
    expect(json([...CHAT, "--system", "Be brief."], "Status of pump 7?\n").prompt_ids).toEqual(want);
    const conversation = JSON.stringify([{ role: "system", content: "Be brief." }, { role: "user", content: "Status of pump 7?" }]);
    expect(json([...CHAT, "--messages", file("conv.json", conversation)]).prompt_ids).toEqual(want);
    expect(json([...CHAT, "--messages", "-"], conversation).prompt_ids).toEqual(want);
  });

  it("describe and an LFM2-VL chat: --prompt-file, --message-file and a pipe match --prompt", () => {
    const vl = ["--model", VL, "--max-tokens", "1", "--temperature", "0"];
    const want = json(["describe", ...vl, IMAGE, "--prompt", "Which gauge?"]).prompt_ids;
    expect(json(["describe", ...vl, IMAGE, "--prompt-file", file("q.txt", "Which gauge?\n")]).prompt_ids).toEqual(want);
    expect(json(["chat", ...vl, "--image", IMAGE, "--message-file", "-"], "Which gauge?\n").prompt_ids).toEqual(want);
    expect(json(["chat", ...vl, "--image", IMAGE], "Which gauge?").prompt_ids).toEqual(want);
  });

  it("encode: --document-file and --query-file - match --document and --query", () => {
    const enc = ["encode", "--model", COLBERT];
    expect(json([...enc, "--document-file", file("doc.txt", "Pump 7 lost pressure.\n")]).embeddings).toEqual(json([...enc, "--document", "Pump 7 lost pressure."]).embeddings);
    expect(json([...enc, "--query-file", "-"], "which pump?").embeddings).toEqual(json([...enc, "--query", "which pump?"]).embeddings);
  });
});

describe("exactly one source", () => {
  const prompt = file("p.txt", "The pump");
  it("two sources of one text are INVALID_ARGUMENT naming both, before anything is read or loaded", () => {
    const cases: Array<[string[], string]> = [
      [[...GENERATE, "--prompt", "a", "--prompt-file", prompt], "--prompt and --prompt-file"],
      [[...GENERATE, "--prompt", "a", "--prompt-ids", "1,2"], "--prompt and --prompt-ids"],
      [[...GENERATE, "--prompt-file", prompt, "more", "words"], "--prompt-file and prompt words"],
      [[...CHAT, "--message", "a", "--message-file", prompt], "--message and --message-file"],
      [[...CHAT, "--messages", "-", "--message-file", "-"], "--messages - and --message-file -"],
      [["encode", "--model", COLBERT, "--query", "a", "--document-file", prompt], "--query and --document-file"],
      [["describe", IMAGE, "--prompt", "a", "--message-file", prompt], "--prompt and --message-file"],
      [["speak", "--text", "a", "--text-file", prompt, "--out", join(scratch, "x.wav")], "--text and --text-file"],
    ];
    for (const [args, named] of cases) {
      const r = runLfm(args, { input: "piped" });
      expectError(r, "INVALID_ARGUMENT", named);
      expect(r.stdout).toBe("");
    }
  });

  it("no source at all (an empty pipe) is INVALID_ARGUMENT listing the ways to give one", () => {
    expectError(runLfm(GENERATE, { input: "" }), "INVALID_ARGUMENT", /--prompt-file F.*standard input \(it was empty\)/);
    expectError(runLfm([...CHAT, "--json"], { input: "" }), "INVALID_ARGUMENT", /--message-file F.*standard input \(it was empty\)/);
  });
});

describe("files that are not text files", () => {
  it("a folder, a device, a FIFO, a missing file, non-UTF-8 bytes, and more than 16 MiB are refused at once", () => {
    const folder = join(scratch, "folder");
    mkdirSync(folder);
    const fifo = join(scratch, "fifo");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const latin1 = file("latin1.txt", Uint8Array.from([0x50, 0x75, 0x6d, 0x70, 0xe9, 0x0a])); // "Pumpé" in Latin-1
    const huge = join(scratch, "huge.txt");
    writeFileSync(huge, "");
    truncateSync(huge, 17 * 1024 * 1024); // sparse: nothing written
    const cases: Array<[string[], string, string | RegExp]> = [
      [[...GENERATE, "--prompt-file", folder], "INVALID_ARGUMENT", `--prompt-file ${folder} is a folder; give a regular file`],
      [[...GENERATE, "--prompt-file", "/dev/zero"], "INVALID_ARGUMENT", "--prompt-file /dev/zero is a device"],
      [[...GENERATE, "--prompt-file", fifo], "INVALID_ARGUMENT", `--prompt-file ${fifo} is a pipe`],
      [[...GENERATE, "--prompt-file", join(scratch, "missing.txt")], "FILE_NOT_FOUND", "no such file"],
      [[...GENERATE, "--prompt-file", latin1], "INVALID_ARGUMENT", "is not UTF-8 text"],
      [[...GENERATE, "--prompt-file", huge], "INVALID_ARGUMENT", /is 17\.0 MiB, over the 16 MiB limit for text/],
      [[...CHAT, "--messages", "/dev/zero"], "INVALID_ARGUMENT", "is a device"],
      [[...CHAT, "--messages", folder], "INVALID_ARGUMENT", "is a folder"],
      [["encode", "--model", COLBERT, "--document-file", fifo], "INVALID_ARGUMENT", "is a pipe"],
    ];
    for (const [args, code, message] of cases) {
      const r = runLfm(args, { timeoutMs: 30_000 });
      expectError(r, code, message);
      expect(r.stdout).toBe("");
    }
  });

  it("more than 16 MiB on standard input is refused", () => {
    const r = runLfm(GENERATE, { input: "x".repeat(16 * 1024 * 1024 + 1) });
    expectError(r, "INVALID_ARGUMENT", "the prompt (standard input) is over the 16 MiB limit for text.");
  });
});

describe("arguments in lfm's words", () => {
  it("a negative number after a flag is its value: refused for its range, a valid one (a prompt) used", () => {
    expectError(runLfm([...GENERATE, "--prompt", "a", "--seed", "-1"]), "INVALID_ARGUMENT", '--seed must be a whole number from 0 to 4294967295; got "-1".');
    expectError(runLfm([...GENERATE, "--prompt", "a", "--temperature", "-0.5"]), "INVALID_ARGUMENT", '--temperature must be a number from 0 to 100; got "-0.5".');
    expect(json([...GENERATE, "--prompt", "-5"]).prompt_ids).toEqual(json([...GENERATE, "--prompt=-5"]).prompt_ids);
  });

  it("a flag where a value belongs, an unknown flag, a value on a switch, a missing value", () => {
    const cases: Array<[string[], string]> = [
      [[...GENERATE, "--prompt", "--json"], '--prompt needs a value, but "--json" follows it; to give a value that starts with "-", write --prompt=--json'],
      [[...GENERATE, "--prompt", "a", "--max-token", "3"], "unknown flag --max-token (did you mean --max-tokens?)"],
      [[...GENERATE, "--prompt", "a", "--json=yes"], "--json takes no value"],
      [[...GENERATE, "--prompt"], "--prompt needs a value"],
      [[...GENERATE, "--prompt", "a", "-5"], '"-5" is not a flag'],
      [["search", "--index", scratch, "-x", "q"], "unknown flag -x"],
    ];
    for (const [args, message] of cases) {
      const r = runLfm(args);
      expectError(r, "INVALID_ARGUMENT", message);
      expect(r.stdout).toBe("");
    }
  });

  it("a bad flag after a prompt echoes nothing and loads nothing", () => {
    const cache = mkdtempSync(join(tmpdir(), "input-cache-"));
    for (const extra of [["--json-object", "--regex", "a"], ["--stop", "x"], ["--precision", "q3"], ["--threads", "0"]]) {
      const r = runLfm(["generate", "--prompt", "ECHO-MARK", ...extra], { env: { LFM_CACHE_DIR: cache } });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).not.toMatch(/ECHO-MARK|no --model given/);
    }
    expect(readdirSync(cache)).toEqual([]);
  });
});
