/**
 * Index benchmark: build time, memory per stored token, search p50/p95 latency and recall@10
 * against exact brute-force MaxSim, on synthetic ColBERT-like corpora (bench/synthetic-colbert.ts:
 * clustered term vectors with contextual noise, ~50 tokens a document, 128-d, queries of 32
 * vectors aimed at a document). Encoding speed is measured separately (npm run bench).
 *
 *   node bin/run-ts.mjs bench/retrieval.ts [--docs 10000,100000] [--queries 100] [--storage float16]
 *                                          [--layout plaid|hnsw] [--m 16] [--ef-construction 64]
 *                                          [--centroid-factor 4] [--nbits 2]
 *
 * Per corpus size: one process builds the index (one commit of every document: a bulk build),
 * a fresh one opens it (RSS before/after = memory of the loaded index), runs the queries at a few
 * search settings (5 warm-up queries first) and computes the exact top 10 of every query over the
 * original float32 vectors with onnxruntime (all queries' vectors against blocks of documents).
 * recall@10 = |search top 10 ∩ exact top 10| / 10, averaged over the queries. Writes
 * bench/results/<date>-retrieval-<machine>.json.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { IndexReader, SEARCH_PRESETS, type SearchOptions } from "../retrieval/index/reader.ts";
import type { IndexLayout } from "../retrieval/index/format.ts";
import { MaxSimScorer } from "../retrieval/index/rerank.ts";
import type { VectorStorage } from "../retrieval/index/vector-codec.ts";
import { IndexWriter } from "../retrieval/index/writer.ts";
import { SyntheticCorpus, rng } from "./synthetic-colbert.ts";

const ROOT = join(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    docs: { type: "string", default: "10000" },
    queries: { type: "string", default: "100" },
    storage: { type: "string", default: "float16" },
    m: { type: "string", default: "16" },
    "ef-construction": { type: "string", default: "64" },
    layout: { type: "string", default: "plaid" },
    "centroid-factor": { type: "string", default: "4" },
    nbits: { type: "string", default: "2" },
    phase: { type: "string" },
    dir: { type: "string" },
  },
});

const HNSW_SWEEP: SearchOptions[] = [
  { candidatesPerToken: 8, ef: 32, rerankDocs: 64 },
  { candidatesPerToken: 16, ef: 48, rerankDocs: 128 },
  { candidatesPerToken: 32, ef: 64, rerankDocs: 256 },
  { candidatesPerToken: 64, ef: 128, rerankDocs: 512 },
  { candidatesPerToken: 128, ef: 192, rerankDocs: 768 },
];
/** The presets, then variations around the default (what each stage buys). */
const PLAID_SWEEP: SearchOptions[] = [
  { preset: "fast" },
  { preset: "default" },
  { preset: "accurate" },
  { nprobe: 8, centroidDocs: 1024, residualDocs: 0, rerankDocs: 64 },
  { nprobe: 8, centroidDocs: 1024, residualDocs: 256, rerankDocs: 64 },
  { nprobe: 8, centroidDocs: 2048, residualDocs: 512, rerankDocs: 128 },
  { nprobe: 8, centroidDocs: 2048, residualDocs: 0, rerankDocs: 256 },
];

function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

/** Query i aims at a document drawn by a fixed seed. */
function queryTargets(docs: number, queries: number): number[] {
  const next = rng(99);
  return Array.from({ length: queries }, () => Math.floor(next() * docs));
}

async function buildPhase(dir: string, docs: number): Promise<void> {
  const corpus = new SyntheticCorpus();
  const started = performance.now();
  const writer = await IndexWriter.open(dir, {
    create: {
      dim: corpus.dim,
      storage: values.storage as VectorStorage,
      layout: values.layout as IndexLayout,
      graph: { m: Number(values.m), efConstruction: Number(values["ef-construction"]) },
      codec: { centroidFactor: Number(values["centroid-factor"]), nbits: Number(values.nbits) },
    },
  });
  let rows = 0;
  for (let i = 0; i < docs; i++) {
    const embeddings = corpus.document(i);
    rows += embeddings.rows;
    writer.upsert({ id: `doc-${i}`, embeddings, text: `synthetic document ${i}`, metadata: { shard: i % 10 } });
  }
  const generated = performance.now();
  let graphStarted = 0;
  let compressStarted = 0;
  let lastReport = 0;
  await writer.commit({
    onProgress: (stage, done, total) => {
      if (stage === "training centroids") compressStarted ||= performance.now();
      if (stage === "building the graph") {
        graphStarted ||= performance.now();
        if (performance.now() - lastReport > 30_000) {
          lastReport = performance.now();
          process.stderr.write(`  graph ${done}/${total}\n`);
        }
      }
    },
  });
  const committed = performance.now();
  await writer.close();
  process.stdout.write(
    `${JSON.stringify({
      docs,
      rows,
      generateAndEncodeSeconds: (generated - started) / 1000,
      commitSeconds: (committed - generated) / 1000,
      graphSeconds: graphStarted ? (committed - graphStarted) / 1000 : 0,
      compressSeconds: compressStarted ? (committed - compressStarted) / 1000 : 0,
      rowsPerSecond: rows / ((committed - generated) / 1000),
    })}\n`,
  );
}

async function searchPhase(dir: string, docs: number, queryCount: number): Promise<void> {
  const corpus = new SyntheticCorpus();
  const queries = queryTargets(docs, queryCount).map((target, q) => corpus.query(q, target));
  global.gc?.();
  const rssBefore = rssBytes();
  const openStarted = performance.now();
  const reader = await IndexReader.open(dir);
  const openSeconds = (performance.now() - openStarted) / 1000;
  global.gc?.();
  const rssAfter = rssBytes();
  const stats = reader.stats();
  const layout = stats.layout;

  const truth = await exactTop10(corpus, docs, queries);
  const storedTruth = docs <= 20_000 ? await Promise.all(queries.map(async (q) => (await reader.search(q, { k: 10, exhaustive: true })).map((h) => h.id))) : null;

  const sweep = [];
  for (const params of layout === "plaid" ? PLAID_SWEEP : HNSW_SWEEP) {
    for (let w = 0; w < 5; w++) await reader.search(queries[w], { k: 10, ...params });
    const latencies: number[] = [];
    let hits = 0;
    let storedHits = 0;
    for (let q = 0; q < queries.length; q++) {
      const t = performance.now();
      const top = await reader.search(queries[q], { k: 10, ...params });
      latencies.push(performance.now() - t);
      const ids = top.map((h) => h.id);
      hits += ids.filter((id) => truth[q].has(id)).length;
      if (storedTruth) storedHits += ids.filter((id) => storedTruth[q].includes(id)).length;
    }
    latencies.sort((a, b) => a - b);
    const at = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
    const effective = params.preset ? SEARCH_PRESETS[params.preset][layout] : params;
    const defaults = SEARCH_PRESETS.default[layout] as unknown as Record<string, number>;
    sweep.push({
      ...params,
      ...effective,
      isDefault: Object.entries(defaults).every(([key, v]) => (effective as Record<string, unknown>)[key] === v),
      recallAt10: hits / (10 * queries.length),
      recallAt10VsStoredExact: storedTruth ? storedHits / (10 * queries.length) : null,
      p50Ms: at(0.5),
      p95Ms: at(0.95),
      meanMs: latencies.reduce((a, b) => a + b, 0) / latencies.length,
    });
  }
  const disk = stats.bytesOnDisk;
  process.stdout.write(
    `${JSON.stringify({
      openSeconds,
      rows: stats.rows,
      memoryBytesPerToken: (rssAfter - rssBefore) / stats.rows,
      centroids: stats.centroids,
      diskBytesPerToken: {
        vectors: disk.vectors / stats.rows,
        graph: disk.graphs / stats.rows,
        compressed: disk.compressed / stats.rows,
        documents: disk.documents / stats.rows,
        total: (disk.vectors + disk.graphs + disk.compressed + disk.documents) / stats.rows,
      },
      exactRecallAt10OfStoredVectors: storedTruth ? storedTruth.reduce((n, ids, q) => n + ids.filter((id) => truth[q].has(id)).length, 0) / (10 * queries.length) : null,
      sweep,
    })}\n`,
  );
  await reader.close();
}

/** Exact top-10 ids per query over the float32 vectors: every query's rows × blocks of documents in one Gemm. */
async function exactTop10(corpus: SyntheticCorpus, docs: number, queries: Array<{ rows: number; dim: number; data: Float32Array }>): Promise<Array<Set<string>>> {
  const dim = corpus.dim;
  const scorer = await MaxSimScorer.create("float32", dim);
  const qRows = queries.map((q) => q.rows);
  const qStart = qRows.map((_, i) => qRows.slice(0, i).reduce((a, b) => a + b, 0));
  const totalQ = qRows.reduce((a, b) => a + b, 0);
  const stacked = new Float32Array(totalQ * dim);
  queries.forEach((q, i) => stacked.set(q.data.subarray(0, q.rows * dim), qStart[i] * dim));
  const best = queries.map(() => [] as Array<{ doc: number; score: number }>);
  const BLOCK = 250; // documents per Gemm: [all query rows × ~12k rows] of similarities
  for (let first = 0; first < docs; first += BLOCK) {
    const block = Array.from({ length: Math.min(BLOCK, docs - first) }, (_, i) => corpus.document(first + i));
    const rows = block.reduce((n, d) => n + d.rows, 0);
    const data = new Float32Array(rows * dim);
    const starts: number[] = [];
    let at = 0;
    for (const d of block) {
      starts.push(at);
      data.set(d.data, at * dim);
      at += d.rows;
    }
    const sim = await scorer.similarities({ rows: totalQ, dim, data: stacked }, { storage: "float32", dim, rows, codes: data });
    for (let q = 0; q < queries.length; q++) {
      const top = best[q];
      block.forEach((d, b) => {
        let score = 0;
        for (let r = qStart[q]; r < qStart[q] + qRows[q]; r++) {
          let m = -Infinity;
          const base = r * rows + starts[b];
          for (let t = 0; t < d.rows; t++) if (sim[base + t] > m) m = sim[base + t];
          score += m;
        }
        if (top.length < 10 || score > top[top.length - 1].score) {
          top.push({ doc: first + b, score });
          top.sort((x, y) => y.score - x.score);
          if (top.length > 10) top.pop();
        }
      });
    }
  }
  await scorer.release();
  return best.map((top) => new Set(top.map((t) => `doc-${t.doc}`)));
}

async function main(): Promise<void> {
  const sizes = values.docs.split(",").map((s) => Number(s.trim()));
  const queries = Number(values.queries);
  const cpu = cpus()[0]?.model ?? "unknown cpu";
  const machine = { cpu, logicalCores: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version };
  const corpora = [];
  for (const docs of sizes) {
    const dir = mkdtempSync(join(tmpdir(), "lfm-bench-index-"));
    try {
      const child = (phase: string, heapGb: number) =>
        JSON.parse(
          execFileSync(
            process.execPath,
            [
              `--max-old-space-size=${heapGb * 1024}`,
              "--expose-gc",
              join(ROOT, "bin/run-ts.mjs"),
              join(ROOT, "bench/retrieval.ts"),
              ...["--phase", phase, "--dir", dir, "--docs", String(docs), "--queries", String(queries), "--storage", values.storage, "--layout", values.layout],
              ...["--m", values.m, "--ef-construction", values["ef-construction"], "--centroid-factor", values["centroid-factor"], "--nbits", values.nbits],
            ],
            { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 24 },
          )
            .trim()
            .split("\n")
            .pop() as string,
        );
      process.stderr.write(`${docs} documents: building…\n`);
      const build = child("build", 8);
      process.stderr.write(`  built in ${(build.generateAndEncodeSeconds + build.commitSeconds).toFixed(1)} s (graph ${build.graphSeconds.toFixed(1)} s, centroids and compression ${build.compressSeconds.toFixed(1)} s); searching…\n`);
      const search = child("search", 8);
      corpora.push({ docs, rows: build.rows, dim: 128, storage: values.storage, layout: values.layout, build, search });
      process.stderr.write(`  open ${search.openSeconds.toFixed(2)} s, memory ${search.memoryBytesPerToken.toFixed(1)} B/token, disk ${search.diskBytesPerToken.total.toFixed(1)} B/token (compressed ${search.diskBytesPerToken.compressed.toFixed(1)}), ${search.centroids} centroids\n`);
      for (const s of search.sweep) {
        const what =
          values.layout === "plaid" ? `${s.preset ?? ""} nprobe ${s.nprobe} centroidDocs ${s.centroidDocs} residualDocs ${s.residualDocs} rerank ${s.rerankDocs}` : `perToken ${s.candidatesPerToken} ef ${s.ef} rerank ${s.rerankDocs}`;
        process.stderr.write(`  ${what}: recall@10 ${s.recallAt10.toFixed(3)}  p50 ${s.p50Ms.toFixed(1)} ms  p95 ${s.p95Ms.toFixed(1)} ms${s.isDefault ? "  (default)" : ""}\n`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const date = new Date().toISOString().slice(0, 10);
  const slug = `${cpu.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase()}-${machine.logicalCores}c`;
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  let file = join(ROOT, "bench/results", `${date}-retrieval-${slug}.json`);
  for (let n = 2; existsSync(file); n++) file = join(ROOT, "bench/results", `${date}-retrieval-${slug}-${n}.json`);
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine,
        settings: {
          queries,
          storage: values.storage,
          layout: values.layout,
          ...(values.layout === "plaid" ? { codec: { centroidFactor: Number(values["centroid-factor"]), nbits: Number(values.nbits) } } : { graph: { m: Number(values.m), efConstruction: Number(values["ef-construction"]) } }),
          searchDefaults: SEARCH_PRESETS.default[values.layout as IndexLayout],
        },
        notes: [
          "synthetic corpus (bench/synthetic-colbert.ts): 256 topics × 64 content terms + 256 function words, 128-d, 40–60 tokens per document (token = term vector + contextual noise, cosine ≈ 0.9), queries of 32 vectors (4–10 content terms of a target document, 1–3 function words, expansion vectors mixing them)",
          "recallAt10: against exact MaxSim over the original float32 vectors; recallAt10VsStoredExact: against exact MaxSim over the stored (quantised) vectors, i.e. the graph search's own loss (computed up to 20k documents)",
          "memoryBytesPerToken: RSS growth of a fresh process opening the index (vectors, graph, documents, row tables) per stored token vector",
          "build: one commit of every document (bulk build); graphSeconds is hnswlib insertion in the worker thread (hnsw layout only)",
          "plaid layout: centroids, 2-bit residuals and inverted lists in memory; full rows (seg-*.vec) on disk, read by range for the exact rerank (page cache not counted in RSS)",
        ],
        corpora,
      },
      null,
      2,
    )}\n`,
  );
  process.stderr.write(`wrote ${file}\n`);
}

if (values.phase === "build") await buildPhase(values.dir as string, Number(values.docs));
else if (values.phase === "search") await searchPhase(values.dir as string, Number(values.docs), Number(values.queries));
else await main();
