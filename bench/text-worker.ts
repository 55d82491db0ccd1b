/**
 * One benchmark configuration in its own process (so peak RSS is this configuration's alone):
 * loads a checkpoint at a precision and measures time to first token, prefill and greedy decode
 * speed. Prints one JSON line.
 * Usage: node bin/run-ts.mjs bench/text-worker.ts DIR PRECISION THREADS RUNS PROMPT DECODE [CONTEXT]
 * CONTEXT (optional): KV positions allocated up front, as llama.cpp's context size.
 * RUNS = 0: only build the graph into the cache and exit (run first, so that building is not
 * what the measured process's peak RSS shows).
 *
 * It loads the runtime only (config + graph), not the tokenizer: prompts are ids, as in the
 * llama.cpp worker. (The benchmark checkpoints' tokenizer is the tiny fixture's padded with 64k
 * added tokens, which costs ~100 MB of JS heap that a real BPE tokenizer does not.)
 */
import { loadLfm2Config } from "../text-core/config.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { buildRuntime } from "../text-core/model.ts";
import { argmax, benchPromptIds, flushWrites, peakRssMb } from "./prompt.ts";

const [dir, precision, threadsArg, runsArg, promptArg, decodeArg, contextArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const runs = Number(runsArg);
const promptLength = Number(promptArg);
const decodeLength = Number(decodeArg);
const capacity = contextArg ? Number(contextArg) : undefined;

const loadStart = performance.now();
const config = loadLfm2Config(dir);
const runtime = await buildRuntime(dir, config, { precision: precision as Precision, head: "logits", exposeHidden: false }, { threads, cacheDir: process.env.LFM_CACHE_DIR });
const loadMs = performance.now() - loadStart;
if (runs === 0) {
  await runtime.release();
  process.stdout.write(`${JSON.stringify({ loadMs, samples: [], peakRssMb: peakRssMb() })}\n`);
  process.exit(0);
}
const model = { config, runtime };
flushWrites(); // a graph just built and cached must not be written back while we measure

const prompt = benchPromptIds(promptLength, model.config.vocabSize);
const samples: Array<{ ttftMs: number; prefillTokPerS: number; decodeTokPerS: number }> = [];
let tokens: number[] = [];
const state = model.runtime.newState(1, capacity);
for (let r = 0; r < runs + 1; r++) {
  state.reset(); // the same buffers every run, as a server reusing its slot would
  const t0 = performance.now();
  let out = await model.runtime.forward(state, { ids: [prompt] });
  let next = argmax(out.output, out.width);
  const prefillMs = performance.now() - t0;
  const generated = [next];
  const t1 = performance.now();
  // Greedy: each step feeds the previous step's argmax.
  for (let i = 0; i < decodeLength; i++) {
    out = await model.runtime.forward(state, { ids: [[next]] });
    next = argmax(out.output, out.width);
    generated.push(next);
  }
  const decodeMs = performance.now() - t1;
  tokens = generated.slice(0, 16);
  // The first run warms caches and thread pools and is not counted.
  if (r > 0) samples.push({ ttftMs: prefillMs, prefillTokPerS: (promptLength / prefillMs) * 1000, decodeTokPerS: (decodeLength / decodeMs) * 1000 });
}
await runtime.release();
process.stdout.write(`${JSON.stringify({ loadMs, samples, peakRssMb: peakRssMb(), tokens })}\n`);
