/**
 * Next-token selection on hand-made logits (no model): HF transformers' semantics for the
 * repetition penalty, temperature, top-k, top-p and min-p, seeding, and option validation.
 */
import { describe, expect, it } from "vitest";
import { Rng, Sampler, type SamplingOptions, argmax } from "../../text-core/sampler.ts";
import { expectCode } from "../helpers/errors.ts";

const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

/** How often each id was picked in `n` draws from the same logits. */
function histogram(sampler: Sampler, logits: Float32Array, n: number, seen: number[] = []): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const id = sampler.pick(logits, seen);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

const drawn = (counts: Map<number, number>) => [...counts.keys()].sort((a, b) => a - b);
const share = (counts: Map<number, number>, id: number, n: number) => (counts.get(id) ?? 0) / n;

/** Deterministic pseudo-random rows (a simple LCG, independent of the sampler's generator). */
function randomRow(V: number, seed: number, shape: "normal" | "ties" | "masked" | "flat"): Float32Array {
  let s = seed >>> 0;
  const u = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const row = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const g = Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
    row[i] = shape === "ties" ? Math.round(g * 2) : shape === "flat" ? g * 0.3 : shape === "masked" && u() < 0.2 ? -Infinity : g * 3;
  }
  return row;
}

/**
 * HF's warpers written out directly: sort every id (logit desc, id asc), penalty → temperature →
 * top-k → top-p → min-p as `RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`,
 * `TopKLogitsWarper`, `TopPLogitsWarper`, `MinPLogitsWarper` define them, then walk the softmax
 * with the uniform draw `r`.
 */
function referencePick(logits: Float32Array, seen: number[], o: SamplingOptions, r: number): number {
  const scores = Float32Array.from(logits);
  if (o.repetitionPenalty !== undefined) {
    for (const id of new Set(seen)) scores[id] = scores[id] < 0 ? scores[id] * o.repetitionPenalty : scores[id] / o.repetitionPenalty;
  }
  const t = o.temperature as number;
  const value = (i: number) => scores[i] / t;
  let ids = Array.from(scores.keys()).sort((a, b) => value(b) - value(a) || a - b);
  const softmax = (kept: number[]) => {
    const e = kept.map((i) => Math.exp(value(i) - value(kept[0])));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / sum);
  };
  if (o.topK && o.topK < ids.length) {
    const kth = value(ids[o.topK - 1]);
    ids = ids.filter((i) => value(i) >= kth);
  }
  if (o.topP !== undefined && o.topP < 1) {
    const p = softmax(ids);
    let cumulative = 0; // from the least likely up; removed while ≤ 1 - top_p; the top one always stays
    let keep = ids.length;
    for (let j = ids.length - 1; j > 0; j--) {
      cumulative += p[j];
      if (cumulative > 1 - o.topP) break;
      keep = j;
    }
    ids = ids.slice(0, keep);
  }
  if (o.minP) {
    const p = softmax(ids);
    ids = ids.filter((_, j) => j === 0 || p[j] >= o.minP! * p[0]);
  }
  const p = softmax(ids);
  for (let j = 0; j < ids.length; j++) {
    r -= p[j];
    if (r < 0) return ids[j];
  }
  return ids[ids.length - 1];
}

describe("greedy selection", () => {
  const row = Float32Array.from([0.1, 2.5, -1, 2.4, 0]);

  it("without a temperature picks the argmax", () => {
    const s = new Sampler({});
    expect(s.greedy).toBe(true);
    expect(s.pick(row, [])).toBe(1);
    expect(argmax(row)).toBe(1);
  });

  it("temperature 0 is greedy and ignores top-k/top-p/min-p and the seed", () => {
    for (const seed of [1, 2, 3]) {
      const s = new Sampler({ temperature: 0, topK: 3, topP: 0.5, minP: 0.1, seed });
      expect(s.greedy).toBe(true);
      for (let i = 0; i < 20; i++) expect(s.pick(row, [])).toBe(1);
    }
  });

  it("argmax takes the first of tied maxima", () => {
    expect(argmax(Float32Array.from([1, 3, 3, 2]))).toBe(1);
  });
});

describe("masked logits", () => {
  it("never draws ids whose logit is -Infinity or NaN", () => {
    const row = Float32Array.from([-Infinity, 0, -Infinity, 0.5, Number.NaN]);
    for (const opts of [{ temperature: 1 }, { temperature: 3, topP: 0.99 }, { temperature: 1, topK: 4 }, { temperature: 2, minP: 0.01 }]) {
      expect(drawn(histogram(new Sampler({ ...opts, seed: 1 }), row, 2000))).toEqual([1, 3]);
    }
  });
});

describe("seeded sampling", () => {
  const row = randomRow(200, 7, "flat");
  const draws = (seed: number) => {
    const s = new Sampler({ temperature: 1, seed });
    return Array.from({ length: 50 }, () => s.pick(row, []));
  };

  it("the same seed gives the same sequence", () => {
    expect(draws(42)).toEqual(draws(42));
  });

  it("different seeds give different sequences", () => {
    expect(draws(42)).not.toEqual(draws(43));
  });

  it("the generator is the same xoshiro128** stream on every run", () => {
    const a = new Rng(123);
    const b = new Rng(123);
    const xs = Array.from({ length: 5 }, () => a.next());
    expect(xs).toEqual(Array.from({ length: 5 }, () => b.next()));
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
  });
});

describe("top-k", () => {
  it("top-k = 1 always picks the argmax", () => {
    const row = randomRow(500, 3, "flat");
    const s = new Sampler({ temperature: 2, topK: 1, seed: 5 });
    for (let i = 0; i < 200; i++) expect(s.pick(row, [])).toBe(argmax(row));
  });

  it("keeps every id tied with the k-th value (as torch.topk thresholding does)", () => {
    const row = Float32Array.from([3, 2, 2, 2, 1, 0]);
    const counts = histogram(new Sampler({ temperature: 1, topK: 2, seed: 11 }), row, 4000);
    expect(drawn(counts)).toEqual([0, 1, 2, 3]);
  });

  it("draws the kept ids in proportion to their softmax", () => {
    const row = Float32Array.from([Math.log(4), Math.log(2), Math.log(1), Math.log(1), Math.log(1)]);
    const n = 6000;
    const counts = histogram(new Sampler({ temperature: 1, topK: 2, seed: 3 }), row, n);
    expect(drawn(counts)).toEqual([0, 1]);
    expect(share(counts, 0, n)).toBeCloseTo(4 / 6, 1);
  });
});

describe("top-p (HF TopPLogitsWarper)", () => {
  const probs = [0.5, 0.3, 0.15, 0.05];

  it("top_p 0.8 on [0.5, 0.3, 0.15, 0.05] only ever draws the first two, about 5:3", () => {
    // The tail [0.05, 0.15] has mass 0.2 ≤ 1 - 0.8, so it goes; 0.3 would take it past.
    const n = 8000;
    const counts = histogram(new Sampler({ temperature: 1, topP: 0.8, seed: 1 }), logitsOf(probs), n);
    expect(drawn(counts)).toEqual([0, 1]);
    expect(Math.abs(share(counts, 0, n) - 0.5 / 0.8)).toBeLessThan(0.03);
    expect(Math.abs(share(counts, 1, n) - 0.3 / 0.8)).toBeLessThan(0.03);
  });

  it("top_p 0.85 keeps the smallest head whose mass reaches it: three ids", () => {
    const n = 8000;
    const counts = histogram(new Sampler({ temperature: 1, topP: 0.85, seed: 2 }), logitsOf(probs), n);
    expect(drawn(counts)).toEqual([0, 1, 2]);
    expect(Math.abs(share(counts, 2, n) - 0.15 / 0.95)).toBeLessThan(0.03);
  });

  it("a tiny top_p still keeps the most likely id", () => {
    const counts = histogram(new Sampler({ temperature: 1, topP: 1e-6, seed: 3 }), logitsOf(probs), 500);
    expect(drawn(counts)).toEqual([0]);
  });

  it("top_p 1 keeps everything", () => {
    const counts = histogram(new Sampler({ temperature: 1, topP: 1, seed: 4 }), logitsOf(probs), 4000);
    expect(drawn(counts)).toEqual([0, 1, 2, 3]);
  });

  it("applies after temperature: a high temperature flattens the head it keeps", () => {
    // T = 2: probs ∝ sqrt(p) = [.38, .29, .21, .12]; top_p 0.8 keeps three (tail .12 ≤ .2 < .33).
    const counts = histogram(new Sampler({ temperature: 2, topP: 0.8, seed: 5 }), logitsOf(probs), 4000);
    expect(drawn(counts)).toEqual([0, 1, 2]);
  });
});

describe("min-p (HF MinPLogitsWarper)", () => {
  const probs = [0.5, 0.3, 0.1, 0.06, 0.04];

  it("removes ids with p < min_p · p_max", () => {
    // min_p 0.25 → threshold 0.125: ids 0 and 1 stay; min_p 0.15 → 0.075: ids 0, 1, 2.
    expect(drawn(histogram(new Sampler({ temperature: 1, minP: 0.25, seed: 1 }), logitsOf(probs), 4000))).toEqual([0, 1]);
    expect(drawn(histogram(new Sampler({ temperature: 1, minP: 0.15, seed: 1 }), logitsOf(probs), 4000))).toEqual([0, 1, 2]);
  });

  it("keeps the ratios of what it keeps", () => {
    const n = 8000;
    const counts = histogram(new Sampler({ temperature: 1, minP: 0.25, seed: 9 }), logitsOf(probs), n);
    expect(Math.abs(share(counts, 0, n) - 0.5 / 0.8)).toBeLessThan(0.03);
  });

  it("min_p 1 keeps only the maximum", () => {
    expect(drawn(histogram(new Sampler({ temperature: 1, minP: 1, seed: 1 }), logitsOf(probs), 500))).toEqual([0]);
  });
});

describe("repetition penalty (HF RepetitionPenaltyLogitsProcessor)", () => {
  it("divides the positive logits of seen ids", () => {
    const row = Float32Array.from([3, -1, 2, 0]);
    expect(new Sampler({}).pick(row, [0])).toBe(0);
    // 3 / 2 = 1.5 < 2
    expect(new Sampler({ repetitionPenalty: 2 }).pick(row, [0])).toBe(2);
  });

  it("multiplies the negative logits of seen ids (they get less likely, not more)", () => {
    const row = Float32Array.from([-1, -1.5]);
    // -1 · 2 = -2 < -1.5 (dividing would have made it -0.5 and kept it on top)
    expect(new Sampler({ repetitionPenalty: 2 }).pick(row, [0])).toBe(1);
  });

  it("penalises an id once however often it was seen", () => {
    const row = Float32Array.from([3, 1.2]);
    expect(new Sampler({ repetitionPenalty: 2 }).pick(row, [0, 0, 0])).toBe(0); // 1.5 > 1.2
  });

  it("a penalty below 1 favours seen ids", () => {
    const row = Float32Array.from([1, 1.5]);
    expect(new Sampler({ repetitionPenalty: 0.5 }).pick(row, [0])).toBe(0); // 1 / 0.5 = 2
  });

  it("does not modify the caller's logits", () => {
    const row = Float32Array.from([3, -1, 2]);
    new Sampler({ repetitionPenalty: 2, temperature: 1, seed: 1 }).pick(row, [0, 1]);
    expect(Array.from(row)).toEqual([3, -1, 2]);
  });

  it("is applied to the logits before the temperature when sampling", () => {
    // [2, 0] → penalty 2 on id 0 → [1, 0] → T 0.5 → [2, 0]: p0 = e²/(e²+1) ≈ 0.881.
    const n = 8000;
    const counts = histogram(new Sampler({ repetitionPenalty: 2, temperature: 0.5, seed: 4 }), Float32Array.from([2, 0]), n, [0]);
    expect(Math.abs(share(counts, 0, n) - Math.exp(2) / (Math.exp(2) + 1))).toBeLessThan(0.02);
  });
});

describe("option validation", () => {
  const invalid: [string, SamplingOptions][] = [
    ["negative temperature", { temperature: -0.1 }],
    ["NaN temperature", { temperature: Number.NaN }],
    ["topP 0", { topP: 0 }],
    ["topP above 1", { topP: 1.5 }],
    ["negative topP", { topP: -0.5 }],
    ["non-integer topK", { topK: 2.5 }],
    ["negative topK", { topK: -1 }],
    ["minP below 0", { minP: -0.1 }],
    ["minP above 1", { minP: 1.1 }],
    ["repetition penalty 0", { repetitionPenalty: 0 }],
    ["negative repetition penalty", { repetitionPenalty: -1.05 }],
  ];
  it.each(invalid)("%s throws INVALID_ARGUMENT", (_, opts) => {
    expectCode(() => new Sampler(opts), "INVALID_ARGUMENT");
  });

  it("accepts the boundaries: temperature 0, topP 1, topK 0 (off), minP 0 and 1", () => {
    for (const opts of [{ temperature: 0 }, { topP: 1 }, { topK: 0 }, { minP: 0 }, { minP: 1 }, { repetitionPenalty: 1 }]) {
      expect(() => new Sampler(opts)).not.toThrow();
    }
  });
});

describe("agreement with a direct sort-based implementation of HF's warpers", () => {
  const configs: SamplingOptions[] = [
    { temperature: 1 },
    { temperature: 0.3, minP: 0.15, repetitionPenalty: 1.05 },
    { temperature: 0.8, topP: 0.9 },
    { temperature: 0.1, topK: 50, topP: 0.1, repetitionPenalty: 1.05 },
    { temperature: 1, topP: 0.95, minP: 0.05 },
    { temperature: 2, topK: 5 },
    { temperature: 0.7, topK: 40, topP: 0.8, minP: 0.02 },
    { temperature: 5, topP: 0.3 },
    { temperature: 0.02, topP: 0.999 },
  ];
  const shapes = ["normal", "ties", "masked", "flat"] as const;

  it.each(configs.map((c) => [JSON.stringify(c), c] as const))("%s: same pick for every seed and row", (_, opts) => {
    const seen = [3, 17, 17, 250, 999];
    for (const seed of [1, 2]) {
      const sampler = new Sampler({ ...opts, seed });
      const rng = new Rng(seed); // one uniform draw per sampled token, from the same stream
      for (let k = 0; k < 48; k++) {
        const row = randomRow(1000, 100 * seed + k, shapes[k % shapes.length]);
        expect(sampler.pick(row, seen)).toBe(referencePick(row, seen, opts, rng.next()));
      }
    }
  });
});

describe("a 65536-entry vocabulary", () => {
  // Timing lives in bench/sampler.ts (npm run bench:sampler); here only what the pick must be.
  it("samples with top-p / min-p / top-k and a repetition penalty as HF's warpers do", () => {
    const V = 65536;
    const rows = Array.from({ length: 8 }, (_, k) => randomRow(V, k + 1, "normal"));
    const seen = Array.from({ length: 300 }, (_, i) => (i * 131) % V);
    const configs: SamplingOptions[] = [
      { temperature: 0.3, minP: 0.15, repetitionPenalty: 1.05 },
      { temperature: 0.8, topP: 0.9 },
      { temperature: 1, topP: 0.95, minP: 0.05 },
      { temperature: 0.1, topK: 50, topP: 0.1, repetitionPenalty: 1.05 },
    ];
    for (const opts of configs) {
      const sampler = new Sampler({ ...opts, seed: 1 });
      const rng = new Rng(1);
      expect(sampler.pick(rows[0], seen)).toBe(referencePick(rows[0], seen, opts, rng.next()));
    }
  });
});
