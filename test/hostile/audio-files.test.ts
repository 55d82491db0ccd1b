/**
 * Recordings and destinations that used to fail badly (issue 15):
 * - audio over 2 GiB crashed with a raw ERR_FS_FILE_TOO_LARGE from a whole-file read, and a 1 h
 *   48 kHz stereo float WAV took 2 GB before the first window: files are now read in pieces;
 * - a text file named .mp3 was "not a WAV file";
 * - `lfm speak --out DIR` failed only after the whole generation.
 * Issue 20: a 3-hour recording through `lfm transcribe`'s windows, joins and subtitles in bounded memory.
 */
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { openAudioStream } from "../../audio/audio-stream.ts";
import { resampledLength } from "../../audio/resample.ts";
import { readWavFile } from "../../audio/wav.ts";
import { runLfm } from "../helpers/cli.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES } from "../helpers/reference.ts";
import { wavHeader } from "../helpers/wav-header.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
const MIMI = join(FIXTURES, "audio/tiny-mimi");
const ROOT = join(import.meta.dirname, "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "lfm-hostile-audio-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const errorCode = (stderr: string) => /^error \[([A-Z_]+)\]/m.exec(stderr)?.[1];

/** A sparse WAV: the header, then `dataBytes` of zeros the file system does not store. */
function sparseWav(name: string, spec: Parameters<typeof wavHeader>[0]): string {
  const path = join(tmp, name);
  const header = wavHeader(spec);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, header);
    ftruncateSync(fd, header.length + spec.dataBytes);
  } finally {
    closeSync(fd);
  }
  return path;
}

const GiB = 2 ** 30;

describe("audio over 2 GiB", () => {
  it("a 2 GiB + 64 KiB RIFF WAV (sizes in its 32-bit fields) is read in pieces: readAudioFile returns the clip, no ERR_FS_FILE_TOO_LARGE", async () => {
    // 768 kHz, 8 channels of float64: 2 GiB is 44 s, so the clip itself is small (34 M samples).
    const dataBytes = 2 * GiB + 64 * 1024;
    const path = sparseWav("big-riff.wav", { format: 3, channels: 8, rate: 768_000, bits: 64, dataBytes });
    const clip = await readAudioFile(path);
    expect(clip).toMatchObject({ sampleRateHz: 768_000, channels: 8, encoding: "float64" });
    expect(clip.samples.length).toBe(dataBytes / 64);
    expect(clip.samples.every((s) => s === 0)).toBe(true);
    // the WAV-only reader, which reads whole, says so in a typed error
    expectCode(() => readWavFile(path, { maxSeconds: Infinity }), "AUDIO_TOO_LONG", "too big to read whole", "openAudioStream");
  }, 120_000);

  it("RF64 past 4 GiB and a RIFF whose data size says 0xFFFFFFFF: the header is read, the length judged, nothing crashes", async () => {
    const rf64 = sparseWav("big.rf64.wav", { container: "RF64", channels: 2, rate: 48000, bits: 16, dataBytes: 4.5 * GiB });
    const unknown = sparseWav("big-unknown-size.wav", { channels: 2, rate: 48000, bits: 16, dataBytes: 2.5 * GiB, dataSizeField: 0xffffffff });
    for (const [path, bytes] of [
      [rf64, 4.5 * GiB],
      [unknown, 2.5 * GiB],
    ] as const) {
      const seconds = bytes / (48000 * 4); // 7 h and 3.9 h: over the default 3 h limit
      await expectCode(readAudioFile(path), "AUDIO_TOO_LONG", `${(seconds / 60).toFixed(1)} minutes`);
      // with the limit lifted, it streams: the first blocks come at once
      const stream = await openAudioStream(path, { maxSeconds: Infinity, targetRateHz: 16000 });
      expect(stream.declaredSeconds).toBeCloseTo(seconds, 6);
      let read = 0;
      for await (const block of stream) {
        read += block.length;
        if (read > 16000 * 10) break;
      }
      expect(read).toBeGreaterThan(16000 * 10);
    }
  });

  it("an A-law WAV over 1 GiB (an encoding decoded whole) is WAV_UNSUPPORTED at open, naming the limit", async () => {
    // 8 channels of 96 kHz A-law: 1.1 GiB is 25 minutes, under the length limit.
    const path = sparseWav("big-alaw.wav", { format: 6, channels: 8, rate: 96_000, bits: 8, dataBytes: Math.floor(1.1 * GiB / 8) * 8 });
    await expectCode(openAudioStream(path), "WAV_UNSUPPORTED", "alaw", "up to 1 GiB");
    await expectCode(readAudioFile(path), "WAV_UNSUPPORTED", "alaw");
  });

  it("lfm transcribe on a 2.2 GiB WAV over the length limit: the typed error before any model is built, no stack trace", () => {
    const path = sparseWav("big-cli.wav", { channels: 2, rate: 48000, bits: 16, dataBytes: Math.floor((2.2 * GiB) / 4) * 4 });
    const r = runLfm(["transcribe", "--model", join(tmp, "no-such-model"), path]);
    expect(r.status).toBe(2);
    expect(errorCode(r.stderr)).toBe("AUDIO_TOO_LONG");
    expect(r.stderr).not.toMatch(/ERR_FS_FILE_TOO_LARGE|\n\s+at /);
  });

  it("streaming a 230 MB recording (10 min of 48 kHz stereo float) to 16 kHz windows keeps memory flat (a child process's RSS)", () => {
    const rate = 48000;
    const frames = 10 * 60 * rate;
    const path = join(tmp, "ten-minutes.wav");
    const fd = openSync(path, "w");
    try {
      writeSync(fd, wavHeader({ format: 3, channels: 2, rate, bits: 32, dataBytes: frames * 8 }));
      // Real (non-zero) pages, written a second at a time.
      const second = new Float32Array(2 * rate);
      for (let i = 0; i < rate; i++) second[2 * i] = second[2 * i + 1] = 0.3 * Math.sin((2 * Math.PI * 220 * i) / rate);
      for (let s = 0; s < frames / rate; s++) writeSync(fd, new Uint8Array(second.buffer));
    } finally {
      closeSync(fd);
    }
    const probe = (nodeFlags: string[]) => {
      const r = spawnSync(process.execPath, [...nodeFlags, join(ROOT, "bin/run-ts.mjs"), join(ROOT, "test/helpers/stream-rss-probe.ts"), path, "16000"], { encoding: "utf8", timeout: 180_000 });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { windows: number; samples: number; energy: number; baseRss: number; peakRss: number; liveRss: number };
      expect(out.samples).toBe(resampledLength(frames, rate, 16000));
      expect(out.windows).toBeGreaterThanOrEqual(20); // 600 s in windows of at most 30 s
      expect(out.energy).toBeGreaterThan(0);
      return out;
    };
    const fileBytes = frames * 8;
    const MiB = 2 ** 20;
    // As a user runs it: read whole, the file alone was 230 MB, and its samples 115 MB more. Here
    // the peak holds a piece of the file, about one window, and garbage V8 has not collected yet
    // (its external-memory trigger, ~64 MB, whatever the length).
    const plain = probe([]);
    const growth = plain.peakRss - plain.baseRss;
    expect(growth, `peak RSS grew by ${(growth / MiB).toFixed(0)} MiB`).toBeLessThan(fileBytes / 2);
    // What the reading holds on to (garbage collected after every window) is a few windows' worth.
    const collected = probe(["--expose-gc"]);
    const live = collected.liveRss - collected.baseRss;
    expect(live, `live RSS grew by ${(live / MiB).toFixed(0)} MiB`).toBeLessThan(32 * MiB);
  }, 240_000);

  it("a 3-hour recording through windowing, joining, segments, SRT and WebVTT (no model) keeps memory within 48 MiB of the start", () => {
    // 3 h of 16 kHz mono 16-bit (346 MB, sparse: silence, so windows of the full 30 s, 4 s overlap). The stand-in "model" gives 2.5 words a second: 27,000 words, a realistic transcript.
    const hours = (h: number, name: string) => sparseWav(name, { rate: 16000, channels: 1, bits: 16, dataBytes: h * 3600 * 16000 * 2 });
    const probe = (path: string, nodeFlags: string[]) => {
      const r = spawnSync(process.execPath, [...nodeFlags, join(ROOT, "bin/run-ts.mjs"), join(ROOT, "test/helpers/transcript-rss-probe.ts"), path], { encoding: "utf8", timeout: 180_000 });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { windows: number; samples: number; words: number; segments: number; monotonic: boolean; lastEnd: number; baseRss: number; peakRss: number; liveRss: number };
    };
    const MiB = 2 ** 20;
    const long = probe(hours(3, "three-hours.wav"), ["--expose-gc"]);
    expect(long.samples).toBe(3 * 3600 * 16000);
    expect(long.windows).toBeGreaterThan(360);
    expect(long.words).toBe(27000); // every word once across 415 joins
    expect(long.segments).toBeGreaterThan(27000 / 8);
    expect(long.monotonic).toBe(true);
    expect(long.lastEnd).toBe(3 * 3600);
    // The bound: what the path holds on to (garbage collected at every window) is the audio's
    // window state (~22 MiB, the same for any length) plus the transcript text and its subtitles
    // (~50 bytes of heap per character while joining: 10–15 MiB for 3 hours): under 48 MiB.
    const live = long.liveRss - long.baseRss;
    expect(live, `live RSS grew by ${(live / MiB).toFixed(0)} MiB`).toBeLessThan(48 * MiB);
    // Flat in the length: 9 times longer than 20 minutes costs only the longer text.
    const short = probe(hours(1 / 3, "twenty-minutes.wav"), ["--expose-gc"]);
    const extra = live - (short.liveRss - short.baseRss);
    expect(extra, `3 h held ${(extra / MiB).toFixed(0)} MiB more than 20 min`).toBeLessThan(32 * MiB);
  }, 240_000);
});

describe("files that are not what their name says", () => {
  it("a text file named .mp3 is called text, with the formats accepted, not 'not a WAV file'", async () => {
    const notes = join(tmp, "notes.mp3");
    writeFileSync(notes, "Minutes of the meeting: budget approved.\n");
    const e = await expectCode(readAudioFile(notes), "WAV_INVALID", "not an audio file", "looks like text", "WAV", "FLAC", "MP3", "Ogg");
    expect(e.message).not.toContain("not a WAV file");
    const pdf = join(tmp, "talk.mp3");
    writeFileSync(pdf, "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n");
    await expectCode(readAudioFile(pdf), "WAV_INVALID", "a PDF document");
    const r = runLfm(["transcribe", "--model", join(tmp, "no-such-model"), notes]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error \[WAV_INVALID\]: .*notes\.mp3 is not an audio file: it looks like text/m);
  });
});

describe("lfm speak --out that cannot be written", () => {
  it("a folder, a folder-style path, a missing parent, a parent that is a file: OUTPUT_UNWRITABLE before any model is loaded", () => {
    const dir = mkdtempSync(join(tmp, "speak-"));
    const outDir = join(dir, "out");
    mkdirSync(outDir);
    const aFile = join(dir, "file.txt");
    writeFileSync(aFile, "x");
    runLfm(["speak", "--help"]); // builds dist/ if a source changed, so the timing below is the command's own
    let run = 0;
    for (const [out, why] of [
      [outDir, "it is a folder"],
      [join(dir, "new-folder") + "/", "it names a folder"],
      [join(dir, "missing", "x.wav"), "does not exist"],
      [join(aFile, "x.wav"), "is not a folder"],
    ]) {
      const cache = join(dir, `cache-${run++}`);
      const started = Date.now();
      const r = runLfm(["speak", "--model", MODEL, "--mimi", MIMI, "--text", "Hello.", "--out", out, "--force-audio-start"], { env: { LFM_CACHE_DIR: cache } });
      const seconds = (Date.now() - started) / 1000;
      expect(r.status, r.stderr).toBe(2);
      expect(errorCode(r.stderr), r.stderr).toBe("OUTPUT_UNWRITABLE");
      expect(r.stderr).toContain(why);
      // Nothing was built: loading the model would have created its graph cache.
      expect(existsSync(cache), `${out}: the graph cache was created, so a model was loaded`).toBe(false);
      expect(seconds, `${out} took ${seconds} s`).toBeLessThan(20);
      expect(readdirSync(outDir)).toEqual([]);
      expect(readdirSync(dir).filter((f) => f.includes(".partial-"))).toEqual([]);
    }
    // lfm audio-chat --out shares the writer: a folder fails before its models too
    const cache = join(dir, "cache-chat");
    const r = runLfm(["audio-chat", "--model", MODEL, "--mimi", MIMI, "--audio", join(FIXTURES, "audio/clips/speech_en_16k.wav"), "--out", outDir], { env: { LFM_CACHE_DIR: cache } });
    expect(r.status, r.stderr).toBe(2);
    expect(errorCode(r.stderr)).toBe("OUTPUT_UNWRITABLE");
    expect(existsSync(cache)).toBe(false);
  });
});
