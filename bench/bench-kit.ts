/**
 * What the per-stage benchmark drivers (vision.ts, colbert.ts) share: one worker process per
 * configuration (so peak RSS is its own), medians, the machine description and the results file
 * bench/results/<date>-<machine>-<suite>.json (-2, -3, … for later runs that day).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { type Lfm2Config, parseLfm2Config } from "../text-core/config.ts";
import { defaultCacheDir } from "../text-core/graph-cache.ts";
import { writeSafetensors } from "./safetensors-writer.ts";
import { lfm2TensorShapes, paddedTokenizerJson, plainWordsTokenizerJson, randomWeights, writeSyntheticCheckpoint } from "./synthetic-checkpoint.ts";

export const ROOT = join(import.meta.dirname, "..");
export const benchCacheDir = process.env.LFM_CACHE_DIR ?? defaultCacheDir();

/** What a worker prints as its last stdout line. */
export interface WorkerResult {
  loadMs: number;
  peakRssMb: number;
  samples: Array<Record<string, number>>;
  /** Facts about the workload (token counts, crops…), the same in every run. */
  info?: Record<string, number>;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The median of every sample field. */
export const medians = (r: WorkerResult): Record<string, number> =>
  Object.fromEntries(Object.keys(r.samples[0] ?? {}).map((k) => [k, median(r.samples.map((s) => s[k]))]));

/** Runs `bench/<worker>` in a process of its own with the shared graph cache; returns its JSON line. */
export function runWorker(worker: string, args: string[]): WorkerResult {
  const out = execFileSync(process.execPath, [join(ROOT, "bin/run-ts.mjs"), join(ROOT, "bench", worker), ...args], {
    encoding: "utf8",
    env: { ...process.env, LFM_CACHE_DIR: benchCacheDir },
    maxBuffer: 1 << 24,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(out.trim().split("\n").pop() as string) as WorkerResult;
}

/**
 * Builds the graphs in a throwaway process first (runs = 0), then measures in a fresh one, so the
 * measured process loads cached graphs as a user's second start does.
 */
export function buildThenMeasure(worker: string, args: (runs: string) => string[], runs: string): WorkerResult {
  runWorker(worker, args("0"));
  return runWorker(worker, args(runs));
}

/**
 * The random-weight checkpoint with a published LFM2 shape (fixtures/real-configs/<name>.config.json),
 * written once into <cache>/bench-checkpoints/<name>; the tokenizer is the tiny fixture's, padded to
 * the real vocabulary size with special filler tokens, or with plain words (`"words"`, written to
 * <name>-words) where the generated ids must decode to text, as speech from a reply needs.
 */
export function lfm2BenchCheckpoint(name: string, padding: "special" | "words" = "special"): { dir: string; config: Lfm2Config } {
  const raw = JSON.parse(readFileSync(join(ROOT, "fixtures/real-configs", `${name}.config.json`), "utf8"));
  const config = parseLfm2Config(raw, name);
  const tokenizerDir = join(ROOT, "fixtures/text/tiny-lfm2");
  process.stderr.write(`${name}: random-weight checkpoint… `);
  const baseTokenizer = readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8");
  const dir = writeSyntheticCheckpoint(join(benchCacheDir, "bench-checkpoints", padding === "words" ? `${name}-words` : name), {
    config: raw,
    tensors: lfm2TensorShapes(config),
    values: "random",
    tokenizerFrom: tokenizerDir,
    tokenizerJson: padding === "words" ? plainWordsTokenizerJson(baseTokenizer, config.vocabSize) : paddedTokenizerJson(baseTokenizer, config.vocabSize),
  });
  process.stderr.write("ready\n");
  return { dir, config };
}

/**
 * The LFM2-ColBERT-350M-shape PyLate folder (random weights), written once into
 * <cache>/bench-checkpoints/lfm2-colbert-350m: backbone (config + random bf16 weights), the PyLate files and
 * the Dense projection in 1_Dense. The tokenizer is the tiny fixture's plus PyLate's two prefix
 * tokens (documents are sized in its tokens, so the model sees ~200 positions all the same).
 */
export function colbertBenchCheckpoint(): string {
  const files = JSON.parse(readFileSync(join(ROOT, "fixtures/realshape/configs.json"), "utf8"))["lfm2-colbert-350m"] as Record<string, Record<string, unknown>>;
  const { "config.json": raw, ...pylateFiles } = files;
  const config = parseLfm2Config(raw, "lfm2-colbert-350m");
  const tokenizerDir = join(ROOT, "fixtures/text/tiny-lfm2");
  const tokenizerJson = readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8");
  const tok = JSON.parse(tokenizerJson) as { added_tokens: Array<{ id: number }>; model: { vocab: Record<string, number> } };
  const size = Math.max(...Object.values(tok.model.vocab), ...tok.added_tokens.map((t) => t.id)) + 1;
  const dir = writeSyntheticCheckpoint(join(benchCacheDir, "bench-checkpoints", "lfm2-colbert-350m"), {
    config: raw,
    tensors: lfm2TensorShapes(config, ""),
    values: "random",
    tokenizerFrom: tokenizerDir,
    tokenizerJson: paddedTokenizerJson(tokenizerJson, size + 2, ["[Q] ", "[D] "]),
    extraFiles: pylateFiles,
  });
  const denseFile = join(dir, "1_Dense", "model.safetensors");
  if (!existsSync(denseFile)) {
    const dense = files["1_Dense/config.json"] as { in_features: number; out_features: number };
    const shape = [dense.out_features, dense.in_features];
    const w = randomWeights("linear.weight", shape);
    const tmp = `${denseFile}.tmp-${process.pid}`;
    writeSafetensors(tmp, [{ name: "linear.weight", dtype: "BF16", shape, data: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) }], { format: "pt" });
    renameSync(tmp, denseFile);
  }
  return dir;
}

export function machineInfo() {
  const cpu = cpus()[0]?.model ?? "unknown cpu";
  return { cpu, logicalCores: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version };
}

export const formatLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");

/** Writes the results file and returns its path. */
export function writeResults(suite: string, body: { settings: Record<string, unknown>; loadStart: number[]; notes: string[]; results: unknown[] }): string {
  const machine = machineInfo();
  const date = new Date().toISOString().slice(0, 10);
  const slug = `${machine.cpu.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase()}-${machine.logicalCores}c`;
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  let file = join(ROOT, "bench/results", `${date}-${slug}-${suite}.json`);
  for (let n = 2; existsSync(file); n++) file = join(ROOT, "bench/results", `${date}-${slug}-${suite}-${n}.json`);
  const { loadStart, ...rest } = body;
  const record = { date: new Date().toISOString(), machine, ...rest, loadAverage: { start: loadStart, end: loadavg() } };
  writeFileSync(file, `${JSON.stringify(record, null, 1)}\n`);
  return file;
}
