import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { type AudioChunk, mergeTranscripts, planChunks, transcribeChunked } from "../../audio/chunking.ts";
import { Lfm2AudioModel } from "../../audio/lfm2-audio-model.ts";
import { resample } from "../../audio/resample.ts";
import { readAudioFile } from "../../audio/audio-file.ts";
import { openAudioStream } from "../../audio/audio-stream.ts";
import { type TranscribeStreamProgress, transcribe, transcribeStream, transcribeWindow } from "../../pipelines/transcribe.ts";
import { wavHeader } from "../helpers/wav-header.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const RATE = 16000;

/** A synthetic recording: each word a tone burst at known times, silence between (pauses every few words). */
interface Word {
  text: string;
  start: number;
  end: number;
}
function syntheticSpeech(count: number, seed = 7): { wave: Float32Array; words: Word[] } {
  const vocabulary = ["the", "pump", "pressure", "is", "stable", "and", "the", "valve", "seven", "reads", "ninety", "percent", "check", "line", "two", "again"];
  let state = seed;
  const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
  const words: Word[] = [];
  let t = 0.3;
  for (let i = 0; i < count; i++) {
    const length = 0.2 + 0.3 * random();
    words.push({ text: `${vocabulary[Math.floor(random() * vocabulary.length)]}`, start: t, end: t + length });
    t += length + (i % 5 === 4 ? 0.6 : 0.08); // short gaps inside phrases, longer pauses between them
  }
  const wave = new Float32Array(Math.ceil((t + 0.3) * RATE));
  for (const w of words) for (let i = Math.floor(w.start * RATE); i < Math.floor(w.end * RATE); i++) wave[i] = 0.5 * Math.sin(i * 0.3);
  return { wave, words };
}

/**
 * A stand-in for the model: it "hears" the words inside the window, garbles a word cut by either
 * edge, capitalises the first word and ends with a full stop — what a real model does at borders.
 */
function fakeTranscriber(words: Word[]) {
  return async (_samples: Float32Array, chunk: AudioChunk) => {
    const s = chunk.start / RATE;
    const e = chunk.end / RATE;
    const heard: string[] = [];
    for (const w of words) {
      if (w.end <= s || w.start >= e) continue;
      heard.push(w.start >= s && w.end <= e ? w.text : `${w.text.slice(0, 2)}-`);
    }
    if (heard.length > 0) {
      heard[0] = heard[0][0].toUpperCase() + heard[0].slice(1);
      heard[heard.length - 1] += ".";
    }
    return { text: heard.join(" ") };
  };
}

const normalise = (text: string) => text.toLowerCase().replace(/[^\p{L}\p{N}\s-]/gu, "").split(/\s+/).filter(Boolean);

describe("chunk planning", () => {
  it("keeps a short recording in one window", () => {
    expect(planChunks(new Float32Array(10 * RATE), RATE)).toEqual([{ start: 0, end: 10 * RATE }]);
  });

  it("covers a long recording with windows ≤ chunk length that overlap by the overlap, cut in pauses", () => {
    const { wave, words } = syntheticSpeech(300);
    const plan = planChunks(wave, RATE, { chunkSeconds: 20, overlapSeconds: 3, searchSeconds: 4 });
    expect(plan.length).toBeGreaterThan(3);
    expect(plan[0].start).toBe(0);
    expect(plan[plan.length - 1].end).toBe(wave.length);
    for (const [i, c] of plan.entries()) {
      expect(c.end - c.start).toBeLessThanOrEqual(20 * RATE);
      if (i > 0) expect(plan[i - 1].end - c.start).toBe(3 * RATE);
      if (i < plan.length - 1) {
        const cut = c.end / RATE;
        expect(words.some((w) => w.start < cut && cut < w.end), `cut at ${cut.toFixed(2)} s falls inside a word`).toBe(false);
      }
    }
  });

  it("refuses settings that would not move forward", () => {
    expect(() => planChunks(new Float32Array(100 * RATE), RATE, { chunkSeconds: 10, overlapSeconds: 4, searchSeconds: 2 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("joining chunk transcripts", () => {
  it("keeps the overlap once when both chunks heard it", () => {
    const r = mergeTranscripts("We checked the pump and the valve seven reads", "The valve seven reads ninety percent today.", { overlapSeconds: 2, previousSeconds: 6, nextSeconds: 6 });
    expect(r).toMatchObject({ method: "run", text: "We checked the pump and the valve seven reads ninety percent today." });
  });

  it("repairs a word cut at either border from the other chunk", () => {
    const r = mergeTranscripts("the pump pressure is sta-", "Pu- pressure is stable and rising.", { overlapSeconds: 2, previousSeconds: 6, nextSeconds: 6 });
    expect(r.text).toBe("the pump pressure is stable and rising.");
  });

  it("falls back to halving the overlap by time when the texts share nothing", () => {
    const r = mergeTranscripts("one two three four five six", "seven eight nine ten eleven twelve", { overlapSeconds: 2, previousSeconds: 6, nextSeconds: 6 });
    expect(r.method).toBe("time");
    expect(r.text).toBe("one two three four five eight nine ten eleven twelve");
  });

  it("joins unspaced scripts by characters", () => {
    const r = mergeTranscripts("今日は天気がいいです", "天気がいいですね。", { overlapSeconds: 1, previousSeconds: 4, nextSeconds: 4 });
    expect(r.text).toBe("今日は天気がいいですね。");
  });

  it("a long synthetic recording loses and repeats no word at any chunk border", async () => {
    for (const seed of [1, 2, 3]) {
      const { wave, words } = syntheticSpeech(400, seed);
      const progress: number[] = [];
      const out = await transcribeChunked(wave, RATE, fakeTranscriber(words), {
        chunkSeconds: 15,
        overlapSeconds: 3,
        searchSeconds: 3,
        onChunk: (i, n) => progress.push(i / n),
      });
      expect(out.chunks.length).toBeGreaterThan(8);
      expect(progress[progress.length - 1]).toBe(1);
      expect(normalise(out.text)).toEqual(words.map((w) => w.text));
    }
  });

  it("without pauses to cut at (words cut by every border) it still loses and repeats nothing", async () => {
    for (let seed = 4; seed <= 14; seed++) {
      const { wave, words } = syntheticSpeech(300, seed);
      // Search window 0: cuts land wherever the nominal end is, mid-word included.
      const out = await transcribeChunked(wave, RATE, fakeTranscriber(words), { chunkSeconds: 12, overlapSeconds: 3, searchSeconds: 0 });
      expect(out.chunks.slice(1).every((c) => c.merge === "run")).toBe(true);
      expect(normalise(out.text), `seed ${seed}`).toEqual(words.map((w) => w.text));
    }
  });

  it("stops between chunks when aborted", async () => {
    const { wave, words } = syntheticSpeech(200);
    const controller = new AbortController();
    const run = fakeTranscriber(words);
    await expect(
      transcribeChunked(wave, RATE, async (s, c) => {
        controller.abort();
        return run(s, c);
      }, { chunkSeconds: 10, overlapSeconds: 2, searchSeconds: 2, signal: controller.signal }),
    ).rejects.toMatchObject({ code: "ABORTED" });
  });
});

describe("long-audio transcription end to end on concatenated espeak-ng clips (tiny random model)", () => {
  let model: Lfm2AudioModel;
  beforeAll(async () => {
    model = await Lfm2AudioModel.load(join(FIXTURES, "audio/tiny-lfm2-audio"), { precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
  });
  afterAll(async () => {
    await model?.release();
  });

  it("splits the recording, reports progress per chunk, and each chunk's ids are that window's own transcription", async () => {
    const parts: Float32Array[] = [];
    for (const f of ["speech_en_16k.wav", "speech_fr_44k_stereo.wav", "speech_de_24k_f32.wav"]) {
      const clip = await readAudioFile(join(FIXTURES, "audio/clips", f));
      parts.push(resample(clip.samples, clip.sampleRateHz, RATE));
    }
    const gap = new Float32Array(RATE / 2);
    const wave = new Float32Array(parts.reduce((n, p) => n + p.length + gap.length, 0));
    let at = 0;
    for (const p of parts) {
      wave.set(p, at);
      at += p.length + gap.length;
    }
    const progress: Array<[number, number]> = [];
    const opts = { chunkSeconds: 4, overlapSeconds: 1, searchSeconds: 0.8, maxTokens: 6 };
    const transcript = await transcribe(model, { samples: wave, sampleRateHz: RATE }, { ...opts, onProgress: (p) => progress.push([p.chunk, p.chunks]) });
    const plan = planChunks(wave, RATE, opts);
    expect(transcript.chunks.length).toBe(plan.length);
    expect(plan.length).toBeGreaterThanOrEqual(3);
    expect(progress).toEqual(plan.map((_, i) => [i + 1, plan.length]));
    expect(transcript.durationSeconds).toBeCloseTo(wave.length / RATE, 6);
    for (const [i, c] of transcript.chunks.entries()) {
      expect(c.startSeconds).toBe(plan[i].start / RATE);
      expect(c.ids.length).toBeGreaterThan(0);
      expect(c.ids.length).toBeLessThanOrEqual(6);
      if (i === 1) expect(await transcribeWindow(model, wave.subarray(plan[i].start, plan[i].end), RATE, { maxTokens: 6 })).toEqual(c.ids);
    }
  });

  it("transcribeStream on a 48 kHz stereo float file (read in pieces, resampled block by block) gives transcribe's transcript of the whole file", async () => {
    const parts: Float32Array[] = [];
    for (const f of ["speech_en_16k.wav", "speech_fr_44k_stereo.wav", "speech_de_24k_f32.wav"]) {
      const clip = await readAudioFile(join(FIXTURES, "audio/clips", f));
      parts.push(resample(clip.samples, clip.sampleRateHz, 48000));
    }
    const frames = parts.reduce((n, p) => n + p.length, 0);
    const data = Buffer.alloc(frames * 8);
    let at = 0;
    for (const p of parts) {
      for (let i = 0; i < p.length; i++, at++) {
        data.writeFloatLE(p[i], 8 * at);
        data.writeFloatLE(0.5 * p[i], 8 * at + 4);
      }
    }
    const dir = mkdtempSync(join(tmpdir(), "lfm-transcribe-stream-"));
    try {
      const path = join(dir, "long48k.wav");
      writeFileSync(path, Buffer.concat([wavHeader({ format: 3, channels: 2, rate: 48000, bits: 32, dataBytes: data.length }), data]));
      const opts = { chunkSeconds: 4, overlapSeconds: 1, searchSeconds: 0.8, maxTokens: 6 };
      const whole = await transcribe(model, await readAudioFile(path), opts);
      const progress: TranscribeStreamProgress[] = [];
      const streamed = await transcribeStream(model, await openAudioStream(path), { ...opts, onProgress: (p) => progress.push(p) });
      expect(whole.chunks.length).toBeGreaterThanOrEqual(3);
      expect(streamed).toEqual(whole);
      expect(progress.map((p) => [p.chunk, p.last])).toEqual(whole.chunks.map((_, i) => [i + 1, i === whole.chunks.length - 1]));
      expect(progress[0].declaredSeconds).toBeCloseTo(frames / 48000, 9);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
