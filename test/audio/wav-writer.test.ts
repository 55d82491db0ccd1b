import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import wavefile from "wavefile";
import { describe, expect, it } from "vitest";
import { WavStreamWriter } from "../../audio/wav-writer.ts";
import { expectCode } from "../helpers/errors.ts";

function readBack(path: string) {
  const wav = new wavefile.WaveFile(readFileSync(path));
  const fmt = wav.fmt as { sampleRate: number; numChannels: number; bitsPerSample: number; audioFormat: number };
  return { fmt, samples: wav.getSamples(false, Int16Array) as unknown as Int16Array };
}

describe("WavStreamWriter", () => {
  it("writes a 24 kHz mono 16-bit WAV that wavefile reads back sample for sample", () => {
    const dir = mkdtempSync(join(tmpdir(), "wav-writer-"));
    const path = join(dir, "out.wav");
    const w = WavStreamWriter.create(path, { sampleRateHz: 24000 });
    const a = Float32Array.from({ length: 1920 }, (_, i) => Math.sin(i / 10) * 0.5);
    w.write(a);
    w.write(Float32Array.from([1, -1, 0, 2, -3, Number.NaN]));
    expect(existsSync(path)).toBe(false); // nothing under the name until finished
    expect(w.frames).toBe(1926);
    expect(w.clippedSamples).toBe(3);
    w.finish();
    const { fmt, samples } = readBack(path);
    expect(fmt).toMatchObject({ sampleRate: 24000, numChannels: 1, bitsPerSample: 16, audioFormat: 1 });
    expect(samples.length).toBe(1926);
    expect(samples[10]).toBe(Math.round(Math.sin(1) * 0.5 * 0x7fff));
    expect(Array.from(samples.slice(1920))).toEqual([32767, -32768, 0, 32767, -32768, 0]);
    expect(readdirSync(dir)).toEqual(["out.wav"]);
  });

  it("replaces an existing file only on finish; discard leaves it as it was and no temporary file", () => {
    const dir = mkdtempSync(join(tmpdir(), "wav-writer-"));
    const path = join(dir, "keep.wav");
    writeFileSync(path, "old");
    const w = WavStreamWriter.create(path, { sampleRateHz: 16000 });
    w.write(new Float32Array(100));
    w.discard();
    expect(readFileSync(path, "utf8")).toBe("old");
    expect(readdirSync(dir)).toEqual(["keep.wav"]);
    const empty = WavStreamWriter.create(path, { sampleRateHz: 16000 });
    empty.finish();
    expect(readBack(path).samples.length).toBe(0); // a valid, empty WAV
  });

  it("reports an unwritable destination and bad settings by code", () => {
    expectCode(() => WavStreamWriter.create(join(tmpdir(), "no-such-folder-xyz", "a.wav"), { sampleRateHz: 24000 }), "OUTPUT_UNWRITABLE");
    expectCode(() => WavStreamWriter.create(join(tmpdir(), "a.wav"), { sampleRateHz: 0 }), "INVALID_ARGUMENT");
    const w = WavStreamWriter.create(join(mkdtempSync(join(tmpdir(), "wav-writer-")), "st.wav"), { sampleRateHz: 8000, channels: 2 });
    expectCode(() => w.write(new Float32Array(3)), "INVALID_ARGUMENT");
    w.finish();
    expectCode(() => w.write(new Float32Array(2)), "INVALID_ARGUMENT");
  });
});
