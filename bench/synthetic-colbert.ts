/**
 * Synthetic ColBERT-like token vectors for index tests and benchmarks — clustered the way real
 * late-interaction embeddings are, not uniform noise:
 *
 * - a vocabulary of "terms", each a unit vector; content terms belong to one of `topics` topics
 *   (term = normalise(0.6·topic centre + 0.8·own direction): terms of one topic have cosine ≈ 0.36,
 *   across topics ≈ 0), plus a few hundred topic-free function words drawn Zipf-like;
 * - a document has one main topic (and a second one a third of the time) and `minTokens…maxTokens`
 *   tokens: 30 % function words, the rest content terms of its topics drawn Zipf-like (so terms
 *   repeat within and across documents); each token vector is its term's vector plus contextual
 *   noise (cosine ≈ 0.9 to the term), as ColBERT vectors of one word vary with the context. Most
 *   of that noise is shared by the word's occurrences within one document (same context): two
 *   occurrences in one document have cosine ≈ 0.96, in different documents ≈ 0.81;
 * - a query (ColBERT queries are padded to a fixed length with expansion tokens) takes 4–10 content
 *   terms of one target document and 1–3 function words, with fresh contextual noise, and fills the
 *   rest with expansion vectors: noisy mixtures of its own content terms.
 *
 * Every document and query is generated from its own seed, so corpora of any size are reproducible
 * and can be regenerated piecewise without keeping them in memory.
 */
import { mulberry32 as rng } from "../retrieval/index/seeded-random.ts";

export interface SyntheticCorpusOptions {
  dim?: number;
  topics?: number;
  termsPerTopic?: number;
  functionWords?: number;
  minTokens?: number;
  maxTokens?: number;
  queryLength?: number;
  seed?: number;
}

export interface SyntheticVectors {
  rows: number;
  dim: number;
  data: Float32Array;
}

/** The seeded PRNG of the index code (mulberry32), under the name the benchmarks use. */
export { rng };

function mix(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 16;
  return Math.imul(h, 0x27d4eb2f) >>> 0;
}

function gaussian(next: () => number): number {
  const u = Math.max(next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
}

function randomUnit(next: () => number, dim: number, out: Float32Array, offset = 0): void {
  let n = 0;
  for (let d = 0; d < dim; d++) {
    const v = gaussian(next);
    out[offset + d] = v;
    n += v * v;
  }
  n = Math.sqrt(n);
  for (let d = 0; d < dim; d++) out[offset + d] /= n;
}

function normalise(v: Float32Array, offset: number, dim: number): void {
  let n = 0;
  for (let d = 0; d < dim; d++) n += v[offset + d] * v[offset + d];
  n = Math.sqrt(n) || 1;
  for (let d = 0; d < dim; d++) v[offset + d] /= n;
}

/** Index in [0, n) with P(i) ∝ 1/(i+1) (Zipf, s = 1), by inverting the harmonic CDF approximately. */
function zipf(next: () => number, n: number): number {
  const i = Math.floor(Math.exp(next() * Math.log(n + 1))) - 1;
  return Math.min(n - 1, Math.max(0, i));
}

export class SyntheticCorpus {
  readonly dim: number;
  readonly queryLength: number;
  private readonly topics: number;
  private readonly termsPerTopic: number;
  private readonly functionWords: number;
  private readonly minTokens: number;
  private readonly maxTokens: number;
  private readonly seed: number;
  /** Content terms (topics × termsPerTopic rows), then function words. */
  private readonly terms: Float32Array;
  /** Contextual noise norm: cosine(token, term) = 1/√(1+σ²) ≈ 0.9. */
  private readonly contextNoise = 0.48;

  constructor(opts: SyntheticCorpusOptions = {}) {
    this.dim = opts.dim ?? 128;
    this.topics = opts.topics ?? 256;
    this.termsPerTopic = opts.termsPerTopic ?? 64;
    this.functionWords = opts.functionWords ?? 256;
    this.minTokens = opts.minTokens ?? 40;
    this.maxTokens = opts.maxTokens ?? 60;
    this.queryLength = opts.queryLength ?? 32;
    this.seed = opts.seed ?? 1;
    const dim = this.dim;
    const next = rng(mix(this.seed, 0x7e3a));
    const centres = new Float32Array(this.topics * dim);
    for (let t = 0; t < this.topics; t++) randomUnit(next, dim, centres, t * dim);
    const content = this.topics * this.termsPerTopic;
    this.terms = new Float32Array((content + this.functionWords) * dim);
    const own = new Float32Array(dim);
    for (let i = 0; i < content; i++) {
      const topic = Math.floor(i / this.termsPerTopic);
      randomUnit(next, dim, own);
      for (let d = 0; d < dim; d++) this.terms[i * dim + d] = 0.6 * centres[topic * dim + d] + 0.8 * own[d];
      normalise(this.terms, i * dim, dim);
    }
    for (let i = content; i < content + this.functionWords; i++) randomUnit(next, dim, this.terms, i * dim);
  }

  /** Term ids of document `i` (deterministic). */
  documentTerms(i: number): number[] {
    const next = rng(mix(this.seed, 2 * i + 1));
    const main = Math.floor(next() * this.topics);
    const second = next() < 1 / 3 ? Math.floor(next() * this.topics) : main;
    const length = this.minTokens + Math.floor(next() * (this.maxTokens - this.minTokens + 1));
    const content = this.topics * this.termsPerTopic;
    // Each document favours its own shuffled order of its topic's terms, so documents of one topic differ.
    const offset = Math.floor(next() * this.termsPerTopic);
    const ids: number[] = [];
    for (let t = 0; t < length; t++) {
      if (next() < 0.3) ids.push(content + zipf(next, this.functionWords));
      else {
        const topic = next() < 0.75 ? main : second;
        ids.push(topic * this.termsPerTopic + ((zipf(next, this.termsPerTopic) + offset) % this.termsPerTopic));
      }
    }
    return ids;
  }

  /** Token vectors of document `i`: its terms plus contextual noise, L2-normalised. */
  document(i: number): SyntheticVectors {
    const ids = this.documentTerms(i);
    const next = rng(mix(this.seed ^ 0x5bd1e995, i));
    return this.noisy(ids, next, (term) => rng(mix(mix(this.seed ^ 0x68e31da4, i), term)));
  }

  /** A query aimed at document `target`: some of its content terms, function words, expansion rows. */
  query(q: number, target: number): SyntheticVectors {
    const next = rng(mix(this.seed ^ 0x1b873593, q));
    const content = this.topics * this.termsPerTopic;
    const docTerms = this.documentTerms(target).filter((t) => t < content);
    const picked: number[] = [];
    const wanted = 4 + Math.floor(next() * 7);
    for (let k = 0; k < wanted && docTerms.length > 0; k++) picked.push(docTerms[Math.floor(next() * docTerms.length)]);
    const functionCount = 1 + Math.floor(next() * 3);
    for (let k = 0; k < functionCount; k++) picked.push(content + zipf(next, this.functionWords));
    const base = this.noisy(picked, next);
    const dim = this.dim;
    const rows = Math.max(this.queryLength, picked.length);
    const data = new Float32Array(rows * dim);
    data.set(base.data);
    const contentRows = Math.max(1, picked.length - functionCount);
    for (let r = picked.length; r < rows; r++) {
      // Expansion token: a random mixture of the query's content rows, plus noise.
      for (let k = 0; k < contentRows; k++) {
        const w = next();
        for (let d = 0; d < dim; d++) data[r * dim + d] += w * base.data[k * dim + d];
      }
      for (let d = 0; d < dim; d++) data[r * dim + d] += 0.3 * gaussian(next) / Math.sqrt(dim);
      normalise(data, r * dim, dim);
    }
    return { rows, dim, data };
  }

  /**
   * Term vectors plus contextual noise of norm ≈ contextNoise: 80 % of its variance from
   * `shared(term)` (the same for a term's occurrences in one document), 20 % per occurrence.
   */
  private noisy(ids: number[], next: () => number, shared?: (term: number) => () => number): SyntheticVectors {
    const dim = this.dim;
    const data = new Float32Array(ids.length * dim);
    const scale = this.contextNoise / Math.sqrt(dim);
    const [sharedScale, ownScale] = shared ? [scale * Math.sqrt(0.8), scale * Math.sqrt(0.2)] : [0, scale];
    ids.forEach((id, r) => {
      const context = shared?.(id);
      for (let d = 0; d < dim; d++) data[r * dim + d] = this.terms[id * dim + d] + ownScale * gaussian(next) + (context ? sharedScale * gaussian(context) : 0);
      normalise(data, r * dim, dim);
    });
    return { rows: ids.length, dim, data };
  }
}

/** Exact MaxSim in plain float64 arithmetic: the reference the index is checked against. */
export function bruteForceMaxSim(query: SyntheticVectors, doc: SyntheticVectors): number {
  const dim = query.dim;
  let total = 0;
  for (let q = 0; q < query.rows; q++) {
    let best = -Infinity;
    for (let t = 0; t < doc.rows; t++) {
      let dot = 0;
      for (let d = 0; d < dim; d++) dot += query.data[q * dim + d] * doc.data[t * dim + d];
      if (dot > best) best = dot;
    }
    total += best;
  }
  return total;
}
