/**
 * `npm run bench:ask` — what answering a question from an index costs (pipelines/ask.ts), on
 * random-weight checkpoints with the published shapes (speed does not depend on the weight
 * values): LFM2-ColBERT-350M as the retriever, LFM2-1.2B as the language model, over an index of
 * `--docs` synthetic passages (bench/ask-corpus.ts: vectors written directly, as
 * bench/retrieval.ts does; the question itself goes through the real encoder):
 *
 * - retrieval ms (query encoding + search, as `lfm search`);
 * - time to the first answer token from the question, with the system text's state reused
 *   (prefilled once per process) and without (the whole prompt prefilled), and the difference;
 * - decode tokens/s after the first token; peak RSS (VmHWM) of the process holding both models
 *   and the index.
 *
 * The index is built once into <cache>/bench-indexes/ and reused. One process per measurement
 * (graphs built by a process of their own first), a warm-up question, then medians over `--runs`
 * runs of `--questions` questions each. Writes bench/results/<date>-<machine>-ask.json and prints
 * one JSON line with the medians.
 *
 *   npm run bench:ask -- [--docs 10000] [--runs 3] [--questions 3] [--threads 2] [--precision q4]
 *                        [--retriever-precision q8] [--max-tokens 32] [-k 5] [--storage float16]
 *                        [--lm DIR] [--retriever DIR]   (other checkpoints, e.g. the tiny fixtures to try the bench quickly)
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { loadPylateFolder } from "../retrieval/pylate-config.ts";
import type { VectorStorage } from "../retrieval/index/vector-codec.ts";
import { askIndexDir, syntheticAskIndex } from "./ask-corpus.ts";
import { benchCacheDir, buildThenMeasure, colbertBenchCheckpoint, formatLoad, lfm2BenchCheckpoint, machineInfo, medians, writeResults } from "./bench-kit.ts";

const { values } = parseArgs({
  options: {
    docs: { type: "string", default: "10000" },
    runs: { type: "string", default: "3" },
    questions: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    precision: { type: "string", default: "q4" },
    "retriever-precision": { type: "string", default: "q8" },
    "max-tokens": { type: "string", default: "32" },
    k: { type: "string", short: "k", default: "5" },
    storage: { type: "string", default: "float16" },
    lm: { type: "string" },
    retriever: { type: "string" },
  },
});
const docs = Number(values.docs);
const settings = {
  docs,
  runs: Number(values.runs),
  questions: Number(values.questions),
  threads: Number(values.threads),
  lmPrecision: values.precision,
  retrieverPrecision: values["retriever-precision"],
  maxTokens: Number(values["max-tokens"]),
  k: Number(values.k),
  storage: values.storage,
};

const loadStart = loadavg();
const lm = values.lm ?? lfm2BenchCheckpoint("lfm2-1.2b").dir;
let retriever = values.retriever;
if (!retriever) {
  process.stderr.write("lfm2-colbert-350m: random-weight checkpoint… ");
  retriever = colbertBenchCheckpoint();
  process.stderr.write("ready\n");
}
const dim = loadPylateFolder(retriever).dense.at(-1)?.outFeatures;
if (dim === undefined) throw new Error(`${retriever} has no Dense layer: the bench needs the vector width before loading the model`);
const indexDir = askIndexDir(benchCacheDir, docs, dim, values.storage as VectorStorage);
const built = performance.now();
await syntheticAskIndex(indexDir, docs, dim, values.storage as VectorStorage, (s) => process.stderr.write(`${s}\n`));
const indexBuildSeconds = (performance.now() - built) / 1000;

process.stderr.write(`  ${docs} passages, LM ${settings.lmPrecision}, retriever ${settings.retrieverPrecision}: building graphs, then measuring… `);
const args = (runs: string) => [indexDir, retriever, lm, settings.lmPrecision, settings.retrieverPrecision, values.threads, runs, values.questions, values["max-tokens"], values.k];
const r = buildThenMeasure("ask-worker.ts", args, values.runs);
const m = medians(r);
const row = { bench: "ask", lm: values.lm ?? "lfm2-1.2b", retriever: values.retriever ?? "lfm2-colbert-350m", ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...r.info, ...m, samples: r.samples };
process.stderr.write("done\n");

const file = writeResults("ask", {
  settings: { ...settings, indexBuildSeconds },
  loadStart,
  notes: [
    "index: bench/synthetic-colbert.ts passages (40–60 token vectors, 128-d at the 350M shape) written directly (no encoding), one pseudo-word of text per vector; built once into <cache>/bench-indexes and reused (indexBuildSeconds is 0 when reused); models: random weights in the published shapes, the tokenizers the tiny fixture's padded to the real vocabulary",
    "each question: ask() with k passages, greedy, maxTokens new tokens, minScore -1 (never abstains); asked twice, with the system text's state reused (prefilled once per process by a warm-up question) and with reusePrefix false",
    "retrievalMs: query encoding with the real encoder + index search (both asks of a question); ttftReusedMs / ttftFullMs: from the ask() call to the first answer token (timings.timeToFirstTokenMs), retrieval and prompt building included; ttftSavedMs = full − reused (the system text's prefill, prefixPrefillMs once per process); firstTokenAfterPrompt*: prefill of the rest to the first token only",
    "decodeTokPerS: (tokens − 1) / time from the first to the last token, streamed as text through the citation filter; on random weights greedy decoding mostly picks the padded vocabulary's filler ids (special added tokens), whose text costs more to stream than real tokens: a real checkpoint decodes a little faster",
    "samples: per run, medians over its questions; the top-level figures are medians over runs; peakRssMb: VmHWM of the measuring process (both models, the index, the answers)",
  ],
  results: [row],
});

const f = (v: unknown, d = 0) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "—");
process.stderr.write(
  `\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores, ${settings.threads} threads\n` +
    `retrieval ${f(m.retrievalMs)} ms; first token ${f(m.ttftReusedMs)} ms reusing the system text's state, ${f(m.ttftFullMs)} ms without (saves ${f(m.ttftSavedMs)} ms); ${f(m.decodeTokPerS, 1)} tok/s; peak RSS ${f(r.peakRssMb)} MB\n${file}\n`,
);
console.log(JSON.stringify({ bench: "ask", docs, retrievalMs: m.retrievalMs, ttftReusedMs: m.ttftReusedMs, ttftFullMs: m.ttftFullMs, ttftSavedMs: m.ttftSavedMs, decodeTokPerS: m.decodeTokPerS, peakRssMb: r.peakRssMb, file }));
