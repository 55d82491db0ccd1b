/**
 * The liquid-audio / NeMo log-mel front end (`AudioToMelSpectrogramPreprocessor` →
 * `FilterbankFeatures`, eval mode), from a 16 kHz mono wave to features [melBins, T]:
 *
 *   1. pre-emphasis  y[0] = x[0], y[n] = x[n] − 0.97·x[n−1]          (float32, as torch)
 *   2. STFT, centred: n_fft/2 zeros each side, T = L // hop + 1 frames; the win-length window
 *      (`hann(periodic=False)`) sits in the middle of the n_fft frame
 *   3. power |X|² = (√(re² + im²))², mel filterbank (librosa Slaney scale and area norm)
 *   4. log(mel + 2^-24)
 *   5. per-feature normalisation over the n = L // hop valid frames: (x − mean) / (std + 1e-5),
 *      std unbiased (n − 1)
 *   6. frames ≥ n (the last one) set to pad_value; liquid-audio feeds all T frames on.
 *
 * Dither is training-only and skipped. The FFT is fft.js's radix-4 real transform (in float64; the
 * reference's float32 FFT differs by ~1e-7 relative).
 */
import FFT from "fft.js";
import type { MelFrontEndConfig } from "./audio-config.ts";
import { LfmError } from "../text-core/errors.ts";

export interface MelFeatures {
  /** [melBins, frames], row-major (NeMo layout). */
  data: Float32Array;
  melBins: number;
  frames: number;
  /** Frames computed from real samples (`L // hop`); the rest are padding. */
  validFrames: number;
}

/** T = L // hop + 1 (centred STFT); the valid count excludes the final frame. */
export function melFrameCount(samples: number, hop: number): { frames: number; validFrames: number } {
  return { frames: Math.floor(samples / hop) + 1, validFrames: Math.floor(samples / hop) };
}

// ── librosa.filters.mel (htk=False, norm="slaney") ──────────────────────────────────────────
const F_SP = 200 / 3;
const MIN_LOG_HZ = 1000;
const MIN_LOG_MEL = MIN_LOG_HZ / F_SP;
const LOG_STEP = Math.log(6.4) / 27;

export function hzToMelSlaney(hz: number): number {
  return hz >= MIN_LOG_HZ ? MIN_LOG_MEL + Math.log(hz / MIN_LOG_HZ) / LOG_STEP : hz / F_SP;
}

export function melToHzSlaney(mel: number): number {
  return mel >= MIN_LOG_MEL ? MIN_LOG_HZ * Math.exp(LOG_STEP * (mel - MIN_LOG_MEL)) : F_SP * mel;
}

/** Triangular Slaney filters with area normalisation: [melBins, nFft/2 + 1], float32 like librosa's output. */
export function melFilterbank(sampleRateHz: number, nFft: number, melBins: number, lowHz: number, highHz: number): Float32Array {
  const bins = nFft / 2 + 1;
  const fftFreqs = Float64Array.from({ length: bins }, (_, k) => (k * sampleRateHz) / nFft);
  const lowMel = hzToMelSlaney(lowHz);
  const highMel = hzToMelSlaney(highHz);
  const edges = Float64Array.from({ length: melBins + 2 }, (_, i) => melToHzSlaney(lowMel + ((highMel - lowMel) * i) / (melBins + 1)));
  const fb = new Float32Array(melBins * bins);
  for (let m = 0; m < melBins; m++) {
    const [left, center, right] = [edges[m], edges[m + 1], edges[m + 2]];
    const norm = 2 / (right - left);
    for (let k = 0; k < bins; k++) {
      const rising = (fftFreqs[k] - left) / (center - left);
      const falling = (right - fftFreqs[k]) / (right - center);
      fb[m * bins + k] = Math.max(0, Math.min(rising, falling)) * norm;
    }
  }
  return fb;
}

/** torch window functions with periodic=False (symmetric), as float32. */
export function analysisWindow(kind: MelFrontEndConfig["window"], length: number): Float32Array {
  const w = new Float32Array(length);
  const N = length - 1;
  for (let n = 0; n < length; n++) {
    const phase = N === 0 ? 0 : (2 * Math.PI * n) / N;
    switch (kind) {
      case "hann":
        w[n] = 0.5 - 0.5 * Math.cos(phase);
        break;
      case "hamming":
        w[n] = 0.54 - 0.46 * Math.cos(phase);
        break;
      case "blackman":
        w[n] = 0.42 - 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase);
        break;
      case "bartlett":
        w[n] = N === 0 ? 1 : 1 - Math.abs((2 * n) / N - 1);
        break;
      case "none":
        w[n] = 1;
        break;
    }
  }
  return w;
}

/** Computes features for a clip; reuse one instance (it keeps the FFT plan, window and filterbank). */
export class MelFrontEnd {
  private readonly fft: FFT;
  private readonly window: Float32Array;
  private readonly filterbank: Float32Array;
  /** Per mel bin, the FFT bins [first, last) where its triangle is nonzero (a few of 257). */
  private readonly support: Array<[number, number]>;
  private readonly bins: number;

  constructor(readonly config: MelFrontEndConfig) {
    this.fft = new FFT(config.nFft);
    this.window = analysisWindow(config.window, config.windowSamples);
    this.bins = config.nFft / 2 + 1;
    this.filterbank = melFilterbank(config.sampleRateHz, config.nFft, config.melBins, config.lowFreqHz, config.highFreqHz);
    this.support = Array.from({ length: config.melBins }, (_, m) => {
      const row = this.filterbank.subarray(m * this.bins, (m + 1) * this.bins);
      const first = row.findIndex((w) => w !== 0);
      if (first < 0) return [0, 0];
      let last = this.bins;
      while (row[last - 1] === 0) last--;
      return [first, last];
    });
  }

  /** Fewest samples that give the two valid frames the normalisation needs. */
  get minSamples(): number {
    return 2 * this.config.hopSamples;
  }

  /** Features of a mono wave at `config.sampleRateHz`. */
  compute(wave: Float32Array): MelFeatures {
    const { hopSamples: hop, nFft, windowSamples, melBins } = this.config;
    const L = wave.length;
    if (L === 0) throw new LfmError("AUDIO_EMPTY", "the audio has no samples.");
    if (L < this.minSamples) {
      throw new LfmError(
        "AUDIO_TOO_SHORT",
        `the audio is ${((1000 * L) / this.config.sampleRateHz).toFixed(1)} ms long; at least ${((1000 * this.minSamples) / this.config.sampleRateHz).toFixed(0)} ms is needed for features.`,
      );
    }
    const { frames, validFrames } = melFrameCount(L, hop);
    const emphasised = this.preEmphasis(wave);

    // Power spectrum → mel → log, frame by frame. out[m, t].
    const out = new Float32Array(melBins * frames);
    const frame = new Float64Array(nFft);
    const spectrum = this.fft.createComplexArray() as number[];
    const power = new Float64Array(this.bins);
    const half = nFft / 2;
    const windowOffset = Math.floor((nFft - windowSamples) / 2);
    const guard = this.config.logGuard;
    for (let t = 0; t < frames; t++) {
      frame.fill(0);
      // Frame t covers padded samples [t·hop, t·hop + nFft), i.e. wave[t·hop − nFft/2 + j].
      for (let j = 0; j < windowSamples; j++) {
        const i = t * hop - half + windowOffset + j;
        if (i >= 0 && i < L) frame[windowOffset + j] = emphasised[i] * this.window[j];
      }
      this.fft.realTransform(spectrum, frame);
      for (let k = 0; k < this.bins; k++) {
        const re = spectrum[2 * k];
        const im = spectrum[2 * k + 1];
        const magnitude = Math.fround(Math.sqrt(re * re + im * im));
        power[k] = this.config.magPower === 2 ? magnitude * magnitude : magnitude ** this.config.magPower;
      }
      for (let m = 0; m < melBins; m++) {
        let acc = 0;
        const row = m * this.bins;
        const [first, last] = this.support[m];
        for (let k = first; k < last; k++) acc += this.filterbank[row + k] * power[k];
        out[m * frames + t] = this.config.log ? Math.log(acc + guard) : acc;
      }
    }
    this.normalize(out, melBins, frames, validFrames);
    // NeMo zeroes (pad_value) every frame at or beyond the valid length.
    for (let m = 0; m < melBins; m++) out.fill(this.config.padValue, m * frames + validFrames, (m + 1) * frames);
    return this.padded({ data: out, melBins, frames, validFrames });
  }

  /** y[n] = x[n] − p·x[n−1], rounded as torch's float32 ops round. */
  private preEmphasis(wave: Float32Array): Float32Array {
    const p = Math.fround(this.config.preemphasis);
    if (p === 0) return wave;
    const y = new Float32Array(wave.length);
    y[0] = wave[0];
    for (let n = 1; n < wave.length; n++) y[n] = wave[n] - Math.fround(p * wave[n - 1]);
    return y;
  }

  private normalize(x: Float32Array, melBins: number, frames: number, n: number): void {
    const mode = this.config.normalize;
    if (mode === "none") return;
    const CONSTANT = 1e-5;
    if (mode === "per_feature") {
      for (let m = 0; m < melBins; m++) {
        const row = m * frames;
        let sum = 0;
        for (let t = 0; t < n; t++) sum += x[row + t];
        const mean = sum / n;
        let sq = 0;
        for (let t = 0; t < n; t++) sq += (x[row + t] - mean) ** 2;
        const std = n > 1 ? Math.sqrt(sq / (n - 1)) : 0; // NeMo: NaN → 0
        const scale = 1 / (std + CONSTANT);
        for (let t = 0; t < frames; t++) x[row + t] = (x[row + t] - mean) * scale;
      }
      return;
    }
    // all_features: one mean and (unbiased) std over every bin of the valid frames.
    let sum = 0;
    for (let m = 0; m < melBins; m++) for (let t = 0; t < n; t++) sum += x[m * frames + t];
    const count = melBins * n;
    const mean = sum / count;
    let sq = 0;
    for (let m = 0; m < melBins; m++) for (let t = 0; t < n; t++) sq += (x[m * frames + t] - mean) ** 2;
    const std = count > 1 ? Math.sqrt(sq / (count - 1)) : 0;
    for (let i = 0; i < x.length; i++) x[i] = (x[i] - mean) / (std + CONSTANT);
  }

  /** NeMo's `pad_to`: frames padded with pad_value up to a multiple (liquid-audio: 0, none). */
  private padded(f: MelFeatures): MelFeatures {
    const padTo = this.config.padTo;
    if (padTo <= 0 || f.frames % padTo === 0) return f;
    const frames = f.frames + (padTo - (f.frames % padTo));
    const data = new Float32Array(f.melBins * frames).fill(this.config.padValue);
    for (let m = 0; m < f.melBins; m++) data.set(f.data.subarray(m * f.frames, (m + 1) * f.frames), m * frames);
    return { ...f, data, frames };
  }
}
