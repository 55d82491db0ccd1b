import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { loadLfm2AudioConfig } from "../../audio/audio-config.ts";
import { MelFrontEnd, hzToMelSlaney, melFilterbank, melFrameCount, melToHzSlaney } from "../../audio/mel.ts";
import { resample, resampledLength } from "../../audio/resample.ts";
import { readAudioFile } from "../../audio/audio-file.ts";
import { FIXTURES, ReferenceTensors, errorStats, readJson } from "../helpers/reference.ts";

interface ClipRef {
  file: string;
  sr: number;
  samples16k: number;
  mel_frames: number;
}
const ref = new ReferenceTensors("audio/reference.safetensors");
const clips = readJson<{ clips: ClipRef[] }>("audio/reference.json").clips;
const config = loadLfm2AudioConfig(join(FIXTURES, "audio/tiny-lfm2-audio"));
const frontEnd = new MelFrontEnd(config.preprocessor);
const load = (file: string) => readAudioFile(join(FIXTURES, "audio/clips", file));

describe("resampling matches torchaudio.functional.resample (sinc_interp_hann, width 6, rolloff 0.99)", () => {
  for (const c of clips) {
    it(`${c.file}: ${c.sr} Hz → 16 kHz`, async () => {
      const clip = await load(c.file);
      const wave = resample(clip.samples, clip.sampleRateHz, 16000);
      expect(wave.length).toBe(c.samples16k);
      const s = errorStats(wave, ref.float(`${c.file}.wave16k`));
      // Measured: 0 (16 kHz, identity), 1.2e-7 (24 kHz), 8.9e-8 (44.1 kHz stereo).
      expect(s.maxAbs).toBeLessThanOrEqual(1e-6);
    });
  }

  it("keeps a pass-band tone, removes a tone above the new Nyquist, and has torchaudio's length rule", () => {
    const rate = 44100;
    const sine = (f: number) => Float32Array.from({ length: rate }, (_, i) => Math.sin((2 * Math.PI * f * i) / rate));
    const rms = (x: Float32Array) => Math.sqrt(x.slice(2000, -2000).reduce((s, v) => s + v * v, 0) / (x.length - 4000));
    expect(rms(resample(sine(1000), rate, 16000))).toBeCloseTo(Math.SQRT1_2, 2);
    expect(rms(resample(sine(12000), rate, 16000))).toBeLessThan(5e-3); // ≈ −55 dB stop band
    expect(resampledLength(111204, 44100, 16000)).toBe(40347);
    expect(resampledLength(10, 8000, 16000)).toBe(20);
    // An odd rate pair (gcd 1) works without torchaudio's rate-wide kernel rows.
    expect(resample(sine(440), 44101, 16000).length).toBe(resampledLength(44100, 44101, 16000));
  });
});

describe("log-mel features match liquid-audio's NeMo front end (max abs ≤ 1e-3)", () => {
  for (const c of clips) {
    it(`${c.file}: from our own resampled wave`, async () => {
      const clip = await load(c.file);
      const mel = frontEnd.compute(resample(clip.samples, clip.sampleRateHz, 16000));
      const expected = ref.float(`${c.file}.mel`);
      expect([mel.melBins, mel.frames]).toEqual(ref.shape(`${c.file}.mel`));
      expect(mel.validFrames).toBe(c.mel_frames);
      // Measured: 5.6e-5 (en), 7.6e-5 (fr), 5.2e-5 (de).
      expect(errorStats(mel.data, expected).maxAbs).toBeLessThanOrEqual(1e-3);
      // The terminal frame is padding (pad_value 0).
      for (let m = 0; m < mel.melBins; m++) expect(mel.data[m * mel.frames + mel.frames - 1]).toBe(0);
    });
  }

  it("counts frames as a centred STFT: T = L // hop + 1, valid L // hop", () => {
    expect(melFrameCount(72046, 160)).toEqual({ frames: 451, validFrames: 450 });
    expect(melFrameCount(320, 160)).toEqual({ frames: 3, validFrames: 2 });
  });

  it("builds librosa's Slaney filterbank: the Slaney mel scale and unit-area triangles", () => {
    expect(hzToMelSlaney(1000)).toBeCloseTo(15, 10);
    expect(melToHzSlaney(hzToMelSlaney(3456))).toBeCloseTo(3456, 6);
    const fb = melFilterbank(16000, 512, 128, 0, 8000);
    const bins = 257;
    const binHz = 16000 / 512;
    for (const m of [0, 40, 127]) {
      const area = fb.subarray(m * bins, (m + 1) * bins).reduce((s, w) => s + w, 0) * binHz;
      expect(area).toBeGreaterThan(0.5); // ≈ 1 (sampled triangles), far from the un-normalised ~width/2
      expect(area).toBeLessThan(1.5);
    }
  });

  it("refuses audio too short for the normalisation (AUDIO_TOO_SHORT) and empty audio (AUDIO_EMPTY)", () => {
    expect(() => frontEnd.compute(new Float32Array(100))).toThrow(expect.objectContaining({ code: "AUDIO_TOO_SHORT" }));
    expect(() => frontEnd.compute(new Float32Array(0))).toThrow(expect.objectContaining({ code: "AUDIO_EMPTY" }));
    expect(frontEnd.compute(new Float32Array(320)).frames).toBe(3);
  });
});
