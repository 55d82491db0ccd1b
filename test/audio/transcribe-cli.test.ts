import { afterAll, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, rmSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AUDIO_TOKENS } from "../../audio/audio-config.ts";
import { readAudioFile } from "../../audio/audio-file.ts";
import { Lfm2AudioModel } from "../../audio/lfm2-audio-model.ts";
import { transcribe } from "../../pipelines/transcribe.ts";
import { LFM_BIN, runLfm, runLfmJson } from "../helpers/cli.ts";
import { wavHeader } from "../helpers/wav-header.ts";
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

describe("lfm transcribe --format and --out (CLI, tiny random LFM2-Audio)", () => {
  const dir = mkdtempSync(join(tmpdir(), "lfm-transcribe-formats-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const MULTI = ["--chunk-seconds", "2", "--overlap-seconds", "0.4", "--max-tokens", "6"];
  const squeeze = (s: string) => s.replace(/\s+/g, "");
  const time = (h: string, m: string, s: string, ms: string) => Number(h) * 3600 + Number(m) * 60 + Number(s) + Number(ms) / 1000;
  /** Strict cue reader for the subset written: timing line, text lines, a blank line; SRT numbered from 1. */
  const cues = (body: string, srt: boolean) => {
    expect(body.endsWith("\n\n")).toBe(true);
    const timing = srt ? /^(\d\d+):([0-5]\d):([0-5]\d),(\d{3}) --> (\d\d+):([0-5]\d):([0-5]\d),(\d{3})$/ : /^(\d\d+):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d\d+):([0-5]\d):([0-5]\d)\.(\d{3})$/;
    return body.slice(0, -2).split("\n\n").map((block, i) => {
      const lines = block.split("\n");
      if (srt) expect(lines.shift()).toBe(String(i + 1));
      const t = timing.exec(lines.shift() ?? "");
      expect(t).not.toBeNull();
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) expect(l).not.toContain("-->");
      const m = t as RegExpExecArray;
      return { start: time(m[1], m[2], m[3], m[4]), end: time(m[5], m[6], m[7], m[8]), text: lines.join("\n") };
    });
  };
  const expectOrdered = (list: Array<{ start: number; end: number }>, duration: number) => {
    expect(list[0].start).toBe(0);
    expect(list.at(-1)?.end).toBeCloseTo(duration, 3);
    for (const [i, c] of list.entries()) {
      expect(c.end).toBeGreaterThanOrEqual(c.start);
      if (i > 0) expect(c.start).toBeGreaterThanOrEqual(list[i - 1].end);
    }
  };

  it("json, srt (--out), vtt and txt of a several-chunk recording agree: segments cover the text, times monotonic", () => {
    const json = runLfmJson<TranscribeJson & { segments: Array<{ start: number; end: number; text: string }> }>(["transcribe", "--model", MODEL, EN_CLIP, ...MULTI, "--format", "json"]);
    expect(json.chunks.length).toBeGreaterThanOrEqual(2);
    expect(json.segments.length).toBeGreaterThanOrEqual(1);
    expectOrdered(json.segments, json.duration);
    expect(squeeze(json.segments.map((s) => s.text).join(""))).toBe(squeeze(json.text));

    const srtPath = join(dir, "out.srt");
    const srtRun = runLfm(["transcribe", "--model", MODEL, EN_CLIP, ...MULTI, "--format", "srt", "--out", srtPath]);
    expect(srtRun.status, srtRun.stderr).toBe(0);
    expect(srtRun.stdout).toBe("");
    expect(readdirSync(dir)).toEqual(["out.srt"]); // no temporary file left
    const srt = cues(readFileSync(srtPath, "utf8"), true);
    expectOrdered(srt, json.duration);
    expect(srt.map((c) => c.text)).toEqual(json.segments.map((s) => s.text.split(/\r\n|\r|\n/).map((l) => l.trim()).filter(Boolean).join("\n").replaceAll("-->", "-- >")));

    const vttRun = runLfm(["transcribe", "--model", MODEL, EN_CLIP, ...MULTI, "--format", "vtt"]);
    expect(vttRun.status, vttRun.stderr).toBe(0);
    expect(vttRun.stdout.startsWith("WEBVTT\n\n")).toBe(true);
    const vtt = cues(vttRun.stdout.slice("WEBVTT\n\n".length), false);
    expect(vtt.map(({ start, end }) => ({ start, end }))).toEqual(srt.map(({ start, end }) => ({ start, end })));
    expect(squeeze(vtt.map((c) => c.text.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&")).join(""))).toBe(squeeze(json.text));

    const txt = runLfm(["transcribe", "--model", MODEL, EN_CLIP, ...MULTI]);
    expect(txt.stdout).toBe(`${json.text}\n`);
  });

  it("on a terminal, progress shows the share done and the time left; the subtitles follow", () => {
    const r = spawnSync("python3", [join(import.meta.dirname, "..", "helpers", "pty-run.py"), "90", process.execPath, LFM_BIN, "transcribe", "--model", MODEL, EN_CLIP, ...MULTI, "--format", "srt"], {
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
    });
    expect(r.status, r.stderr).toBe(0);
    const { status, output } = JSON.parse(r.stdout) as { status: number; output: string };
    const shown = Buffer.from(output, "hex").toString("utf8");
    expect(status, shown).toBe(0);
    expect(shown).toMatch(/chunk 1 \(0:00\.0–0:0\d\.\d of 0:04\.5, \d+%, ETA \d+:\d\d\)/);
    expect(shown).toMatch(/chunk \d+ \(last\) \(0:0\d\.\d–0:04\.5 of 0:04\.5\)/);
    expect(shown).toMatch(/\r\n1\r\n00:00:00,000 --> 00:00:\d\d,\d{3}\r\n/);
  });

  it("--out fails before the model when it cannot be written, and a failed or interrupted run leaves FILE as it was", async () => {
    const missing = runLfm(["transcribe", "--model", join(dir, "no-such-model"), EN_CLIP, "--out", join(dir, "no-such-folder", "t.srt")]);
    expect(missing.stderr).toContain("error [OUTPUT_UNWRITABLE]");
    const folder = runLfm(["transcribe", "--model", join(dir, "no-such-model"), EN_CLIP, "--out", dir]);
    expect(folder.stderr).toContain("error [OUTPUT_UNWRITABLE]");
    expect(runLfm(["transcribe", "--model", MODEL, EN_CLIP, "--format", "docx"]).stderr).toContain("error [INVALID_ARGUMENT]");
    expect(runLfm(["transcribe", "--model", MODEL, EN_CLIP, "--json", "--format", "srt"]).stderr).toContain("error [INVALID_ARGUMENT]");

    const work = mkdtempSync(join(dir, "atomic-"));
    const target = join(work, "t.vtt");
    writeFileSync(target, "previous\n");
    const failed = runLfm(["transcribe", "--model", MODEL, EN_CLIP, "--format", "vtt", "--out", target, "--max-minutes", "0.01"]);
    expect(failed.stderr).toContain("error [AUDIO_TOO_LONG]");
    expect(readFileSync(target, "utf8")).toBe("previous\n");
    expect(readdirSync(work)).toEqual(["t.vtt"]);

    // A minute of speech and silence in 2 s chunks: Ctrl-C after the second chunk.
    const clip = await readAudioFile(EN_CLIP);
    const long = new Int16Array(60 * clip.sampleRateHz);
    for (let i = 0; i < clip.samples.length; i++) long[i] = Math.round(clip.samples[i] * 0x7fff);
    const longPath = join(dir, "minute.wav");
    writeFileSync(longPath, Buffer.concat([wavHeader({ rate: clip.sampleRateHz, dataBytes: long.byteLength }), Buffer.from(long.buffer)]));
    const child = spawn(process.execPath, [LFM_BIN, "transcribe", "--model", MODEL, longPath, ...MULTI, "--format", "srt", "--out", target], { env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE } });
    let stderr = "";
    let interrupted = false;
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        // Once: a second Ctrl-C exits at once (130) by design, or kills a process past its handler.
        if (!interrupted && /^chunk 2 /m.test(stderr)) {
          interrupted = true;
          child.kill("SIGINT");
        }
      });
      child.on("close", resolve);
    });
    expect(code, stderr).toBe(130);
    expect(stderr).toContain("error [ABORTED]");
    expect(readFileSync(target, "utf8")).toBe("previous\n");
    expect(readdirSync(work)).toEqual(["t.vtt"]);
  }, 180_000);
});
