/**
 * Calibrates `ask`'s abstention threshold on the index's own passages and encoder — no labelled
 * questions needed, and nothing fixed in advance that only fits one model's score scale:
 *
 *  - answerable probes: a run of 3–12 consecutive words of a sampled passage (a phrase or a
 *    sentence of it, cut at word boundaries, in its own language and script). A passage holds
 *    the answer, so the best score must be high enough to answer;
 *  - unanswerable probes, one per answerable probe and as many words long: each word from a
 *    passage drawn at random among the others. An unanswerable question is asked in the corpus's
 *    language and about its domain — its words are the corpus's words — but no passage holds
 *    them together. Text in another script or random strings would score far lower than such a
 *    question and put the threshold too low to catch it; words shuffled within one passage would
 *    still be answered by that passage. Drawing every word of the probe from the corpus, each from
 *    a passage drawn anew, keeps the vocabulary, scripts and lengths of real questions and leaves out
 *    only what makes a question answerable: one passage that covers it;
 *  - both are scored with the index's own encoder through the search `lfm search` and `ask` run
 *    (searchTexts; `ask`'s default k), as the best passage's score per query vector
 *    (bestScorePerVector), the score `ask` compares with its threshold.
 *
 * Criterion: the threshold keeps at least `keepAnswerable` (default 95%) of the answerable probes
 * and, among such thresholds, rejects the most unanswerable ones: the lowest kept answerable score
 * `a`, lowered to halfway towards the best unanswerable score below `a` (the widest margin that
 * changes neither count). Verbatim phrases score higher than paraphrased questions do, which is
 * one more reason to take a low quantile of them rather than a midpoint between the two sets.
 *
 * The result is stored beside the index (retrieval/index/calibration.ts) unless `write: false`;
 * `ask` uses it when no `minScore` is given.
 */
import type { ColbertEncoder } from "../retrieval/colbert.ts";
import {
  CALIBRATION_PROBES_RANGE,
  DEFAULT_CALIBRATION_PROBES,
  DEFAULT_CALIBRATION_SEED,
  DEFAULT_KEEP_ANSWERABLE,
  type MinScoreCalibration,
  type ScoreSummary,
  writeCalibration,
} from "../retrieval/index/calibration.ts";
import type { StoredDocument } from "../retrieval/index/format.ts";
import { IndexReader } from "../retrieval/index/reader.ts";
import { bestScorePerVector, searchTexts } from "../retrieval/index/search-text.ts";
import { LfmError } from "../text-core/errors.ts";
import type { LoadOptions } from "../text-core/model.ts";
import { Rng } from "../text-core/sampler.ts";
import { DEFAULT_ASK_K, identityOf, retrieverFor } from "./ask.ts";

export { CALIBRATION_PROBES_RANGE, DEFAULT_CALIBRATION_PROBES, DEFAULT_CALIBRATION_SEED, DEFAULT_KEEP_ANSWERABLE };
const MIN_PROBE_WORDS = 3;
const MAX_PROBE_WORDS = 12;
/** Probes encoded per call (progress and cancellation between calls). */
const PROBE_BATCH = 32;

export interface CalibrateOptions {
  /** The ColBERT encoder: default the index's own (as `ask`); another model is refused. */
  retriever?: string | ColbertEncoder;
  /** Probes of each kind (default 200; 20 to 10,000). */
  probes?: number;
  /** Share of answerable probes the threshold must keep (default 0.95; 0.5 to 1). */
  keepAnswerable?: number;
  /** Sampling seed (default 1): the same index and seed give the same probes. */
  seed?: number;
  /** Store the result beside the index for `ask` (default true). */
  write?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  load?: Pick<LoadOptions, "threads" | "cacheDir" | "onProgress"> & { retrieverPrecision?: LoadOptions["precision"] };
}

export interface CalibrationResult extends MinScoreCalibration {
  /** Whether it was stored beside the index. */
  written: boolean;
  /** A few probes of each kind, for a look at what was scored. */
  examples: { answerable: string[]; unanswerable: string[] };
}

/** Calibrates the abstention threshold on `index` (a folder, or an open reader, left open); see the file comment. */
export async function calibrateMinScore(index: string | IndexReader, opts: CalibrateOptions = {}): Promise<CalibrationResult> {
  const probes = opts.probes ?? DEFAULT_CALIBRATION_PROBES;
  if (!Number.isInteger(probes) || probes < CALIBRATION_PROBES_RANGE.min || probes > CALIBRATION_PROBES_RANGE.max) {
    throw new LfmError("INVALID_ARGUMENT", `probes must be an integer from ${CALIBRATION_PROBES_RANGE.min} to ${CALIBRATION_PROBES_RANGE.max} (got ${probes}).`);
  }
  const keepAnswerable = opts.keepAnswerable ?? DEFAULT_KEEP_ANSWERABLE;
  if (typeof keepAnswerable !== "number" || !(keepAnswerable >= 0.5 && keepAnswerable <= 1)) {
    throw new LfmError("INVALID_ARGUMENT", `keepAnswerable must be a share from 0.5 to 1 (got ${String(keepAnswerable)}).`);
  }
  const seed = opts.seed ?? DEFAULT_CALIBRATION_SEED;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new LfmError("INVALID_ARGUMENT", `seed must be a non-negative integer (got ${seed}).`);

  const reader = typeof index === "string" ? await IndexReader.open(index) : index;
  let encoder: ColbertEncoder | undefined;
  try {
    const passages = [...reader.documents()].map((d) => ({ doc: d, words: wordSpans(d.text) })).filter((p) => p.words.length > 0);
    if (passages.length < 2) {
      throw new LfmError(
        "INDEX_EMPTY",
        `the index ${reader.dir} holds ${passages.length === 0 ? "no passages" : "one passage"} with words; calibration needs at least two (its unanswerable probes take words of other passages). Add files with lfm index add --index ${reader.dir} FILES…`,
      );
    }
    const generation = reader.generation;
    encoder = await retrieverFor(reader, opts);
    const { answerable, unanswerable } = makeProbes(passages, probes, seed);

    const texts = [...answerable, ...unanswerable];
    const scores: Array<number | null> = [];
    for (let start = 0; start < texts.length; start += PROBE_BATCH) {
      const results = await searchTexts(reader, encoder, texts.slice(start, start + PROBE_BATCH), { k: DEFAULT_ASK_K, signal: opts.signal });
      for (const r of results) scores.push(bestScorePerVector(r));
      opts.onProgress?.(Math.min(start + PROBE_BATCH, texts.length), texts.length);
    }
    // Nothing retrieved cannot happen without a filter; were it to, it would abstain at any threshold.
    const finite = (xs: Array<number | null>) => xs.map((x) => x ?? Number.NEGATIVE_INFINITY);
    const pos = finite(scores.slice(0, answerable.length));
    const neg = finite(scores.slice(answerable.length));
    const threshold = chooseThreshold(pos, neg, keepAnswerable);

    const calibration: MinScoreCalibration = {
      threshold,
      keepAnswerable,
      answerableKept: pos.filter((s) => s >= threshold).length / pos.length,
      unanswerableRejected: neg.filter((s) => s < threshold).length / neg.length,
      probes: { answerable: pos.length, unanswerable: neg.length },
      scores: { answerable: summary(pos), unanswerable: summary(neg) },
      generation,
      documents: passages.length,
      model: { ...identityOf(encoder), precision: encoder.precision },
      seed,
      calibratedAt: new Date().toISOString(),
    };
    const write = opts.write ?? true;
    if (write) writeCalibration(reader.dir, calibration);
    return { ...calibration, written: write, examples: { answerable: answerable.slice(0, 3), unanswerable: unanswerable.slice(0, 3) } };
  } finally {
    if (encoder && encoder !== opts.retriever) await encoder.release();
    if (typeof index === "string") await reader.close();
  }
}

/**
 * The threshold that keeps at least `keep` of `answerable` and rejects the most of `unanswerable`
 * (scores at or above the threshold are answered): see the file comment.
 */
export function chooseThreshold(answerable: readonly number[], unanswerable: readonly number[], keep: number): number {
  const pos = [...answerable].sort((a, b) => a - b);
  const mustKeep = Math.max(1, Math.ceil(keep * pos.length - 1e-9));
  const lowestKept = pos[pos.length - mustKeep];
  let below = Number.NEGATIVE_INFINITY;
  for (const s of unanswerable) if (s < lowestKept && s > below) below = s;
  return Number.isFinite(below) ? (lowestKept + below) / 2 : lowestKept;
}

interface WordSpan {
  start: number;
  end: number;
  word: string;
}

/** The passage's words (Intl.Segmenter: also splits scripts written without spaces). */
function wordSpans(text: string): WordSpan[] {
  const out: WordSpan[] = [];
  for (const s of WORDS.segment(text)) if (s.isWordLike) out.push({ start: s.index, end: s.index + s.segment.length, word: s.segment });
  return out;
}

const WORDS = new Intl.Segmenter(undefined, { granularity: "word" });

function makeProbes(passages: ReadonlyArray<{ doc: StoredDocument; words: WordSpan[] }>, count: number, seed: number): { answerable: string[]; unanswerable: string[] } {
  const random = new Rng(seed);
  const pick = (n: number) => Math.floor(random.next() * n);
  // Every passage once (in random order) before any twice, so small indexes are covered evenly.
  const order: number[] = [];
  while (order.length < count) {
    const round = passages.map((_, i) => i);
    for (let i = round.length - 1; i > 0; i--) {
      const j = pick(i + 1);
      [round[i], round[j]] = [round[j], round[i]];
    }
    order.push(...round);
  }
  const answerable: string[] = [];
  const unanswerable: string[] = [];
  for (const at of order.slice(0, count)) {
    const { doc, words } = passages[at];
    const n = Math.min(words.length, MIN_PROBE_WORDS + pick(MAX_PROBE_WORDS - MIN_PROBE_WORDS + 1));
    const first = pick(words.length - n + 1);
    answerable.push(doc.text.slice(words[first].start, words[first + n - 1].end));
    const drawn: string[] = [];
    for (let w = 0; w < n; w++) {
      let other = pick(passages.length - 1);
      if (other >= at) other++; // any passage but the answerable probe's
      const ow = passages[other].words;
      drawn.push(ow[pick(ow.length)].word);
    }
    unanswerable.push(drawn.join(" "));
  }
  return { answerable, unanswerable };
}

function summary(xs: readonly number[]): ScoreSummary {
  const s = [...xs].filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return { min: 0, p05: 0, median: 0, p95: 0, max: 0 };
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  return { min: s[0], p05: q(0.05), median: q(0.5), p95: q(0.95), max: s[s.length - 1] };
}
