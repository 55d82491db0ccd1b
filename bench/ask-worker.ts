/**
 * One `bench:ask` configuration in its own process (so peak RSS is its own; see bench/ask.ts).
 * Prints one JSON line. Usage:
 *   node bin/run-ts.mjs bench/ask-worker.ts INDEX COLBERT LM LM_PRECISION RETRIEVER_PRECISION THREADS RUNS QUESTIONS MAX_TOKENS K
 * RUNS = 0: only build both models' graphs into the cache and exit (the measured process loads them).
 *
 * Models and index are loaded once. A warm-up question prefills the system text (its state is then
 * cached for the process, as for a user's second question). Each run asks QUESTIONS questions,
 * each twice: reusing the system text's state, then with `reusePrefix: false` (everything
 * prefilled). Per run, medians over its questions of: retrieval (query encoding + search), time to
 * the first answer token from the question (both ways), decode tokens/s after the first token.
 */
import { ColbertEncoder } from "../retrieval/colbert.ts";
import { IndexReader } from "../retrieval/index/reader.ts";
import { type AskOptions, type AskResult, ask } from "../pipelines/ask.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { TextModel } from "../text-core/model.ts";
import { questionText } from "./ask-corpus.ts";
import { median } from "./bench-kit.ts";
import { flushWrites, peakRssMb } from "./prompt.ts";
import { SyntheticCorpus, rng } from "./synthetic-colbert.ts";

const [indexDir, colbertDir, lmDir, lmPrecision, retrieverPrecision, threadsArg, runsArg, questionsArg, maxTokensArg, kArg] = process.argv.slice(2);
const [threads, runs, questionCount, maxTokens, k] = [threadsArg, runsArg, questionsArg, maxTokensArg, kArg].map(Number);
const cacheDir = process.env.LFM_CACHE_DIR;

const t0 = performance.now();
const [encoder, model] = await Promise.all([
  ColbertEncoder.load(colbertDir, { precision: retrieverPrecision as Precision, threads, cacheDir }),
  TextModel.load(lmDir, { precision: lmPrecision as Precision, threads, cacheDir }),
]);
const loadMs = performance.now() - t0;
if (runs === 0) {
  await Promise.all([encoder.release(), model.release()]);
  process.stdout.write(`${JSON.stringify({ loadMs, samples: [], peakRssMb: peakRssMb() })}\n`);
  process.exit(0);
}
const o0 = performance.now();
const reader = await IndexReader.open(indexDir);
const openIndexMs = performance.now() - o0;
flushWrites();

const corpus = new SyntheticCorpus({ dim: encoder.dim });
const docs = reader.stats().documents;
const targets = rng(4242);
const question = (q: number) => questionText(corpus, q, Math.floor(targets() * docs));
// Greedy (random weights: any sampling costs the same); never abstain (the scores of random
// query vectors against synthetic passage vectors mean nothing).
const opts: AskOptions = { index: reader, model, retriever: encoder, k, minScore: -1, maxTokens, temperature: 0 };

// Warm-up: thread pools, the scorer, and the system text's state (prefilled once per process).
const warm = await ask(question(-1), opts);
const info: Record<string, number> = { loadMs, openIndexMs, documents: docs, prefixTokens: warm.timings.prefixTokens, prefixPrefillMs: warm.timings.prefixMs };

const decodeRate = (r: AskResult) => {
  const t = r.timings;
  return t.tokens > 1 ? ((t.tokens - 1) / (t.generationMs - t.firstTokenMs)) * 1000 : Number.NaN;
};

const samples: Array<Record<string, number>> = [];
const promptTokens: number[] = [];
const answerTokens: number[] = [];
let q = 0;
for (let r = 0; r < runs; r++) {
  const per: Record<string, number[]> = { retrievalMs: [], ttftReusedMs: [], ttftFullMs: [], firstTokenAfterPromptReusedMs: [], firstTokenAfterPromptFullMs: [], decodeTokPerS: [] };
  for (let i = 0; i < questionCount; i++, q++) {
    const text = question(q);
    const reused = await ask(text, opts);
    const full = await ask(text, { ...opts, reusePrefix: false });
    if (!reused.timings.prefixReused) throw new Error("the system text's state was not reused after the warm-up question");
    per.retrievalMs.push(reused.timings.retrievalMs, full.timings.retrievalMs);
    per.ttftReusedMs.push(reused.timings.timeToFirstTokenMs);
    per.ttftFullMs.push(full.timings.timeToFirstTokenMs);
    per.firstTokenAfterPromptReusedMs.push(reused.timings.firstTokenMs);
    per.firstTokenAfterPromptFullMs.push(full.timings.firstTokenMs);
    for (const a of [reused, full]) {
      const rate = decodeRate(a);
      if (Number.isFinite(rate)) per.decodeTokPerS.push(rate);
      answerTokens.push(a.timings.tokens);
    }
    promptTokens.push(reused.timings.promptTokens);
  }
  const m = Object.fromEntries(Object.entries(per).map(([key, xs]) => [key, xs.length > 0 ? median(xs) : Number.NaN]));
  samples.push({ ...m, ttftSavedMs: m.ttftFullMs - m.ttftReusedMs });
}
info.medianPromptTokens = median(promptTokens);
info.medianAnswerTokens = median(answerTokens);

await reader.close();
await Promise.all([encoder.release(), model.release()]);
process.stdout.write(`${JSON.stringify({ loadMs, samples, peakRssMb: peakRssMb(), info })}\n`);
