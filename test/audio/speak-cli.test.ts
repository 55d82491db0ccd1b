import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import wavefile from "wavefile";
import { describe, expect, it } from "vitest";
import { MimiDecoder } from "../../audio/mimi-decoder.ts";
import { speakCommand } from "../../cli/speak.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { interruptOnceAudioWritten, runLfm } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import type { LfmErrorCode } from "../../text-core/errors.ts";
import { expectCode } from "../helpers/errors.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
const MIMI = join(FIXTURES, "audio/tiny-mimi");

function readWav(path: string) {
  const wav = new wavefile.WaveFile(readFileSync(path));
  return { fmt: wav.fmt as { sampleRate: number; numChannels: number; bitsPerSample: number }, samples: wav.getSamples(false, Int16Array) as unknown as Int16Array };
}

const errorCode = (stderr: string) => /error \[([A-Z_]+)\]/.exec(stderr)?.[1];

describe("lfm speak", () => {
  it("speaks into a 24 kHz mono WAV whose samples are Mimi's decode of the printed codes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "speak-cli-"));
    const out = join(dir, "hello.wav");
    const r = runLfm([
      "speak", "--model", MODEL, "--mimi", MIMI, "--text", "Hello there.", "--out", out,
      "--max-frames", "12", "--force-audio-start", "--temperature", "0", "--precision", "fp32", "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { out: string; sample_rate: number; frames: number; seconds: number; prompt_ids: number[]; text_ids: number[]; codes: number[][] };
    expect(json).toMatchObject({ out, sample_rate: 24000, frames: 12, seconds: 0.96, text_ids: [128] });
    // liquid-audio's TTS prompt, each piece tokenised on its own
    const tokenizer = await Lfm2Tokenizer.fromDir(MODEL);
    const pieces = ["<|startoftext|>", "<|im_start|>system\n", "Perform TTS.", "<|im_end|>\n", "<|im_start|>user\n", "Hello there.", "<|im_end|>\n", "<|im_start|>assistant\n"];
    expect(json.prompt_ids).toEqual(pieces.flatMap((p) => tokenizer.encode(p, { addSpecialTokens: false })));
    expect(json.codes).toHaveLength(12);
    const { fmt, samples } = readWav(out);
    expect(fmt).toMatchObject({ sampleRate: 24000, numChannels: 1, bitsPerSample: 16 });
    expect(samples.length).toBe(12 * 1920);
    const mimi = await MimiDecoder.load(MIMI, { cacheDir: TEST_CACHE, threads: 2 });
    const wave = await mimi.decode(json.codes);
    let worst = 0;
    for (let i = 0; i < wave.length; i++) {
      const s = Math.max(-1, Math.min(1, wave[i]));
      worst = Math.max(worst, Math.abs(samples[i] - (s < 0 ? s * 32768 : s * 32767)));
    }
    expect(worst).toBeLessThanOrEqual(0.5); // 16-bit rounding only
    await mimi.release();
    expect(readdirSync(dir)).toEqual(["hello.wav"]);
    // greedy is deterministic: the same codes again
    const again = JSON.parse(runLfm(["speak", "--model", MODEL, "--mimi", MIMI, "--text", "Hello there.", "--out", out, "--max-frames", "12", "--force-audio-start", "--temperature", "0", "--precision", "fp32", "--json"]).stdout);
    expect(again.codes).toEqual(json.codes);
  });

  it("writes nothing and says so when the model never starts speaking (the tiny model left to choose)", () => {
    const dir = mkdtempSync(join(tmpdir(), "speak-cli-"));
    const r = runLfm(["speak", "--model", MODEL, "--mimi", MIMI, "--text", "Hello.", "--out", join(dir, "x.wav"), "--max-frames", "4", "--temperature", "0"]);
    expect(r.status).toBe(2);
    expect(errorCode(r.stderr)).toBe("AUDIO_NOT_GENERATED");
    expect(r.stderr).toContain("--force-audio-start");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("refuses bad input with typed errors and leaves no file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "speak-cli-"));
    const out = join(dir, "x.wav");
    const cases: [string[], LfmErrorCode][] = [
      [["--out", out], "EMPTY_TEXT"],
      [["--text", "   ", "--out", out], "EMPTY_TEXT"],
      [["--text", "Hi"], "INVALID_ARGUMENT"],
      [["--text", "Hi", "--out", out, "--max-frames", "0"], "INVALID_ARGUMENT"],
      [["--text", "Hi", "--out", out, "--temperature", "hot"], "INVALID_ARGUMENT"],
      [["--text", "Hi", "--out", out, "--mimi", join(dir, "no-mimi-here")], "FILE_NOT_FOUND"],
      [["--text", "Hi", "--out", out, "--mimi", MODEL], "FILE_NOT_FOUND"], // a folder without Mimi weights
      [["--text", "Hi", "--out", join(dir, "missing", "x.wav"), "--mimi", MIMI, "--force-audio-start"], "OUTPUT_UNWRITABLE"],
    ];
    // In process (the command's own run), to keep the test quick; the exit-status mapping is shown above.
    for (const [args, code] of cases) {
      await expectCode(speakCommand.run(["--model", MODEL, "--cache-dir", TEST_CACHE, "--threads", "2", ...args], new AbortController().signal), code);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it("Ctrl-C keeps what was spoken so far as a valid WAV of whole frames", async () => {
    const dir = mkdtempSync(join(tmpdir(), "speak-cli-"));
    const out = join(dir, "long.wav");
    const { code, stderr } = await interruptOnceAudioWritten(["speak", "--model", MODEL, "--mimi", MIMI, "--text", "Keep talking.", "--out", out, "--max-frames", "3000", "--force-audio-start", "--seed", "1"], dir);
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/stopped: wrote .* to /);
    expect(readdirSync(dir)).toEqual(["long.wav"]);
    const { samples } = readWav(out);
    expect(samples.length).toBeGreaterThanOrEqual(5 * 1920);
    expect(samples.length % 1920).toBe(0);
    expect(existsSync(out)).toBe(true);
  });
});
