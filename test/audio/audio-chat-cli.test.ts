import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import wavefile from "wavefile";
import { describe, expect, it } from "vitest";
import { END_OF_AUDIO } from "../../audio/speech-generation.ts";
import { MimiDecoder } from "../../audio/mimi-decoder.ts";
import { audioChatCommand } from "../../cli/audio-chat.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { interruptOnceAudioWritten, runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE, readJson } from "../helpers/reference.ts";
import type { LfmErrorCode } from "../../text-core/errors.ts";
import { expectCode } from "../helpers/errors.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
const MIMI = join(FIXTURES, "audio/tiny-mimi");
const CLIP = join(FIXTURES, "audio/clips/speech_en_16k.wav");
/** The reference chat's system prompt (fixtures/audio: liquid-audio's interleaved-chat prompt). */
const SYSTEM = "Respond with interleaved text and audio.";

interface ChatJson {
  prompt_ids: number[];
  modality_flag: number[];
  steps: number[][];
  text: string;
  out?: string;
  seconds?: number;
  usage: { prompt_tokens: number; completion_tokens: number };
  timings: { ttft_ms: number | null; tokens_per_s: number | null; total_ms: number };
}

interface Reference {
  chat: { text_ids: number[]; modality_flag: number[] };
  greedy_sequential: number[][];
  greedy_interleaved: number[][];
}

const errorCode = (stderr: string) => /error \[([A-Z_]+)\]/.exec(stderr)?.[1];

describe("lfm audio-chat (CLI, tiny random LFM2-Audio)", () => {
  const ref = readJson<Reference>("audio/reference.json");

  for (const mode of ["sequential", "interleaved"] as const) {
    it(`the scriptable contract at fp32, ${mode}: prompt and 40 greedy steps exactly liquid-audio's`, async () => {
      const out = runLfmJson<ChatJson>([
        "audio-chat", "--model", MODEL, "--system", SYSTEM, "--audio", CLIP, "--mode", mode,
        "--max-tokens", "40", "--temperature", "0", "--precision", "fp32", "--json",
      ]);
      expect(Object.keys(out)).toEqual(["prompt_ids", "modality_flag", "steps", "text", "finish_reason", "usage", "timings"]);
      // usage counts the LM's prompt positions (text and audio in) and the steps as --max-tokens does.
      expect(out.usage).toEqual({ prompt_tokens: out.modality_flag.length, completion_tokens: out.steps.length });
      expect(out.timings.total_ms).toBeGreaterThanOrEqual(out.timings.ttft_ms ?? 0);
      expect(out.prompt_ids).toEqual(ref.chat.text_ids);
      expect(out.modality_flag).toEqual(ref.chat.modality_flag);
      expect(out.steps).toEqual(ref[`greedy_${mode}`]);
      // The text is the reply's text steps (one id each; audio frames have 8 codes) decoded without special tokens.
      const textIds = out.steps.filter((s) => s.length === 1).map((s) => s[0]);
      const decoded = (await Lfm2Tokenizer.fromDir(MODEL)).decode(textIds, { skipSpecialTokens: true });
      expect(decoded.length).toBeGreaterThan(0);
      expect(out.text).toBe(decoded);
    });
  }

  it("--out writes Mimi's decode of the reply's frames as a 24 kHz WAV; text goes to stdout", async () => {
    const dir = mkdtempSync(join(tmpdir(), "audio-chat-cli-"));
    const out = join(dir, "reply.wav");
    const json = runLfmJson<ChatJson>([
      "audio-chat", "--model", MODEL, "--mimi", MIMI, "--system", SYSTEM, "--audio", CLIP, "--mode", "interleaved",
      "--max-tokens", "40", "--temperature", "0", "--precision", "fp32", "--out", out, "--json",
    ]);
    expect(json.steps).toEqual(ref.greedy_interleaved);
    const frames = json.steps.filter((s) => s.length === 8 && s[0] !== END_OF_AUDIO);
    expect(json).toMatchObject({ out, seconds: frames.length * 0.08 });
    const wav = new wavefile.WaveFile(readFileSync(out));
    expect(wav.fmt).toMatchObject({ sampleRate: 24000, numChannels: 1, bitsPerSample: 16 });
    const samples = wav.getSamples(false, Int16Array) as unknown as Int16Array;
    expect(samples.length).toBe(frames.length * 1920);
    const mimi = await MimiDecoder.load(MIMI, { cacheDir: TEST_CACHE, threads: 2 });
    const wave = await mimi.decode(frames);
    await mimi.release();
    let worst = 0;
    for (let i = 0; i < wave.length; i++) {
      const s = Math.max(-1, Math.min(1, wave[i]));
      worst = Math.max(worst, Math.abs(samples[i] - (s < 0 ? s * 32768 : s * 32767)));
    }
    // 16-bit rounding, plus frame-by-frame vs chunked decoding (≤ 3e-8, i.e. 1e-3 of a 16-bit step)
    expect(worst).toBeLessThanOrEqual(0.501);
    expect(readdirSync(dir)).toEqual(["reply.wav"]);
    // Plain mode: the reply's text on stdout, the file on stderr.
    const plain = runLfm(["audio-chat", "--model", MODEL, "--mimi", MIMI, "--audio", CLIP, "--max-tokens", "20", "--temperature", "0", "--out", out]);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout.endsWith("\n")).toBe(true);
    expect(plain.stderr).toMatch(/wrote .* to /);
    // Then the summary line: 20 steps, --max-tokens ran out (or the turn ended first).
    expect(plain.stderr).toMatch(/^\d+ tokens?, .*first token \d+ ms, total \d+ ms, finish: (stop|length)$/m);
    const quiet = runLfm(["audio-chat", "--model", MODEL, "--audio", CLIP, "--max-tokens", "5", "--temperature", "0", "-q"]);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stderr).not.toMatch(/finish: /);
  });

  it("takes compressed recordings (FLAC) the same as their WAV", () => {
    const out = runLfmJson<ChatJson>(["audio-chat", "--model", MODEL, "--audio", join(FIXTURES, "audio/extra/speech_en_16k.flac"), "--max-tokens", "3", "--temperature", "0", "--json"]);
    expect(out.modality_flag.filter((m) => m === 2).length).toBe(19); // 1.5 s → 150 mel frames → 19 rows
    expect(out.steps).toHaveLength(3);
  });

  it("bad input: typed errors before any generation, and no file left", async () => {
    const dir = mkdtempSync(join(tmpdir(), "audio-chat-cli-"));
    const out = join(dir, "x.wav");
    const corrupt = join(dir, "cut.flac");
    writeFileSync(corrupt, readFileSync(join(FIXTURES, "audio/extra/speech_en_16k.flac")).subarray(0, 9000));
    const cases: [string[], LfmErrorCode][] = [
      [[], "INVALID_ARGUMENT"], // no --audio
      [["--audio", CLIP, "--mode", "chatty"], "INVALID_ARGUMENT"],
      [["--audio", CLIP, "--max-tokens", "0"], "INVALID_ARGUMENT"],
      [["--audio", CLIP, "--audio-top-k", "0"], "INVALID_ARGUMENT"],
      [["--audio", join(dir, "missing.wav")], "FILE_NOT_FOUND"],
      [["--audio", corrupt], "AUDIO_INVALID"],
      // --out with no Mimi weights in the model folder (the tiny LFM2-Audio ships none)
      [["--audio", CLIP, "--out", out], "FILE_NOT_FOUND"],
      [["--audio", CLIP, "--out", out, "--mimi", join(dir, "no-mimi")], "FILE_NOT_FOUND"],
      [["--audio", CLIP, "--out", join(dir, "missing", "x.wav"), "--mimi", MIMI], "OUTPUT_UNWRITABLE"],
    ];
    for (const [args, code] of cases) {
      await expectCode(audioChatCommand.run(["--model", MODEL, "--cache-dir", TEST_CACHE, "--threads", "2", ...args], new AbortController().signal), code);
    }
    expect(readdirSync(dir)).toEqual(["cut.flac"]);
    const r = runLfm(["audio-chat", "--model", MODEL, "--audio", CLIP, "--out", out]);
    expect(r.status).toBe(2);
    expect(errorCode(r.stderr)).toBe("FILE_NOT_FOUND");
    expect(r.stderr).toContain("Mimi");
  });

  it("Ctrl-C keeps the speech so far as a valid WAV of whole frames", async () => {
    const dir = mkdtempSync(join(tmpdir(), "audio-chat-cli-"));
    const out = join(dir, "long.wav");
    const { code, stderr } = await interruptOnceAudioWritten(["audio-chat", "--model", MODEL, "--mimi", MIMI, "--audio", CLIP, "--out", out, "--max-tokens", "4000", "--seed", "1"], dir);
    expect(code, stderr).toBe(130);
    expect(readdirSync(dir)).toEqual(["long.wav"]);
    const samples = new wavefile.WaveFile(readFileSync(out)).getSamples(false, Int16Array) as unknown as Int16Array;
    expect(samples.length).toBeGreaterThanOrEqual(5 * 1920);
    expect(samples.length % 1920).toBe(0);
  });

  it("is listed in lfm --help and has its own --help", () => {
    expect(runLfm(["--help"]).stdout).toContain("audio-chat");
    const help = runLfm(["audio-chat", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("lfm audio-chat --model DIR --audio FILE");
  });
});
