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
