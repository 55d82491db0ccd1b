/**
 * `npm run bench` — language-core speed on random-weight checkpoints with the real published
 * shapes (speed does not depend on the weight values). Each configuration runs in its own process
 * so peak RSS is its own; figures are medians over several runs after a warm-up run.
 * Writes bench/results/<date>-<machine>.json and prints a table.
 *
 *   npm run bench -- [--models lfm2-350m,lfm2-1.2b] [--precisions q4,q8,fp32] [--runs 3]
 *                    [--threads 2] [--prompt 512] [--decode 128]
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseLfm2Config } from "../text-core/config.ts";
import { defaultCacheDir } from "../text-core/graph-cache.ts";
import { lfm2TensorShapes, paddedTokenizerJson, writeSyntheticCheckpoint } from "../text-core/synthetic-checkpoint.ts";
import { measureMemoryBandwidth } from "./bandwidth.ts";

const ROOT = join(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    models: { type: "string", default: "lfm2-350m,lfm2-1.2b" },
    precisions: { type: "string", default: "q4,q8" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    prompt: { type: "string", default: "512" },
    decode: { type: "string", default: "128" },
  },
});

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Bytes of weights one decode step reads: every Linear (incl. the tied head) at its precision. */
function weightBytesPerToken(config: ReturnType<typeof parseLfm2Config>, precision: string): number {
  const bytesPerWeight = precision === "q4" ? 0.5 + 4 / 32 : precision === "q8" ? 1 + 4 / 32 : 4;
  let weights = 0;
  for (const [name, shape] of lfm2TensorShapes(config)) {
    if (shape.length === 2 && !name.includes("embed_tokens")) weights += shape[0] * shape[1];
  }
  weights += config.vocabSize * config.hiddenSize; // the tied head
  return weights * bytesPerWeight;
}

const cpu = cpus()[0]?.model ?? "unknown cpu";
const machine = {
  cpu,
  logicalCores: cpus().length,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  memoryBandwidthGBps: 0,
};
process.stderr.write(`measuring memory bandwidth… `);
machine.memoryBandwidthGBps = measureMemoryBandwidth();
process.stderr.write(`${machine.memoryBandwidthGBps.toFixed(1)} GB/s\n`);

const cacheDir = process.env.LFM_CACHE_DIR ?? defaultCacheDir();
const results: Array<Record<string, unknown>> = [];
for (const name of values.models.split(",")) {
  const raw = JSON.parse(readFileSync(join(ROOT, "fixtures/real-configs", `${name}.config.json`), "utf8"));
  const config = parseLfm2Config(raw, name);
  const tokenizerDir = join(ROOT, "fixtures/text/tiny-lfm2");
  process.stderr.write(`${name}: random-weight checkpoint… `);
  const dir = writeSyntheticCheckpoint(join(cacheDir, "bench-checkpoints", name), {
    config: raw,
    tensors: lfm2TensorShapes(config),
    values: "random",
    tokenizerFrom: tokenizerDir,
    tokenizerJson: paddedTokenizerJson(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8"), config.vocabSize),
  });
  process.stderr.write("ready\n");
  for (const precision of values.precisions.split(",")) {
    process.stderr.write(`  ${precision}: `);
    const out = execFileSync(
      process.execPath,
      [join(ROOT, "bin/run-ts.mjs"), join(ROOT, "bench/text-worker.ts"), dir, precision, values.threads, values.runs, values.prompt, values.decode],
      { encoding: "utf8", env: { ...process.env, LFM_CACHE_DIR: cacheDir }, maxBuffer: 1 << 20 },
    );
    const r = JSON.parse(out.trim().split("\n").pop() as string) as {
      loadMs: number;
      peakRssMb: number;
      samples: Array<{ ttftMs: number; prefillTokPerS: number; decodeTokPerS: number }>;
    };
    const decode = median(r.samples.map((s) => s.decodeTokPerS));
    const bytes = weightBytesPerToken(config, precision);
    const row = {
      engine: "lfm2-edge",
      model: name,
      precision,
      threads: Number(values.threads),
      promptTokens: Number(values.prompt),
      decodeTokens: Number(values.decode),
      runs: r.samples.length,
      prefillTokPerS: median(r.samples.map((s) => s.prefillTokPerS)),
      decodeTokPerS: decode,
      ttftMs: median(r.samples.map((s) => s.ttftMs)),
      peakRssMb: r.peakRssMb,
      loadMs: r.loadMs,
      weightBytesPerToken: bytes,
      decodeEfficiency: (bytes * decode) / (machine.memoryBandwidthGBps * 1e9),
      samples: r.samples,
    };
    results.push(row);
    process.stderr.write(`prefill ${row.prefillTokPerS.toFixed(1)} tok/s, decode ${decode.toFixed(1)} tok/s, RSS ${row.peakRssMb.toFixed(0)} MB\n`);
  }
}

const date = new Date().toISOString().slice(0, 10);
const slug = `${cpu.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase()}-${machine.logicalCores}c`;
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
const file = join(ROOT, "bench/results", `${date}-${slug}.json`);
writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), machine, results }, null, 1)}\n`);

console.log(`\n${"model".padEnd(11)} ${"prec".padEnd(5)} ${"prefill t/s".padStart(11)} ${"decode t/s".padStart(10)} ${"TTFT ms".padStart(8)} ${"peak RSS MB".padStart(11)} ${"decode eff".padStart(10)}`);
for (const r of results) {
  console.log(
    `${String(r.model).padEnd(11)} ${String(r.precision).padEnd(5)} ${(r.prefillTokPerS as number).toFixed(1).padStart(11)} ${(r.decodeTokPerS as number).toFixed(1).padStart(10)} ${(r.ttftMs as number).toFixed(0).padStart(8)} ${(r.peakRssMb as number).toFixed(0).padStart(11)} ${`${((r.decodeEfficiency as number) * 100).toFixed(0)}%`.padStart(10)}`,
  );
}
console.log(`\nmachine: ${cpu}, ${machine.logicalCores} logical cores, ${machine.memoryGb} GB, memory bandwidth ${machine.memoryBandwidthGBps.toFixed(1)} GB/s; threads ${values.threads}`);
console.log(`written ${file}`);
