import { describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import wavefile from "wavefile";
import { decodeWav, readWavFile } from "../../audio/wav.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";

interface ClipRef {
  file: string;
  sr: number;
  channels: number;
  samples: number;
}
const clips = readJson<{ clips: ClipRef[] }>("audio/reference.json").clips;
const tmp = mkdtempSync(join(tmpdir(), "lfm-wav-test-"));

/** A 16-bit-scale test tone. */
const tone = Array.from({ length: 800 }, (_, i) => Math.round(12000 * Math.sin(i * 0.05)));

function wavBytes(channels: number, rate: number, bitDepth: string, samples: number[] | number[][]): Uint8Array {
  const w = new wavefile.WaveFile();
  w.fromScratch(channels, rate, bitDepth, samples);
  return w.toBuffer();
}

/** A canonical 44-byte-header PCM WAV written by hand, for headers wavefile would not produce. */
function handWav(opts: { format?: number; channels?: number; rate?: number; bits?: number; data: Uint8Array; declaredData?: number; extensibleSubformat?: number }): Uint8Array {
  const { format = 1, channels = 1, rate = 16000, bits = 16, data } = opts;
  const ext = opts.extensibleSubformat !== undefined;
  const fmtSize = ext ? 40 : 16;
  const header = Buffer.alloc(12 + 8 + fmtSize + 8);
  const blockAlign = (channels * bits) / 8;
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(header.length - 8 + data.length, 4);
  header.write("WAVE", 8, "ascii");
  header.write("fmt ", 12, "ascii");
  header.writeUInt32LE(fmtSize, 16);
  header.writeUInt16LE(ext ? 0xfffe : format, 20);
  header.writeUInt16LE(channels, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * blockAlign, 28);
  header.writeUInt16LE(blockAlign, 32);
  header.writeUInt16LE(bits, 34);
  let at = 36;
  if (ext) {
    header.writeUInt16LE(22, 36);
    header.writeUInt16LE(bits, 38);
    header.writeUInt32LE(0, 40);
    header.writeUInt32LE(opts.extensibleSubformat as number, 44); // GUID's first 4 bytes: the format code
    header.writeUInt32LE(0x00100000, 48);
    header.writeUInt32LE(0xaa000080, 52);
    header.writeUInt32LE(0x719b3800, 56);
    at = 60;
  }
  header.write("data", at, "ascii");
  header.writeUInt32LE(opts.declaredData ?? data.length, at + 4);
  return new Uint8Array(Buffer.concat([header, data]));
}

const code = (c: string) => expect.objectContaining({ code: c });

describe("WAV reading", () => {
  it("reads the three espeak-ng clips: encoding, channels, rate and length as the reference", () => {
    const expected: Record<string, string> = { "speech_en_16k.wav": "pcm16", "speech_fr_44k_stereo.wav": "pcm16", "speech_de_24k_f32.wav": "float32" };
    for (const c of clips) {
      const clip = readWavFile(join(FIXTURES, "audio/clips", c.file));
      expect(clip.sampleRateHz).toBe(c.sr);
      expect(clip.channels).toBe(c.channels);
      expect(clip.samples.length).toBe(c.samples);
      expect(clip.encoding).toBe(expected[c.file]);
    }
  });

  it("scales every linear encoding as torchaudio does (int / 2^(bits-1), uint8 around 128, float as stored)", () => {
    const cases: Array<[string, (v: number) => number, string]> = [
      ["8", (v) => Math.round(v / 256) + 128, "pcm8"],
      ["16", (v) => v, "pcm16"],
      ["24", (v) => v * 256, "pcm24"],
      ["32", (v) => v * 65536, "pcm32"],
      ["32f", (v) => v / 32768, "float32"],
      ["64", (v) => v / 32768, "float64"],
    ];
    for (const [depth, encode, encoding] of cases) {
      const clip = decodeWav(wavBytes(1, 22050, depth, tone.map(encode)), depth);
      expect(clip.encoding).toBe(encoding);
      expect(clip.samples.length).toBe(tone.length);
      const tol = depth === "8" ? 1 / 128 : 1e-6;
      for (let i = 0; i < tone.length; i += 37) expect(Math.abs(clip.samples[i] - tone[i] / 32768)).toBeLessThanOrEqual(tol);
    }
  });

  it("averages any number of channels to mono", () => {
    const left = tone;
    const right = tone.map((v) => Math.round(v / 2));
    const third = tone.map(() => 3000);
    const stereo = decodeWav(wavBytes(2, 16000, "16", [left, right]));
    expect(stereo.channels).toBe(2);
    for (let i = 0; i < tone.length; i += 41) expect(stereo.samples[i]).toBeCloseTo((left[i] + right[i]) / 2 / 32768, 6);
    const three = decodeWav(wavBytes(3, 16000, "24", [left, right, third].map((ch) => ch.map((v) => v * 256))));
    for (let i = 0; i < tone.length; i += 41) expect(three.samples[i]).toBeCloseTo((left[i] + right[i] + third[i]) / 3 / 32768, 6);
  });

  it("decodes A-law, µ-law and IMA ADPCM through wavefile", () => {
    for (const encoding of ["alaw", "mulaw", "ima-adpcm"]) {
      const w = new wavefile.WaveFile();
      w.fromScratch(1, 8000, "16", tone);
      if (encoding === "alaw") w.toALaw();
      else if (encoding === "mulaw") w.toMuLaw();
      else w.toIMAADPCM();
      const clip = decodeWav(w.toBuffer(), encoding);
      expect(clip.encoding).toBe(encoding);
      for (let i = 20; i < 200; i += 23) expect(Math.abs(clip.samples[i] - tone[i] / 32768)).toBeLessThan(0.03);
    }
  });

  it("reads WAVE_FORMAT_EXTENSIBLE float data as float (its subformat, not the 32-bit integer wavefile would assume)", () => {
    const values = new Float32Array([0.5, -0.25, 0.125, 0]);
    const clip = decodeWav(handWav({ bits: 32, data: new Uint8Array(values.buffer), extensibleSubformat: 3 }));
    expect(clip.encoding).toBe("float32");
    expect(Array.from(clip.samples)).toEqual([0.5, -0.25, 0.125, 0]);
  });
});

describe("bad audio input gives typed errors", () => {
  const file = (name: string, bytes: Uint8Array | string) => {
    const p = join(tmp, name);
    writeFileSync(p, bytes);
    return p;
  };

  it("not audio at all → WAV_INVALID; a missing file → FILE_NOT_FOUND; an empty file → AUDIO_EMPTY", () => {
    expect(() => readWavFile(file("notes.wav", "these are meeting notes, not audio"))).toThrow(code("WAV_INVALID"));
    expect(() => readWavFile(join(tmp, "missing.wav"))).toThrow(code("FILE_NOT_FOUND"));
    expect(() => readWavFile(tmp)).toThrow(code("FILE_NOT_FOUND"));
    expect(() => readWavFile(file("empty.wav", new Uint8Array(0)))).toThrow(code("AUDIO_EMPTY"));
  });

  it("compressed formats are named (WAV_UNSUPPORTED) with a conversion hint", () => {
    const mp3 = new Uint8Array([0x49, 0x44, 0x33, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const flac = new Uint8Array([...Buffer.from("fLaC"), 0, 0, 0, 34, 0, 0, 0, 0]);
    const ogg = new Uint8Array([...Buffer.from("OggS"), 0, 2, 0, 0, 0, 0, 0, 0]);
    for (const [name, bytes, kind] of [["a.mp3", mp3, "MP3"], ["a.flac", flac, "FLAC"], ["a.ogg", ogg, "Ogg"]] as const) {
      expect(() => readWavFile(file(name, bytes))).toThrow(expect.objectContaining({ code: "WAV_UNSUPPORTED", message: expect.stringMatching(new RegExp(`${kind}[\\s\\S]*ffmpeg`)) }));
    }
  });

  it("a truncated header or truncated audio data → WAV_INVALID", () => {
    const whole = wavBytes(1, 16000, "16", tone);
    expect(() => decodeWav(whole.subarray(0, 30))).toThrow(code("WAV_INVALID"));
    expect(() => decodeWav(whole.subarray(0, whole.length - 301))).toThrow(expect.objectContaining({ code: "WAV_INVALID", message: expect.stringContaining("truncated") }));
    expect(() => decodeWav(handWav({ data: new Uint8Array(100), declaredData: 4000 }))).toThrow(expect.objectContaining({ code: "WAV_INVALID", message: expect.stringContaining("truncated") }));
  });

  it("zero-length audio → AUDIO_EMPTY", () => {
    expect(() => decodeWav(handWav({ data: new Uint8Array(0) }))).toThrow(code("AUDIO_EMPTY"));
  });

  it("an unsupported encoding or an absurd sample rate → WAV_UNSUPPORTED", () => {
    expect(() => decodeWav(handWav({ format: 0x55, bits: 16, data: new Uint8Array(64) }))).toThrow(expect.objectContaining({ code: "WAV_UNSUPPORTED", message: expect.stringContaining("0x55") }));
    expect(() => decodeWav(handWav({ bits: 12, data: new Uint8Array(64) }))).toThrow(code("WAV_UNSUPPORTED"));
    expect(() => decodeWav(handWav({ rate: 1, data: new Uint8Array(64) }))).toThrow(expect.objectContaining({ code: "WAV_UNSUPPORTED", message: expect.stringContaining("1 Hz") }));
    expect(() => decodeWav(handWav({ rate: 10_000_000, data: new Uint8Array(64) }))).toThrow(code("WAV_UNSUPPORTED"));
  });

  it("a recording longer than the memory limit → AUDIO_TOO_LONG, before it is read whole", () => {
    expect(() => decodeWav(wavBytes(1, 16000, "16", tone), "x", { maxSeconds: 0.01 })).toThrow(code("AUDIO_TOO_LONG"));
    // A header claiming 6 hours over a 2 MB file: refused from the header probe.
    const data = new Uint8Array(2 << 20);
    const big = handWav({ data, declaredData: 6 * 3600 * 32000 });
    expect(() => readWavFile(file("six-hours.wav", big))).toThrow(code("AUDIO_TOO_LONG"));
  });

  it("NaN in float data → WAV_INVALID", () => {
    const values = new Float32Array([0.1, Number.NaN, 0.2, 0.3]);
    expect(() => decodeWav(handWav({ format: 3, bits: 32, data: new Uint8Array(values.buffer) }))).toThrow(code("WAV_INVALID"));
  });
});
