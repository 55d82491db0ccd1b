/**
 * Band-limited resampling with torchaudio's default `functional.resample` filter
 * (`sinc_interp_hann`, lowpass_filter_width 6, rolloff 0.99), which liquid-audio applies to every
 * clip before the mel front end.
 *
 * torchaudio builds, for the reduced ratio orig:new (both divided by their gcd), one windowed-sinc
 * kernel per output phase and runs them as a strided conv1d over the zero-padded input. Output n
 * then reads input i with weight
 *
 *   t = clamp(base · (i/orig − n/new), ±W),   base = min(orig, new) · rolloff
 *   k(t) = sinc(π t) · cos²(π t / 2W) · base / orig
 *
 * and has ceil(new · L / orig) samples. Only |t| < W contributes (the clamped taps are ~1e-23), so
 * here each phase's nonzero taps are computed once and applied directly: the same sums, for any
 * pair of rates, without the orig-wide kernel rows torchaudio materialises.
 */
import { LfmError } from "../text-core/errors.ts";

const LOWPASS_FILTER_WIDTH = 6;
const ROLLOFF = 0.99;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** Output length torchaudio gives for `length` input samples. */
export function resampledLength(length: number, fromHz: number, toHz: number): number {
  const g = gcd(fromHz, toHz);
  const orig = fromHz / g;
  const next = toHz / g;
  return Math.ceil((next * length) / orig);
}

interface PhaseTaps {
  /** First input index relative to frame k's origin k·orig. */
  start: number;
  weights: Float32Array;
}

/**
 * The taps of output phase j (outputs n = k·new + j) relative to input k·orig, evaluated step by
 * step in float32 as torchaudio evaluates its float32 kernel: t carries float32 rounding of
 * ~1e-5 (it is ~100 × a value below 1), which shows in the output at the 1e-6 level and, through
 * the log, in the quiet mel bins near the cutoff.
 */
function phaseTaps(j: number, orig: number, next: number, base: number): PhaseTaps {
  const f = Math.fround;
  const W = LOWPASS_FILTER_WIDTH;
  const center = (j * orig) / next; // position of output n in input samples, relative to k·orig
  const reach = (W * orig) / base; // |i − center| < reach ⇔ |t| < W
  const start = Math.ceil(center - reach);
  const end = Math.floor(center + reach);
  const weights = new Float32Array(Math.max(0, end - start + 1));
  const base32 = f(base);
  const pi32 = f(Math.PI);
  const scale32 = f(base / orig);
  const phase = f(-j / next);
  for (let m = start; m <= end; m++) {
    let t = f(f(f(m / orig) + phase) * base32);
    t = Math.max(-W, Math.min(W, t));
    const c = f(Math.cos(f(f(f(t * pi32) / W) / 2)));
    const window = f(c * c);
    const x = f(t * pi32);
    const sinc = x === 0 ? 1 : f(f(Math.sin(x)) / x);
    weights[m - start] = f(sinc * f(window * scale32));
  }
  return { start, weights };
}

/** Resamples mono `samples` from `fromHz` to `toHz` (identity when equal, as torchaudio). */
export function resample(samples: Float32Array, fromHz: number, toHz: number): Float32Array {
  if (!Number.isInteger(fromHz) || !Number.isInteger(toHz) || fromHz <= 0 || toHz <= 0) {
    throw new LfmError("INVALID_ARGUMENT", `resample needs positive integer rates (got ${fromHz} → ${toHz} Hz).`);
  }
  if (fromHz === toHz) return samples;
  const g = gcd(fromHz, toHz);
  const orig = fromHz / g;
  const next = toHz / g;
  const base = Math.min(orig, next) * ROLLOFF;
  const L = samples.length;
  const outLength = Math.ceil((next * L) / orig);
  const out = new Float32Array(outLength);
  const phases: PhaseTaps[] = [];
  for (let j = 0; j < Math.min(next, outLength); j++) phases.push(phaseTaps(j, orig, next, base));
  for (let n = 0; n < outLength; n++) {
    const k = Math.floor(n / next);
    const { start, weights } = phases[n - k * next];
    const first = k * orig + start;
    // Taps outside [0, L) read torchaudio's zero padding.
    const lo = Math.max(0, -first);
    const hi = Math.min(weights.length, L - first);
    let acc = 0;
    for (let m = lo; m < hi; m++) acc += weights[m] * samples[first + m];
    out[n] = acc;
  }
  return out;
}

/**
 * `resample` for a signal that arrives in blocks: `push` returns the outputs whose taps have all
 * arrived, `finish` the rest (the tail reads the zero padding, as the whole-signal call does). The
 * taps, their order and the float32 rounding are `resample`'s, so the concatenated outputs equal
 * `resample` of the concatenated input sample for sample; only the input still under a tap is kept.
 */
export class StreamingResampler {
  private readonly orig: number;
  private readonly next: number;
  private readonly phases: PhaseTaps[] = [];
  private readonly identity: boolean;
  /** Input from absolute index `bufferStart`, `bufferLength` samples of it valid. */
  private buffer = new Float32Array(0);
  private bufferStart = 0;
  private bufferLength = 0;
  private received = 0;
  /** Index of the next output sample. */
  private produced = 0;
  private finished = false;

  constructor(
    readonly fromHz: number,
    readonly toHz: number,
  ) {
    if (!Number.isInteger(fromHz) || !Number.isInteger(toHz) || fromHz <= 0 || toHz <= 0) {
      throw new LfmError("INVALID_ARGUMENT", `resample needs positive integer rates (got ${fromHz} → ${toHz} Hz).`);
    }
    this.identity = fromHz === toHz;
    const g = gcd(fromHz, toHz);
    this.orig = fromHz / g;
    this.next = toHz / g;
    if (!this.identity) {
      const base = Math.min(this.orig, this.next) * ROLLOFF;
      for (let j = 0; j < this.next; j++) this.phases.push(phaseTaps(j, this.orig, this.next, base));
    }
  }

  /** Takes the next input block; returns the output samples now complete (maybe none; at equal rates, `block` itself). */
  push(block: Float32Array): Float32Array {
    if (this.finished) throw new LfmError("INVALID_ARGUMENT", "this resampler has already finished.");
    if (this.identity) {
      this.received += block.length;
      return block;
    }
    this.append(block);
    return this.emit(false);
  }

  /** Ends the input: returns the remaining outputs (up to `resampledLength` of all input). */
  finish(): Float32Array {
    if (this.finished) throw new LfmError("INVALID_ARGUMENT", "this resampler has already finished.");
    this.finished = true;
    if (this.identity) return new Float32Array(0);
    return this.emit(true);
  }

  /** Outputs n from `produced` on: while their last tap has arrived, or all of them at the end. */
  private emit(atEnd: boolean): Float32Array {
    const { orig, next, phases } = this;
    const L = this.received;
    // Every output a push can complete lies below the final length too (its centre is < L).
    const limit = Math.ceil((next * L) / orig);
    const out = new Float32Array(Math.max(0, limit - this.produced));
    let count = 0;
    for (let n = this.produced; n < limit; n++) {
      const k = Math.floor(n / next);
      const { start, weights } = phases[n - k * next];
      const first = k * orig + start;
      if (!atEnd && first + weights.length > L) break;
      const lo = Math.max(0, -first);
      const hi = Math.min(weights.length, L - first);
      const at = first - this.bufferStart;
      let acc = 0;
      for (let m = lo; m < hi; m++) acc += weights[m] * this.buffer[at + m];
      out[count++] = acc;
      this.produced = n + 1;
    }
    this.dropBefore(this.firstTapOf(this.produced));
    return out.subarray(0, count);
  }

  private firstTapOf(n: number): number {
    const k = Math.floor(n / this.next);
    return Math.max(0, k * this.orig + this.phases[n - k * this.next].start);
  }

  private append(block: Float32Array): void {
    const needed = this.bufferLength + block.length;
    if (needed > this.buffer.length) {
      const grown = new Float32Array(Math.max(needed, 2 * this.buffer.length, 4096));
      grown.set(this.buffer.subarray(0, this.bufferLength));
      this.buffer = grown;
    }
    this.buffer.set(block, this.bufferLength);
    this.bufferLength = needed;
    this.received += block.length;
  }

  /** Forgets input before absolute index `index` (no later output reads it). */
  private dropBefore(index: number): void {
    const drop = Math.min(this.bufferLength, index - this.bufferStart);
    if (drop <= 0) return;
    this.buffer.copyWithin(0, drop, this.bufferLength);
    this.bufferLength -= drop;
    this.bufferStart += drop;
  }
}

/** Resamples blocks as they come, through a `StreamingResampler` (the same samples as `resample` of their concatenation). */
export async function* resampleBlocks(blocks: AsyncIterable<Float32Array>, fromHz: number, toHz: number): AsyncGenerator<Float32Array> {
  const resampler = new StreamingResampler(fromHz, toHz);
  for await (const block of blocks) {
    const out = resampler.push(block);
    if (out.length > 0) yield out;
  }
  const rest = resampler.finish();
  if (rest.length > 0) yield rest;
}
