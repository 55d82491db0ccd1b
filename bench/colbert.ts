/**
 * `npm run bench:colbert` — LFM2-ColBERT-350M encoding speed on a random-weight checkpoint with
 * the published shape (LFM2-350M backbone + Dense 1024→128, PyLate settings of
 * fixtures/realshape/configs.json; speed does not depend on the weight values):
 *
 * - document encoding, docs/s, for documents of ~200 tokens at batch sizes 1 and 8;
 * - single-query latency (one `encodeQueries([q])` call: 32 positions with expansion), p50;
 *
 * per backbone precision. One process per precision (graphs built by a process of their own
 * first), a warm-up, then medians over `--runs` runs. Writes
 * bench/results/<date>-<machine>-colbert.json and prints a table with the load average.
 *
 *   npm run bench:colbert -- [--precisions q8,q4,fp32] [--runs 3] [--threads 2] [--docs 8] [--doc-tokens 200] [--queries 10]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { buildThenMeasure, colbertBenchCheckpoint, formatLoad, machineInfo, medians, writeResults } from "./bench-kit.ts";

const { values } = parseArgs({
  options: {
    precisions: { type: "string", default: "q8,q4,fp32" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    docs: { type: "string", default: "8" },
    "doc-tokens": { type: "string", default: "200" },
    queries: { type: "string", default: "10" },
  },
});
const settings = { threads: Number(values.threads), runs: Number(values.runs), docs: Number(values.docs), docTokens: Number(values["doc-tokens"]), queries: Number(values.queries) };

const loadStart = loadavg();
process.stderr.write("lfm2-colbert-350m: random-weight checkpoint… ");
const dir = colbertBenchCheckpoint();
process.stderr.write("ready\n");
const rows: Array<Record<string, unknown>> = [];
for (const precision of values.precisions.split(",")) {
  process.stderr.write(`  ${precision}: building, then measuring… `);
  try {
    const args = (runs: string) => [dir, precision, values.threads, runs, values.docs, values["doc-tokens"], values.queries];
    const r = buildThenMeasure("colbert-worker.ts", args, values.runs);
    const m = medians(r);
    rows.push({ bench: "colbert", model: "lfm2-colbert-350m", precision, ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...r.info, ...m, samples: r.samples });
    process.stderr.write(`${m.docsPerSecBatch1.toFixed(1)} / ${m.docsPerSecBatch8.toFixed(1)} docs/s, query p50 ${m.queryP50Ms.toFixed(0)} ms\n`);
  } catch (e) {
    rows.push({ bench: "colbert", precision, error: (e as Error).message });
    process.stderr.write("failed\n");
  }
}

const file = writeResults("colbert", {
  settings,
  loadStart,
  notes: [
    "docsPerSecBatchN: encodeDocuments(docs, { batchSize: N }) over `docs` documents of ~docTokens tokens (prefix and BOS included)",
    "queryP50Ms: median latency of `queries` single-query encodeQueries([q]) calls within a run (32 positions with expansion); medians over runs",
    "random weights in the LFM2-ColBERT-350M shape; the tokenizer is the tiny fixture's plus the [Q]/[D] prefix tokens",
  ],
  results: rows,
});

const f = (v: unknown, d = 0) => (typeof v === "number" ? v.toFixed(d) : "—");
console.log(`\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores, ${settings.threads} threads`);
console.log(`${"prec".padEnd(5)} ${"docs/s b=1".padStart(11)} ${"docs/s b=8".padStart(11)} ${"query p50 ms".padStart(13)} ${"peak RSS MB".padStart(12)}`);
for (const r of rows) {
  if (r.error) console.log(`${String(r.precision).padEnd(5)} failed: ${String(r.error).split("\n")[0].slice(0, 70)}`);
  else console.log(`${String(r.precision).padEnd(5)} ${f(r.docsPerSecBatch1, 2).padStart(11)} ${f(r.docsPerSecBatch8, 2).padStart(11)} ${f(r.queryP50Ms).padStart(13)} ${f(r.peakRssMb).padStart(12)}`);
}
console.log(`\n${file}`);
