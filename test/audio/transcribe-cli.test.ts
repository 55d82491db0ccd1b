import { describe, expect, it } from "vitest";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AUDIO_TOKENS } from "../../audio/audio-config.ts";
import { readAudioFile } from "../../audio/audio-file.ts";
import { Lfm2AudioModel } from "../../audio/lfm2-audio-model.ts";
import { transcribe } from "../../pipelines/transcribe.ts";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE, readJson } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
const EN_CLIP = join(FIXTURES, "audio/clips/speech_en_16k.wav");

interface TranscribeJson {
  text: string;
  duration: number;
  chunks: Array<{ start: number; end: number; text: string; ids: number[] }>;
}

describe("lfm transcribe (CLI, tiny random LFM2-Audio)", () => {
  it("transcribes an espeak-ng recording end to end and prints the JSON contract", async () => {
    const out = runLfmJson<TranscribeJson>(["transcribe", "--model", MODEL, EN_CLIP, "--json", "--max-tokens", "12"]);
    expect(out.duration).toBeCloseTo(72046 / 16000, 6);
    expect(out.chunks).toHaveLength(1);
    expect(out.chunks[0]).toMatchObject({ start: 0, end: out.duration });
    expect(out.chunks[0].ids.length).toBeGreaterThan(0);
    expect(out.chunks[0].ids.length).toBeLessThanOrEqual(12);
    // The same clip and options through the library (same default precision and cache) give the same ids and text.
    const model = await Lfm2AudioModel.load(MODEL, { cacheDir: TEST_CACHE });
    try {
      const expected = await transcribe(model, await readAudioFile(EN_CLIP), { maxTokens: 12 });
      expect(out.chunks[0].ids).toEqual(expected.chunks[0].ids);
      expect(out.text).toBe(expected.text);
      // Stop tokens end the transcript and are not part of it.
      const stops = [...model.config.lfm.eosTokenIds, AUDIO_TOKENS.imEnd, AUDIO_TOKENS.audioStart];
      expect(out.chunks[0].ids.filter((id) => stops.includes(id))).toEqual([]);
      // One chunk: its text is the ids decoded without special tokens, and the whole transcript.
      const decoded = model.tokenizer.decode(out.chunks[0].ids, { skipSpecialTokens: true }).trim();
      expect(decoded.length).toBeGreaterThan(0);
      expect(out.chunks[0].text).toBe(decoded);
      expect(out.text).toBe(decoded);
    } finally {
      await model.release();
    }
  });

  it("with the fixture's system prompt at fp32 it generates exactly liquid-audio's greedy steps", () => {
    const expected = readJson<{ greedy_sequential: number[][] }>("audio/reference.json").greedy_sequential.map((s) => s[0]);
    const out = runLfmJson<TranscribeJson>([
      "transcribe", "--model", MODEL, EN_CLIP, "--json", "--precision", "fp32",
      "--system", "Respond with interleaved text and audio.", "--max-tokens", String(expected.length),
    ]);
    expect(out.chunks[0].ids).toEqual(expected);
  });

  it("reads a 44.1 kHz stereo file and prints plain text without --json", () => {
    const r = runLfm(["transcribe", "--model", MODEL, join(FIXTURES, "audio/clips/speech_fr_44k_stereo.wav"), "--max-tokens", "4"]);
    expect(r.status).toBe(0);
    expect(r.stdout.endsWith("\n")).toBe(true);
  });

  it("a recording of several chunks reports each on stderr against the declared length, the last marked", () => {
    const r = runLfm(["transcribe", "--model", MODEL, EN_CLIP, "--chunk-seconds", "2", "--overlap-seconds", "0.4", "--max-tokens", "2"]);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.split("\n").filter((l) => l.startsWith("chunk "));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines[0]).toMatch(/^chunk 1 \(0:00\.0–0:0\d\.\d of 0:04\.5\)$/);
    expect(lines.at(-1)).toMatch(new RegExp(`^chunk ${lines.length} \\(last\\) \\(0:0\\d\\.\\d–0:04\\.5 of 0:04\\.5\\)$`));
  });

  it("bad input exits 2 with the typed error, before any model is built", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-transcribe-cli-"));
    const notAudio = join(dir, "notes.wav");
    writeFileSync(notAudio, "not audio");
    const r = runLfm(["transcribe", "--model", join(dir, "no-such-model"), notAudio]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("error [WAV_INVALID]");
    const missing = runLfm(["transcribe", "--model", MODEL, join(dir, "missing.wav")]);
    expect(missing.stderr).toContain("error [FILE_NOT_FOUND]");
    const noFile = runLfm(["transcribe", "--model", MODEL]);
    expect(noFile.stderr).toContain("error [INVALID_ARGUMENT]");
    const badTokens = runLfm(["transcribe", "--model", MODEL, EN_CLIP, "--max-tokens", "0"]);
    expect(badTokens.stderr).toContain("error [INVALID_ARGUMENT]");
    const tooLong = runLfm(["transcribe", "--model", MODEL, EN_CLIP, "--max-minutes", "0.01"]);
    expect(tooLong.stderr).toContain("error [AUDIO_TOO_LONG]");
  });

  it("is listed in lfm --help and has its own --help", () => {
    expect(runLfm(["--help"]).stdout).toContain("transcribe");
    const help = runLfm(["transcribe", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("lfm transcribe --model DIR FILE.wav");
  });
});
