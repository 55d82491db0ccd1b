/**
 * One ColBERT benchmark configuration in its own process (so peak RSS is its own). Prints one JSON
 * line. Usage:
 *   node bin/run-ts.mjs bench/colbert-worker.ts DIR PRECISION THREADS RUNS DOCS DOC_TOKENS QUERIES
 * RUNS = 0: only build the graph into the cache and exit (the measured process loads it).
 *
 * Each run: DOCS documents of ~DOC_TOKENS tokens encoded at batch size 1, then at batch size 8
 * (docs/s), and QUERIES single-query calls (their median latency).
 */
import { ColbertEncoder } from "../retrieval/colbert.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { median } from "./bench-kit.ts";
import { flushWrites, peakRssMb } from "./prompt.ts";

const [dir, precision, threadsArg, runsArg, docsArg, docTokensArg, queriesArg] = process.argv.slice(2);
const [threads, runs, docCount, docTokens, queryCount] = [threadsArg, runsArg, docsArg, docTokensArg, queriesArg].map(Number);
const ms = (t0: number) => performance.now() - t0;

const t0 = performance.now();
const encoder = await ColbertEncoder.load(dir, { precision: precision as Precision, threads, cacheDir: process.env.LFM_CACHE_DIR });
const loadMs = ms(t0);

const WORDS = "the a of retrieval model index token vector query document late interaction score search engine local private fast small edge device memory batch length"
  .split(" ");
let seed = 5;
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
/** A text of ~`tokens` document tokens (counted with the model's own tokenizer, prefix and BOS included). */
function textOf(tokens: number): string {
  const words: string[] = [];
  while (encoder.tokenizeDocument(words.join(" ") || "x").length < tokens) {
    for (let k = 0; k < 8; k++) words.push(WORDS[Math.floor(rand() * WORDS.length)]);
  }
  return words.join(" ");
}

const docs = Array.from({ length: docCount }, () => textOf(docTokens));
const queries = Array.from({ length: queryCount }, () => textOf(12));
const info = { meanDocTokens: docs.reduce((n, d) => n + encoder.tokenizeDocument(d).length, 0) / docCount, queryPositions: encoder.tokenizeQuery(queries[0]).length };

const once = async () => {
  const b1 = performance.now();
  await encoder.encodeDocuments(docs, { batchSize: 1 });
  const batch1Ms = ms(b1);
  const b8 = performance.now();
  await encoder.encodeDocuments(docs, { batchSize: 8 });
  const batch8Ms = ms(b8);
  const latencies: number[] = [];
  for (const q of queries) {
    const q0 = performance.now();
    await encoder.encodeQueries([q]);
    latencies.push(ms(q0));
  }
  return { docsPerSecBatch1: docCount / (batch1Ms / 1000), docsPerSecBatch8: docCount / (batch8Ms / 1000), queryP50Ms: median(latencies) };
};

const samples = [];
if (runs > 0) {
  flushWrites();
  await once(); // warm-up
  for (let r = 0; r < runs; r++) samples.push(await once());
}
await encoder.release();
process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples, info })}\n`);
