/**
 * Next-token selection with HF transformers' semantics and order: repetition penalty, then
 * temperature, top-k, top-p, min-p, then a draw from the softmax (seeded) — or argmax when the
 * temperature is 0.
 */
import { LfmError } from "./errors.ts";

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** HF `repetition_penalty` over prompt and generated tokens; 1 = off. */
  repetitionPenalty?: number;
  /** Seed for reproducible sampling; default: random. */
  seed?: number;
}

export function validateSampling(o: SamplingOptions): void {
  const bad = (what: string) => {
    throw new LfmError("INVALID_ARGUMENT", what);
  };
  if (o.temperature !== undefined && !(o.temperature >= 0)) bad(`temperature must be ≥ 0 (got ${o.temperature})`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad(`topK must be a non-negative integer (got ${o.topK})`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad(`topP must be in (0, 1] (got ${o.topP})`);
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad(`minP must be in [0, 1] (got ${o.minP})`);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0)) bad(`repetitionPenalty must be > 0 (got ${o.repetitionPenalty})`);
}

/** xoshiro128** — small, fast, and identical on every platform for a given seed. */
export class Rng {
  private s = new Uint32Array(4);
  constructor(seed: number) {
    // splitmix32 to spread the seed over the state.
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export function argmax(row: Float32Array): number {
  let best = 0;
  let bestValue = row[0];
  for (let i = 1; i < row.length; i++) {
    if (row[i] > bestValue) {
      bestValue = row[i];
      best = i;
    }
  }
  return best;
}

export class Sampler {
  private readonly rng: Rng;
  constructor(private readonly opts: SamplingOptions) {
    validateSampling(opts);
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  get greedy(): boolean {
    return !this.opts.temperature;
  }

  /** Picks the next token from one row of logits; `seen` = prompt and generated ids so far. */
  pick(logits: Float32Array, seen: Iterable<number>): number {
    const o = this.opts;
    let scores = logits;
    if (o.repetitionPenalty !== undefined && o.repetitionPenalty !== 1) {
      scores = Float32Array.from(logits);
      for (const id of new Set(seen)) {
        const v = scores[id];
        scores[id] = v < 0 ? v * o.repetitionPenalty : v / o.repetitionPenalty;
      }
    }
    if (this.greedy) return argmax(scores);

    // Candidates as (id, scaled logit), pruned by each warper in HF's order.
    const t = o.temperature as number;
    let ids = Array.from({ length: scores.length }, (_, i) => i);
    const value = (i: number) => scores[i] / t;
    ids.sort((a, b) => value(b) - value(a));
    if (o.topK && o.topK < ids.length) {
      const kth = value(ids[o.topK - 1]);
      ids = ids.filter((i) => value(i) >= kth); // ties with the k-th are kept, as torch.topk thresholding does
    }
    let probs = softmax(ids.map(value));
    if (o.topP !== undefined && o.topP < 1) {
      // HF removes the low tail whose cumulative mass is ≤ 1 - top_p, keeping at least one token.
      let tail = 0;
      let cut = ids.length;
      for (let j = ids.length - 1; j > 0; j--) {
        tail += probs[j];
        if (tail <= 1 - o.topP) cut = j;
        else break;
      }
      ids = ids.slice(0, cut);
      probs = softmax(ids.map(value));
    }
    if (o.minP) {
      const threshold = o.minP * probs[0];
      const keepCount = Math.max(1, probs.filter((p) => p >= threshold).length);
      ids = ids.slice(0, keepCount);
      probs = softmax(ids.map(value));
    }
    let r = this.rng.next();
    for (let j = 0; j < ids.length; j++) {
      r -= probs[j];
      if (r < 0) return ids[j];
    }
    return ids[ids.length - 1];
  }
}

function softmax(values: number[]): number[] {
  let max = -Infinity;
  for (const v of values) if (v > max) max = v;
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}
