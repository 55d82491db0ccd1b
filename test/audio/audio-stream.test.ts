/**
 * Reading recordings in blocks (`openAudioStream`), resampling block by block
 * (`StreamingResampler`) and cutting windows as the blocks arrive (`streamWindows`) give what the
 * whole-file path gives: the same samples, the same windows, the same joined transcript.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { type AudioStream, collectAudioStream, openAudioStream } from "../../audio/audio-stream.ts";
import { type AudioChunk, planChunks, streamWindows, transcribeChunked, transcribeChunkedStream } from "../../audio/chunking.ts";
import { StreamingResampler, resample, resampledLength } from "../../audio/resample.ts";
import { decodeLinear } from "../../audio/wav.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES } from "../helpers/reference.ts";
import { wavHeader } from "../helpers/wav-header.ts";

const CLIPS = join(FIXTURES, "audio/clips");
const EXTRA = join(FIXTURES, "audio/extra");
const tmp = mkdtempSync(join(tmpdir(), "lfm-audio-stream-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A deterministic test signal: tones, noise and a quiet stretch every few seconds. */
function signal(length: number, rate: number, seed = 1): Float32Array {
  let s = seed;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const quiet = Math.floor(i / rate) % 7 === 6 ? 0.02 : 1;
    out[i] = quiet * (0.5 * Math.sin((2 * Math.PI * 440 * i) / rate) + 0.2 * Math.sin((2 * Math.PI * 3000 * i) / rate) + 0.1 * (s / 2 ** 32 - 0.5));
  }
  return out;
}

/** Splits `x` into blocks of pseudo-random sizes 1..maxBlock. */
function* blocksOf(x: Float32Array, maxBlock: number, seed = 7): Generator<Float32Array> {
  let s = seed;
  for (let at = 0; at < x.length; ) {
    s = (s * 1103515245 + 12345) >>> 0;
    const n = 1 + (s % maxBlock);
    yield x.subarray(at, at + n);
    at += n;
  }
}

async function* asAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  for (const item of items) yield item;
}

async function collect(stream: AsyncIterable<Float32Array>): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for await (const b of stream) parts.push(b.slice());
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** Interleaved float32 stereo WAV bytes of `left`/`right`. */
function stereoFloatWav(left: Float32Array, right: Float32Array, rate: number): Buffer {
  const data = Buffer.alloc(left.length * 8);
  for (let i = 0; i < left.length; i++) {
    data.writeFloatLE(left[i], 8 * i);
    data.writeFloatLE(right[i], 8 * i + 4);
  }
  return Buffer.concat([wavHeader({ format: 3, channels: 2, rate, bits: 32, dataBytes: data.length }), data]);
}

describe("StreamingResampler", () => {
  it("gives resample's samples for the concatenated input, whatever the block sizes", () => {
    for (const [from, to] of [
      [48000, 16000],
      [44100, 16000],
      [24000, 16000],
      [16000, 24000],
      [22050, 16000],
      [16000, 16000],
    ]) {
      const x = signal(from * 2 + 123, from);
      const whole = resample(x, from, to);
      for (const maxBlock of [1, 97, 5000, 100_000]) {
        const r = new StreamingResampler(from, to);
        const parts: Float32Array[] = [];
        for (const b of blocksOf(x, maxBlock)) parts.push(r.push(b).slice());
        parts.push(r.finish());
        const streamed = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          streamed.set(p, at);
          at += p.length;
        }
        expect(streamed.length, `${from}→${to}`).toBe(resampledLength(x.length, from, to));
        expect(maxAbsDiff(streamed, whole), `${from}→${to}, blocks ≤ ${maxBlock}`).toBeLessThanOrEqual(1e-6);
      }
    }
  });

  it("refuses rates that are not positive integers, and a push after finish", () => {
    expectCode(() => new StreamingResampler(44100.5, 16000), "INVALID_ARGUMENT");
    const r = new StreamingResampler(48000, 16000);
    r.finish();
    expectCode(() => r.push(new Float32Array(4)), "INVALID_ARGUMENT");
  });
});

describe("decodeLinear", () => {
  it("reads 16/32-bit PCM and float through typed arrays to exactly what the byte-by-byte reader gives (big-endian data), aligned or not", () => {
    let seed = 5;
    const random = () => (seed = (seed * 1103515245 + 12345) >>> 0);
    for (const [encoding, size] of [
      ["pcm16", 2],
      ["pcm32", 4],
      ["float32", 4],
      ["float64", 8],
    ] as const) {
      for (const channels of [1, 2, 3]) {
        const frames = 3000;
        const little = new Uint8Array(frames * channels * size + 1);
        const view = new DataView(little.buffer, 1);
        for (let i = 0; i < frames * channels; i++) {
          if (encoding === "float32") view.setFloat32(i * size, (random() / 2 ** 32) * 2 - 1, true);
          else if (encoding === "float64") view.setFloat64(i * size, (random() / 2 ** 32) * 2 - 1, true);
          else for (let k = 0; k < size; k++) view.setUint8(i * size + k, random() & 0xff);
        }
        const big = new Uint8Array(little.length);
        for (let i = 0; i < frames * channels; i++) for (let k = 0; k < size; k++) big[1 + i * size + k] = little[1 + i * size + size - 1 - k];
        const reference = decodeLinear(big.subarray(1), encoding, channels, true);
        const unaligned = decodeLinear(little.subarray(1), encoding, channels, false);
        const aligned = decodeLinear(little.slice(1), encoding, channels, false);
        expect(unaligned, `${encoding} × ${channels}, unaligned`).toEqual(reference);
        expect(aligned, `${encoding} × ${channels}, aligned`).toEqual(reference);
      }
    }
  });
});

describe("openAudioStream", () => {
  it("a multi-block 48 kHz stereo float WAV streamed to 16 kHz equals the whole file read and resampled", async () => {
    const rate = 48000;
    const left = signal(rate * 7 + 11, rate, 3);
    const right = signal(rate * 7 + 11, rate, 5);
    const path = join(tmp, "stereo48k.wav");
    writeFileSync(path, stereoFloatWav(left, right, rate)); // 2.7 MB: three 1 MiB pieces
    const whole = await readAudioFile(path);
    const stream = await openAudioStream(path, { targetRateHz: 16000 });
    expect(stream).toMatchObject({ sampleRateHz: 16000, sourceSampleRateHz: 48000, encoding: "float32", channels: 2 });
    expect(stream.declaredSeconds).toBeCloseTo(left.length / rate, 9);
    const streamed = await collect(stream);
    expect(maxAbsDiff(streamed, resample(whole.samples, rate, 16000))).toBeLessThanOrEqual(1e-6);
    // and at the file's own rate, exactly the whole-file samples
    expect(await collect(await openAudioStream(path))).toEqual(whole.samples);
  });

  it("every fixture format streams to readAudioFile's samples (WAV, FLAC, MP3, Ogg Opus, Ogg Vorbis)", async () => {
    const files = [
      join(CLIPS, "speech_en_16k.wav"),
      join(CLIPS, "speech_fr_44k_stereo.wav"),
      join(CLIPS, "speech_de_24k_f32.wav"),
      join(EXTRA, "speech_en_16k.flac"),
      join(EXTRA, "speech_fr_44k_stereo.mp3"),
      join(EXTRA, "speech_de_24k.opus"),
      join(EXTRA, "speech_de_24k.ogg"),
    ];
    for (const file of files) {
      const whole = await readAudioFile(file);
      const stream = await openAudioStream(file);
      expect(stream.sourceSampleRateHz, file).toBe(whole.sampleRateHz);
      expect(stream.encoding, file).toBe(whole.encoding);
      const streamed = await collect(stream);
      expect(streamed.length, file).toBe(whole.samples.length);
      expect(maxAbsDiff(streamed, whole.samples), file).toBe(0);
      expect(stream.channels, file).toBe(whole.channels);
      // resampled to the model's rate, as the transcriber does it
      const at16k = await collect(await openAudioStream(file, { targetRateHz: 16000 }));
      expect(maxAbsDiff(at16k, resample(whole.samples, whole.sampleRateHz, 16000)), file).toBeLessThanOrEqual(1e-6);
      const clip = await collectAudioStream(await openAudioStream(file));
      expect(clip, file).toEqual(whole);
    }
  });

  it("reads RF64 (ds64 sizes) and a RIFF whose data size was left at 0xFFFFFFFF (to the end, in whole frames)", async () => {
    const x = signal(40_000, 16000);
    const pcm = Buffer.alloc(x.length * 2);
    for (let i = 0; i < x.length; i++) pcm.writeInt16LE(Math.round(x[i] * 32767), 2 * i);
    const expected = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) expected[i] = pcm.readInt16LE(2 * i) / 32768;
    const rf64 = join(tmp, "rf64.wav");
    writeFileSync(rf64, Buffer.concat([wavHeader({ container: "RF64", dataBytes: pcm.length }), pcm]));
    const unknown = join(tmp, "unknown-size.wav");
    writeFileSync(unknown, Buffer.concat([wavHeader({ dataBytes: pcm.length, dataSizeField: 0xffffffff }), pcm, Buffer.from([1])])); // a stray half frame at the end
    for (const path of [rf64, unknown]) {
      const stream = await openAudioStream(path);
      expect(stream.declaredSeconds, path).toBeCloseTo(x.length / 16000, 9);
      expect(await collect(stream), path).toEqual(expected);
    }
  });

  it("header problems are typed errors at open, before any block; damage in the data is a typed error from the blocks", async () => {
    const notes = join(tmp, "notes.mp3");
    writeFileSync(notes, "meeting notes, not audio");
    await expectCode(openAudioStream(notes), "WAV_INVALID", "not an audio file", "text", "FLAC");
    await expectCode(openAudioStream(join(tmp, "missing.wav")), "FILE_NOT_FOUND");
    const cut = join(tmp, "cut.wav");
    writeFileSync(cut, Buffer.concat([wavHeader({ dataBytes: 4000 }), Buffer.alloc(1000)]));
    await expectCode(openAudioStream(cut), "WAV_INVALID", "truncated");
    await expectCode(openAudioStream(join(CLIPS, "speech_en_16k.wav"), { maxSeconds: 0.5 }), "AUDIO_TOO_LONG");
    await expectCode(openAudioStream(join(EXTRA, "speech_de_24k.opus"), { maxSeconds: 0.5 }), "AUDIO_TOO_LONG");
    await expectCode(openAudioStream(join(CLIPS, "speech_en_16k.wav"), { targetRateHz: 0 }), "INVALID_ARGUMENT");
    // an Ogg page damaged in the middle: the header is fine, the blocks fail where the page is
    const bytes = new Uint8Array(readFileSync(join(EXTRA, "speech_de_24k.opus")));
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    const damaged = join(tmp, "damaged.opus");
    writeFileSync(damaged, bytes);
    await expectCode(collect(await openAudioStream(damaged)), "AUDIO_INVALID", "checksum");
    // NaN in float data, past the first piece
    const left = signal(200_000, 48000);
    left[150_000] = Number.NaN;
    const nan = join(tmp, "nan.wav");
    writeFileSync(nan, stereoFloatWav(left, left, 48000));
    await expectCode(collect(await openAudioStream(nan)), "WAV_INVALID", "non-finite", "3.125 s");
  });

  it("truncated or damaged compressed files are AUDIO_INVALID, at open or from the blocks, as readAudioFile finds them", async () => {
    for (const f of ["speech_en_16k.flac", "speech_fr_44k_stereo.mp3", "speech_de_24k.opus", "speech_de_24k.ogg"]) {
      const bytes = readFileSync(join(EXTRA, f));
      for (const keep of [0.3, 0.9]) {
        const path = join(tmp, `cut-${keep}-${f}`);
        writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length * keep)));
        await expectCode(readAudioFile(path), "AUDIO_INVALID");
        await expectCode(
          openAudioStream(path).then((stream) => collect(stream)),
          "AUDIO_INVALID",
        );
      }
      const damaged = new Uint8Array(bytes);
      for (let i = Math.floor(damaged.length / 3); i < damaged.length; i += 97) damaged[i] ^= 0xff;
      const path = join(tmp, `damaged-${f}`);
      writeFileSync(path, damaged);
      await expectCode(readAudioFile(path), "AUDIO_INVALID");
      await expectCode(
        openAudioStream(path).then((stream) => collect(stream)),
        "AUDIO_INVALID",
      );
    }
  });

  it("gives its blocks once, and leaving the loop early closes the file", async () => {
    const stream: AudioStream = await openAudioStream(join(CLIPS, "speech_fr_44k_stereo.wav"));
    for await (const block of stream) {
      expect(block.length).toBeGreaterThan(0);
      break;
    }
    await expectCode(collect(stream), "INVALID_ARGUMENT", "once");
  });
});

describe("streamWindows / transcribeChunkedStream", () => {
  const RATE = 16000;

  it("cuts the windows planChunks cuts, whatever the block sizes", async () => {
    for (const [seconds, opts] of [
      [95, {}],
      [30, {}],
      [30.5, {}],
      [61, { chunkSeconds: 12, overlapSeconds: 2, searchSeconds: 3 }],
      [40, { chunkSeconds: 10, overlapSeconds: 1, searchSeconds: 0 }],
    ] as const) {
      const wave = signal(Math.round(seconds * RATE), RATE, 11);
      const plan = planChunks(wave, RATE, opts);
      for (const maxBlock of [1000, 44_100, 2_000_000]) {
        const windows: AudioChunk[] = [];
        let lastFlags = "";
        for await (const w of streamWindows(asAsync(blocksOf(wave, maxBlock)), RATE, opts)) {
          windows.push(w.chunk);
          lastFlags += w.last ? "L" : ".";
          expect(maxAbsDiff(w.samples, wave.subarray(w.chunk.start, w.chunk.end))).toBe(0);
        }
        expect(windows, `${seconds} s, blocks ≤ ${maxBlock}`).toEqual(plan);
        expect(lastFlags).toBe(`${".".repeat(plan.length - 1)}L`);
      }
    }
  });

  it("joins to the same transcript as transcribeChunked", async () => {
    const wave = signal(100 * RATE, RATE, 13);
    // A fake transcriber: one "word" per 0.4 s of the window, named by its absolute position.
    const run = async (_samples: Float32Array, chunk: AudioChunk) => {
      const words: string[] = [];
      for (let t = Math.ceil(chunk.start / (0.4 * RATE)); t * 0.4 * RATE < chunk.end; t++) words.push(`w${t}`);
      return { text: words.join(" ") };
    };
    const whole = await transcribeChunked(wave, RATE, run);
    const streamed = await transcribeChunkedStream(asAsync(blocksOf(wave, 30_000)), RATE, run);
    expect(streamed.text).toBe(whole.text);
    expect(streamed.chunks).toEqual(whole.chunks);
    expect(streamed.samples).toBe(wave.length);
  });
});
