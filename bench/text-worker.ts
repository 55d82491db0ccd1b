/**
 * One benchmark configuration in its own process (so peak RSS is this configuration's alone):
 * loads a checkpoint at a precision and measures time to first token, prefill and decode speed.
 * Prints one JSON line. Usage: node bin/run-ts.mjs bench/text-worker.ts DIR PRECISION THREADS RUNS PROMPT DECODE
 */
import { TextModel } from "../text-core/model.ts";
import type { Precision } from "../text-core/graph/blocks.ts";

const [dir, precision, threadsArg, runsArg, promptArg, decodeArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const runs = Number(runsArg);
const promptLength = Number(promptArg);
const decodeLength = Number(decodeArg);

const loadStart = performance.now();
const model = await TextModel.load(dir, { precision: precision as Precision, threads, cacheDir: process.env.LFM_CACHE_DIR });
const loadMs = performance.now() - loadStart;

// Token ids spread over the vocabulary; the values do not change the cost.
const prompt = Array.from({ length: promptLength }, (_, i) => 1000 + ((i * 7919) % (model.config.vocabSize - 1000)));
const samples: Array<{ ttftMs: number; prefillTokPerS: number; decodeTokPerS: number }> = [];
for (let r = 0; r < runs + 1; r++) {
  const state = model.runtime.newState(1);
  const t0 = performance.now();
  await model.runtime.forward(state, { ids: [prompt] });
  const prefillMs = performance.now() - t0;
  const t1 = performance.now();
  for (let i = 0; i < decodeLength; i++) await model.runtime.forward(state, { ids: [[1000 + i]] });
  const decodeMs = performance.now() - t1;
  // The first run warms caches and thread pools and is not counted.
  if (r > 0) samples.push({ ttftMs: prefillMs, prefillTokPerS: (promptLength / prefillMs) * 1000, decodeTokPerS: (decodeLength / decodeMs) * 1000 });
}
await model.release();
process.stdout.write(`${JSON.stringify({ loadMs, samples, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
