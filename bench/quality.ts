/**
 * `npm run bench:quality` — how far q8 and q4 move an LFM2 model's next-token distribution from
 * fp32, on random-weight checkpoints with the published shapes (the same ones `npm run bench`
 * times): top-1 agreement and mean KL(p_fp32 ‖ p_quantised) over every position of a prompt —
 * ours at q8 / q4, and llama.cpp's Q8_0 / Q4_0 of the same weights (bench/llama-quality-worker.ts)
 * against the same fp32 logits, the yardstick for what 8 and 4 bits cost this network.
 * Random weights are not a trained model (see README, Precision), but they exercise every
 * quantised matrix at its real size. One precision loaded at a time; writes
 * bench/results/<date>-<machine>-quality.json and prints a table.
 *
 *   npm run bench:quality -- [--models lfm2-350m] [--tokens 64] [--threads 2]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Precision } from "../text-core/graph/precision.ts";
import { agreement } from "../text-core/logit-agreement.ts";
import { TextModel } from "../text-core/model.ts";
import { benchCacheDir, formatLoad, lfm2BenchCheckpoint, machineInfo, runWorker, writeResults } from "./bench-kit.ts";
import { cachedLfm2Gguf } from "./gguf-writer.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "lfm2-350m" },
    tokens: { type: "string", default: "64" },
    threads: { type: "string", default: "2" },
  },
});
const tokens = Number(values.tokens);
const threads = Number(values.threads);
if (!Number.isInteger(tokens) || tokens < 1 || !Number.isInteger(threads) || threads < 1) throw new Error("--tokens and --threads take positive integers");

/** Logits [tokens, V] of every position of `prompt`. */
async function logitsAt(dir: string, precision: Precision, prompt: number[]): Promise<Float32Array> {
  process.stderr.write(`  ${precision}… `);
  const model = await TextModel.load(dir, { precision, threads, cacheDir: benchCacheDir });
  try {
    const out = await model.runtime.forward(model.runtime.newState(1), { ids: [prompt], keep: prompt.length });
    process.stderr.write("done\n");
    return out.output.slice();
  } finally {
    await model.release();
  }
}

const loadStart = loadavg();
const results: Array<Record<string, unknown>> = [];
for (const name of values.models.split(",")) {
  const { dir, config } = lfm2BenchCheckpoint(name);
  // A fixed prompt of ids spread over the vocabulary (the weights are random, so the text would not matter).
  const prompt = Array.from({ length: tokens }, (_, i) => 1 + ((i * 7919 + 13) % (config.vocabSize - 1)));
  const exact = await logitsAt(dir, "fp32", prompt);
  for (const precision of ["q8", "q4"] as const) {
    const { top1, kl } = agreement(exact, await logitsAt(dir, precision, prompt), config.vocabSize);
    results.push({ engine: "ours", model: name, precision, positions: tokens, top1, meanKl: kl });
  }
  const scratch = mkdtempSync(join(tmpdir(), "lfm-quality-"));
  try {
    const reference = join(scratch, "fp32-logits.bin");
    writeFileSync(reference, new Uint8Array(exact.buffer, exact.byteOffset, exact.byteLength));
    for (const quant of ["Q8_0", "Q4_0"] as const) {
      process.stderr.write(`  llama.cpp ${quant}… `);
      try {
        const r = runWorker("llama-quality-worker.ts", [cachedLfm2Gguf(dir, quant), String(threads), reference, prompt.join(",")]) as unknown as { top1: number; meanKl: number };
        results.push({ engine: "llama.cpp", model: name, precision: quant, positions: tokens, top1: r.top1, meanKl: r.meanKl });
        process.stderr.write("done\n");
      } catch (e) {
        results.push({ engine: "llama.cpp", model: name, precision: quant, error: (e as Error).message });
        process.stderr.write("failed\n");
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

const file = writeResults("quality", {
  settings: { tokens, threads },
  loadStart,
  notes: ["top1: share of positions whose argmax equals fp32's; meanKl: mean over positions of KL(softmax(fp32) ‖ softmax(quantised)), nats"],
  results,
});
console.log(`\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores`);
console.log(`${"model".padEnd(12)} ${"engine".padEnd(10)} ${"prec".padEnd(5)} ${"top-1".padStart(7)} ${"mean KL".padStart(9)}`);
for (const r of results) {
  const figures = r.error ? `failed: ${String(r.error).split("\n")[0].slice(0, 60)}` : `${(r.top1 as number).toFixed(3).padStart(7)} ${(r.meanKl as number).toFixed(4).padStart(9)}`;
  console.log(`${String(r.model).padEnd(12)} ${String(r.engine).padEnd(10)} ${String(r.precision).padEnd(5)} ${figures}`);
}
console.log(`\n${file}`);
