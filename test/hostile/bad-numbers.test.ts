/**
 * Numbers a clumsy user gives: thread counts, every numeric flag of every command outside its
 * stated range, token ids outside the vocabulary, weights that are NaN.
 */
import { copyFileSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeSafetensors } from "../../bench/safetensors-writer.ts";
import { COMMANDS } from "../../cli/commands.ts";
import { withFlagNames } from "../../cli/flags.ts";
import { isLfmError } from "../../text-core/errors.ts";
import { TextModel } from "../../text-core/model.ts";
import { SafetensorsFile } from "../../text-core/safetensors.ts";
import { runLfm } from "../helpers/cli.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const TINY = join(FIXTURES, "text/tiny-lfm2");
const CLIP = join(FIXTURES, "audio/clips/speech_en_16k.wav");
const IMAGE = join(FIXTURES, "vision/images/photo_320x240.jpg");

/** The ranges the help texts and README state, as a user reads them in the error. */
const SAMPLING_RANGES: Array<[flag: string, range: string, bad: string[]]> = [
  ["max-tokens", "a whole number from 0 to 1000000", ["-1", "1000001", "2.5", "many"]],
  ["temperature", "a number from 0 to 100", ["-0.5", "101", "warm", "Infinity"]],
  ["top-k", "a whole number from 0 to 1000000", ["-1", "1000001", "1.5"]],
  ["top-p", "a number above 0 and at most 1", ["0", "1.01", "-0.1", "NaN"]],
  ["min-p", "a number from 0 to 1", ["-0.1", "1.5"]],
  ["repetition-penalty", "a number above 0 and at most 100", ["0", "-1", "101"]],
  ["seed", "a whole number from 0 to 4294967295", ["-1", "4294967296", "1.5", "0x"]],
];

const AUDIO_SAMPLING: Array<[flag: string, range: string, bad: string[]]> = [
  ["temperature", "a number from 0 to 100", ["-1", "101"]],
  ["top-k", "a whole number from 1 to 1000000", ["0", "1000001"]],
  ["seed", "a whole number from 0 to 4294967295", ["-1", "4294967296"]],
];

function command(name: string) {
  const found = COMMANDS.find((c) => c.name === name);
  if (!found) throw new Error(`no command ${name}`);
  return found;
}

/** Every numeric flag of every command: [command, arguments that are otherwise fine, flag, stated range, values out of it]. */
function numericCases(): Array<[string, string[], string, string, string[]]> {
  const scratch = mkdtempSync(join(tmpdir(), "bad-numbers-"));
  const doc = join(scratch, "doc.txt");
  writeFileSync(doc, "pump seven");
  const index = join(scratch, "index");
  const wav = join(scratch, "out.wav");
  return [
    ...SAMPLING_RANGES.map(([flag, range, bad]): [string, string[], string, string, string[]] => ["generate", ["--model", TINY, "--prompt", "pump"], flag, range, bad]),
    ...SAMPLING_RANGES.map(([flag, range, bad]): [string, string[], string, string, string[]] => ["chat", ["--model", TINY, "--message", "hi"], flag, range, bad]),
    ...SAMPLING_RANGES.map(([flag, range, bad]): [string, string[], string, string, string[]] => ["describe", [IMAGE], flag, range, bad]),
    ["describe", [IMAGE], "max-input-pixels", "a whole number from 1 to 10000000000", ["0", "-5", "10000000001", "2.5"]],
    ["transcribe", [CLIP], "max-tokens", "a whole number from 1 to 1000000", ["0", "1000001"]],
    ["transcribe", [CLIP], "chunk-seconds", "a number above 0 and at most 600", ["0", "-1", "601"]],
    ["transcribe", [CLIP], "overlap-seconds", "a number from 0 to 300", ["-1", "301"]],
    ["transcribe", [CLIP], "max-minutes", "a number above 0 and at most 1440", ["0", "-1", "1441"]],
    ["speak", ["--text", "Hi", "--out", wav], "max-frames", "a whole number from 1 to 1000000", ["0", "1000001"]],
    ...AUDIO_SAMPLING.map(([flag, range, bad]): [string, string[], string, string, string[]] => ["speak", ["--text", "Hi", "--out", wav], flag, range, bad]),
    ["audio-chat", ["--audio", CLIP], "max-tokens", "a whole number from 1 to 1000000", ["0", "1000001"]],
    ...AUDIO_SAMPLING.map(([flag, range, bad]): [string, string[], string, string, string[]] => ["audio-chat", ["--audio", CLIP], flag, range, bad]),
    ["audio-chat", ["--audio", CLIP], "audio-temperature", "a number from 0 to 100", ["-0.5", "101"]],
    ["audio-chat", ["--audio", CLIP], "audio-top-k", "a whole number from 1 to 1000000", ["0"]],
    ["audio-chat", ["--audio", CLIP], "max-minutes", "a number above 0 and at most 1440", ["0", "1441"]],
    ["index", ["add", "--index", index, doc], "chunk-tokens", "a whole number from 1 to 100000", ["0", "100001"]],
    ["index", ["add", "--index", index, doc], "overlap-tokens", "a whole number from 0 to 99999", ["-1", "100000"]],
    ["index", ["add", "--index", index, doc], "commit-every", "a whole number from 1 to 1000000", ["0", "1000001"]],
    ["search", ["--index", index, "pump"], "k", "a whole number from 1 to 10000", ["0", "10001", "-3"]],
    ["cache", ["prune", "--cache-dir", scratch], "unused-days", "a number from 0 to 36500", ["-1", "36501"]],
    ["profile", ["--model", TINY], "prompt-tokens", "a whole number from 1 to 131072", ["0", "131073"]],
    ["profile", ["--model", TINY], "decode-steps", "a whole number from 1 to 131072", ["0", "131073"]],
    ["serve", [], "port", "a whole number from 0 to 65535", ["-1", "65536", "1.5", "http"]],
    ["serve", [], "max-queue", "a whole number from 0 to 100000", ["-1", "100001"]],
    ["serve", [], "timeout", "a whole number from 0 to 604800", ["-1", "604801", "2.5"]],
    ["bench", [], "runs", "a whole number from 1 to 100", ["0", "101"]],
    ["bench", [], "prompt", "a whole number from 1 to 131072", ["0"]],
    ["bench", ["--prompt", "512", "--decode", "128"], "context", "a whole number from 641 to 262145", ["640"]],
  ];
}

describe("numbers out of range", () => {
  it("--threads 1000 (and 0, -1, 2.5) is INVALID_ARGUMENT at once, before any graph is built", () => {
    const cache = mkdtempSync(join(tmpdir(), "threads-cache-"));
    for (const threads of ["1000", "0", "-1", "2.5"]) {
      const r = runLfm(["generate", "--prompt", "pump", "--max-tokens", "1", `--threads=${threads}`], { env: { LFM_CACHE_DIR: cache } });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: .*--threads/m);
    }
    expect(readdirSync(cache)).toEqual([]);
  });

  it("every numeric flag of every command refuses a value outside its stated range, naming flag and range, before any work", async () => {
    const cases = numericCases();
    const flagged = new Set(cases.map(([name, , flag]) => `${name} ${flag}`));
    // A numeric flag added later without a case here fails this first.
    for (const [name, , flag] of cases) expect(Object.hasOwn(command(name).options, flag), `${name} --${flag}`).toBe(true);
    for (const [name, base, flag, range, bad] of cases) {
      for (const value of bad) {
        // The value as its own argument: negative numbers are read as the flag's value, not as flags.
        const written = flag.length === 1 ? `-${flag}` : `--${flag}`;
        await expectCode(
          command(name).run([...base, written, value], new AbortController().signal),
          "INVALID_ARGUMENT",
          `${written} must be ${range}; got "${value}"`,
        );
      }
    }
    expect(flagged.size).toBeGreaterThan(30);
  });

  it("--overlap-tokens at or above --chunk-tokens is refused with both flags named", async () => {
    await expectCode(command("index").run(["add", "--index", join(tmpdir(), "never-made"), "--chunk-tokens", "8", "--overlap-tokens", "8", TINY], new AbortController().signal), "INVALID_ARGUMENT", "--overlap-tokens must be below --chunk-tokens (8)");
  });

  it("the ends of each generation range are accepted", () => {
    const r = runLfm(["generate", "--model", TINY, "--prompt", "pump", "--max-tokens", "1", "--temperature", "100", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--repetition-penalty", "100", "--seed", "4294967295", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { ids: number[] }).ids).toHaveLength(1);
  });

  it("an out-of-range number prints only the error: no echoed prompt, no model note, no graph built", () => {
    const cache = mkdtempSync(join(tmpdir(), "range-cache-"));
    for (const args of [["--temperature", "-0.5"], ["--top-p", "2"], ["--seed", "-1"], ["--max-tokens", "1e9"]]) {
      // Without --model: the bundled-model note on stderr would come before a late check.
      const r = runLfm(["generate", "--prompt", "ECHO-MARK", ...args], { env: { LFM_CACHE_DIR: cache } });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(new RegExp(`^error \\[INVALID_ARGUMENT\\]: ${args[0]} must be .*; got "${args[1].replace(".", "\\.")}"\\.$`, "m"));
      expect(r.stderr).not.toMatch(/ambiguous|ERR_PARSE_ARGS|no --model given|ECHO-MARK/);
    }
    expect(readdirSync(cache)).toEqual([]);
  });

  it("library option names in errors become the flags a CLI user gives", () => {
    expect(withFlagNames("raise maxInputPixels if the memory is there")).toBe("raise --max-input-pixels if the memory is there");
    expect(withFlagNames("topP must be in (0, 1]; topKey stays")).toBe("--top-p must be in (0, 1]; topKey stays");
    const r = runLfm(["transcribe", "--model", join(FIXTURES, "audio/tiny-lfm2-audio"), CLIP, "--max-minutes", "0.01"]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error \[AUDIO_TOO_LONG\]: .*\(--max-minutes\)/m);
    expect(r.stderr).not.toContain("maxSeconds");
  });

  it("lfm tokenize --decode with an id beyond the vocabulary is INVALID_ARGUMENT naming it", () => {
    const r = runLfm(["tokenize", "--decode", "1,5000,6"]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --decode: 5000 is not a token id/m);
    expect(r.stdout).toBe("");
  });

  it("lfm generate --prompt-ids with an id beyond the vocabulary is INVALID_ARGUMENT naming the flag, with nothing echoed", () => {
    const r = runLfm(["generate", "--model", TINY, "--prompt-ids", "1,5000,6", "--max-tokens", "1"]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --prompt-ids: 5000 is not a token id/m);
    expect(r.stdout).toBe("");
  });
});

describe("weights that are all NaN", () => {
  const dir = mkdtempSync(join(tmpdir(), "nan-weights-"));
  for (const f of readdirSync(TINY)) if (f !== "model.safetensors") copyFileSync(join(TINY, f), join(dir, f));
  const source = SafetensorsFile.open(join(TINY, "model.safetensors"));
  writeSafetensors(
    join(dir, "model.safetensors"),
    source.names().map((name) => {
      const { shape } = source.info(name);
      return { name, dtype: "F32" as const, shape, data: new Uint8Array(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(Number.NaN).buffer) };
    }),
  );
  source.close();

  it("generation is NON_FINITE_LOGITS, not token 0 forever", async () => {
    const model = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision: "fp32", threads: 1 });
    try {
      let error: unknown;
      try {
        await model.complete(model.encodePrompt("pump"), { maxTokens: 8 });
      } catch (e) {
        error = e;
      }
      expect(isLfmError(error, "NON_FINITE_LOGITS")).toBe(true);
      await expect(model.complete(model.encodePrompt("pump"), { maxTokens: 8, temperature: 1, seed: 3 })).rejects.toMatchObject({ code: "NON_FINITE_LOGITS" });
    } finally {
      await model.release();
    }
    const r = runLfm(["generate", "--model", dir, "--prompt", "pump", "--max-tokens", "8"]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error \[NON_FINITE_LOGITS\]/m);
  });
});
