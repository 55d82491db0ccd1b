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
  private readonly candidates = new Candidates();

  constructor(private readonly opts: SamplingOptions) {
    validateSampling(opts);
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  get greedy(): boolean {
    return !this.opts.temperature;
  }

  /**
   * Picks the next token from one row of logits; `seen` = prompt and generated ids so far.
   *
   * The result is that of sorting every id by (scaled logit desc, id asc), cutting the list with
   * top-k, top-p and min-p as HF does, and walking the survivors' softmax in that order with one
   * uniform draw. Only the ids near a cut or near the draw are actually sorted (see `Candidates`).
   */
  pick(logits: Float32Array, seen: Iterable<number>): number {
    const id = this.choose(logits, seen);
    // NaN compares false, so a row of NaN (corrupt weights, an overflow) would quietly give id 0
    // forever; the chosen id's logit is finite in any usable row (a grammar mask's −∞ is never chosen).
    if (!Number.isFinite(logits[id])) {
      throw new LfmError(
        "NON_FINITE_LOGITS",
        `the model computed ${logits[id]} as its best next-token logit: its weights hold NaN or infinite values, or overflow at this precision. ` +
          "Check the checkpoint (a complete download?), or try precision fp32.",
      );
    }
    return id;
  }

  private choose(logits: Float32Array, seen: Iterable<number>): number {
    const o = this.opts;
    let scores = logits;
    if (o.repetitionPenalty !== undefined && o.repetitionPenalty !== 1) {
      scores = logits.slice();
      for (const id of new Set(seen)) {
        const v = scores[id];
        scores[id] = v < 0 ? v * o.repetitionPenalty : v / o.repetitionPenalty;
      }
    }
    if (this.greedy) return argmax(scores);

    const c = this.candidates;
    const top = c.load(scores, o.temperature as number, o.topK ?? 0, o.minP ?? 0);
    if (top >= 0) return top;
    // Top-p then min-p each keep a head of the sorted list; the shorter head wins.
    let keep = c.count;
    if (o.topP !== undefined && o.topP < 1) keep = c.topPKeep(o.topP, o.minP ? c.aboveMinP : keep);
    if (o.minP) keep = Math.min(keep, c.aboveMinP);
    return c.draw(keep, this.rng.next());
  }
}

/** Bucket b holds the ids whose scaled logit is in (max - (b+1)/8, max - b/8]; the last also all deeper. */
const PER_NAT = 8;
const BUCKETS = 64 * PER_NAT;

/**
 * The candidate ids of one pick, in sorted order (scaled logit desc, id asc) on demand.
 *
 * One pass computes every weight exp(x - max) and a histogram of weights by bucket (how far below
 * the maximum, in 1/8 nats). Cuts and the draw walk whole buckets by their mass; only a bucket in
 * which a cut or the draw lands is gathered (one more pass, for all the buckets above it at once)
 * and sorted. On a 65536-entry vocabulary that is ~1–2 ms instead of sorting every id.
 */
class Candidates {
  private value = new Float64Array(0); // scaled logits, -Infinity for NaN
  private weight = new Float64Array(0); // exp(value - max); 0 = not a candidate (top-k, underflow)
  private order = new Int32Array(0); // ids grouped by bucket from start[b]; sorted where sorted[b]
  private scratch = new Float64Array(0);
  private readonly bucketCount = new Int32Array(BUCKETS);
  private readonly start = new Int32Array(BUCKETS + 1);
  private readonly mass = new Float64Array(BUCKETS);
  private readonly sorted = new Uint8Array(BUCKETS);
  private gathered = -1; // buckets 0..gathered are in `order`
  private max = 0;
  /** Σ weights, number of candidates, number with weight ≥ min_p (at least 1). */
  total = 0;
  count = 0;
  aboveMinP = 0;

  /** Scales and weighs a row; returns the id to pick outright when there is nothing to draw from, else -1. */
  load(scores: Float32Array, temperature: number, topK: number, minP: number): number {
    const V = scores.length;
    if (this.value.length !== V) {
      this.value = new Float64Array(V);
      this.weight = new Float64Array(V);
      this.order = new Int32Array(V);
    }
    const value = this.value;
    let max = -Infinity;
    let top = 0;
    for (let i = 0; i < V; i++) {
      let x = scores[i] / temperature;
      if (x !== x) x = -Infinity; // NaN: never drawn
      value[i] = x;
      if (x > max) {
        max = x;
        top = i;
      }
    }
    if (!(max > -Infinity && max < Infinity)) return top;
    this.max = max;
    // Top-k: everything below the k-th largest value goes; ties with it stay, as in HF.
    const floor = topK > 0 && topK < V ? kthLargest(value, V, topK, this.scratchOf(V)) : -Infinity;
    const { weight, bucketCount, mass, start } = this;
    bucketCount.fill(0);
    mass.fill(0);
    let total = 0;
    let above = 0;
    for (let i = 0; i < V; i++) {
      const x = value[i];
      const w = x >= floor ? Math.exp(x - max) : 0;
      weight[i] = w;
      if (w === 0) continue;
      const b = Math.min(BUCKETS - 1, Math.floor((max - x) * PER_NAT));
      bucketCount[b]++;
      mass[b] += w;
      total += w;
      if (w >= minP) above++;
    }
    start[0] = 0;
    for (let b = 0; b < BUCKETS; b++) start[b + 1] = start[b] + bucketCount[b];
    this.total = total;
    this.count = start[BUCKETS];
    // Min-p: p < min_p · p_max ⇔ weight < min_p (the maximum has weight 1).
    this.aboveMinP = Math.max(1, above);
    this.sorted.fill(0);
    this.gathered = -1;
    return -1;
  }

  /**
   * HF top-p: drops the low tail whose cumulative probability, summed from the least likely up,
   * is ≤ 1 - top_p, always keeping the most likely id. Returns how many ids stay, or any value
   * ≥ `bound` when the cut lies past `bound` (then it does not matter where).
   */
  topPKeep(topP: number, bound: number): number {
    const { start, mass, weight, order, total } = this;
    const limit = 1 - topP;
    let keep = this.count;
    let tail = 0;
    for (let b = BUCKETS - 1; b >= 0; b--) {
      if (start[b] === start[b + 1]) continue;
      if (b > 0 && tail + mass[b] / total <= limit) {
        tail += mass[b] / total; // the whole bucket goes
        keep = start[b];
        continue;
      }
      if (start[b] >= bound) return keep;
      this.sortBucket(b);
      for (let j = start[b + 1] - 1; j >= start[b]; j--) {
        if (j === 0) return keep;
        tail += weight[order[j]] / total;
        if (tail > limit) return keep;
        keep = j;
      }
    }
    return keep;
  }

  /** Walks the first `keep` ids in sorted order until the cumulative probability exceeds r. */
  draw(keep: number, r: number): number {
    const { start, mass, weight, order } = this;
    let keptMass = 0;
    for (let b = 0; b < BUCKETS && start[b] < keep; b++) {
      if (start[b + 1] <= keep) keptMass += mass[b];
      else {
        this.sortBucket(b);
        for (let j = start[b]; j < keep; j++) keptMass += weight[order[j]];
      }
    }
    const target = r * keptMass;
    let cumulative = 0;
    let last = -1;
    for (let b = 0; b < BUCKETS && start[b] < keep; b++) {
      const end = Math.min(start[b + 1], keep);
      if (end < keep && cumulative + mass[b] <= target) {
        cumulative += mass[b]; // the draw lies past this whole bucket
        continue;
      }
      this.sortBucket(b);
      for (let j = start[b]; j < end; j++) {
        last = order[j];
        cumulative += weight[last];
        if (cumulative > target) return last;
      }
    }
    return last; // rounding left the draw just past the end: the last kept id
  }

  /** Puts bucket b's ids in sorted order (gathering it, with every bucket above it, on first use). */
  private sortBucket(b: number): void {
    if (this.sorted[b]) return;
    if (b > this.gathered) this.gather(b);
    const value = this.value;
    this.order.subarray(this.start[b], this.start[b + 1]).sort((i, j) => value[j] - value[i] || i - j);
    this.sorted[b] = 1;
  }

  /** Fills `order` for buckets gathered+1 … upTo in one pass over the row. */
  private gather(upTo: number): void {
    const { value, weight, order, start, max } = this;
    const from = this.gathered + 1;
    const cursor = new Int32Array(BUCKETS);
    cursor.set(start.subarray(0, BUCKETS));
    const reach = upTo + 1; // b ≤ upTo ⇔ (max - x) · PER_NAT < upTo + 1
    for (let i = 0, V = value.length; i < V; i++) {
      if (weight[i] === 0) continue;
      const d = (max - value[i]) * PER_NAT;
      if (upTo < BUCKETS - 1 && !(d < reach)) continue;
      const b = Math.min(BUCKETS - 1, Math.floor(d));
      if (b >= from) order[cursor[b]++] = i;
    }
    this.gathered = upTo;
  }

  private scratchOf(n: number): Float64Array {
    if (this.scratch.length !== n) this.scratch = new Float64Array(n);
    return this.scratch;
  }
}

/** The k-th largest of `src[0, n)`, by quickselect on `work`. */
function kthLargest(src: Float64Array, n: number, k: number, work: Float64Array): number {
  const a = work;
  a.set(src.subarray(0, n));
  const target = k - 1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const x = a[lo];
    const y = a[(lo + hi) >>> 1];
    const z = a[hi];
    const pivot = x > y ? (y > z ? y : x > z ? z : x) : x > z ? x : y > z ? z : y; // median of three
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const s = a[i];
        a[i] = a[j];
        a[j] = s;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}
