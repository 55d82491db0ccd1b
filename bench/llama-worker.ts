/**
 * llama.cpp's side of the benchmark (bench/text-worker.ts is ours), in its own process so peak RSS
 * is this configuration's alone: loads a GGUF through node-llama-cpp (prebuilt CPU backend, no GPU,
 * never builds), evaluates the same prompt token ids as ours (no tokenisation, no BOS), then
 * decodes greedily; a warm-up run, then RUNS measured runs. Prints one JSON line.
 *
 * Settings, chosen to match ours: `threads` for both prefill and decode; the whole prompt in one
 * batch (batch size = prompt length, at least llama.cpp's default 512); context CONTEXT tokens;
 * `useMmap: false`, so the weights are read into llama.cpp's own (anonymous) buffers as ours are
 * (with mmap the file's page cache pages would be shared and could be counted or not depending on
 * the kernel's accounting); flash attention and KV cache type left at node-llama-cpp's defaults
 * ("auto" → on for CPU, F16).
 *
 * Usage: node bin/run-ts.mjs bench/llama-worker.ts GGUF THREADS RUNS PROMPT DECODE CONTEXT
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { benchPromptIds, flushWrites, peakRssMb } from "./prompt.ts";

const [path, threadsArg, runsArg, promptArg, decodeArg, contextArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const runs = Number(runsArg);
const promptLength = Number(promptArg);
const decodeLength = Number(decodeArg);
const contextSize = Number(contextArg ?? 1024);

// llama.cpp's own log lines about the buffers it allocates (repacked weights, KV cache, compute).
const buffers: string[] = [];
const logger = (_level: LlamaLogLevel, message: string) => {
  const m = /(\S+) (model|KV|compute|RS|output) buffer size =\s*([\d.]+) MiB/.exec(message);
  if (m) buffers.push(`${m[1]} ${m[2]} ${m[3]} MiB`);
  if (/flash.attn|Flash Attention/i.test(message)) buffers.push(message.trim());
};

const loadStart = performance.now();
const llama = await getLlama({
  gpu: false,
  build: "never",
  skipDownload: true,
  usePrebuiltBinaries: true,
  progressLogs: false,
  maxThreads: threads,
  logLevel: LlamaLogLevel.info,
  logger,
});
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: false, useMlock: false });
const context = await model.createContext({
  contextSize,
  batchSize: Math.max(512, promptLength),
  sequences: 1,
  threads: { ideal: threads, min: threads },
});
const sequence = context.getSequence();
const loadMs = performance.now() - loadStart;
flushWrites();

const arch = model.fileInfo.metadata.general.architecture;
if (arch !== "lfm2") throw new Error(`${path} loaded as "${arch}", expected "lfm2"`);
const vocabSize = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const prompt = benchPromptIds(promptLength, vocabSize) as Token[];

const samples: Array<{ ttftMs: number; prefillTokPerS: number; decodeTokPerS: number }> = [];
let tokens: number[] = [];
for (let r = 0; r < runs + 1; r++) {
  await sequence.clearHistory();
  // Greedy, no penalties; end-of-generation tokens are yielded and decoding goes on through them.
  const steps = sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true });
  const t0 = performance.now();
  const first = await steps.next();
  const prefillMs = performance.now() - t0;
  if (first.done) throw new Error("llama.cpp produced no token after the prompt");
  const generated: number[] = [first.value];
  const t1 = performance.now();
  // Each step evaluates the previous token (one forward pass) and samples the next.
  for (let i = 0; i < decodeLength; i++) {
    const step = await steps.next();
    if (step.done) throw new Error(`llama.cpp stopped after ${i} decode steps`);
    generated.push(step.value);
  }
  const decodeMs = performance.now() - t1;
  await steps.return();
  tokens = generated.slice(0, 16);
  if (r > 0) samples.push({ ttftMs: prefillMs, prefillTokPerS: (promptLength / prefillMs) * 1000, decodeTokPerS: (decodeLength / decodeMs) * 1000 });
}

const info = {
  llamaCpp: llama.llamaCppRelease.release,
  nodeLlamaCpp: (JSON.parse(readFileSync(join(import.meta.dirname, "../node_modules/node-llama-cpp/package.json"), "utf8")) as { version: string }).version,
  cpu: llama.systemInfo.trim(),
  contextSize: context.contextSize,
  batchSize: context.batchSize,
  threads: context.currentThreads,
  flashAttention: context.flashAttention,
  useMmap: false,
  buffers: [...new Set(buffers)],
};
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(`${JSON.stringify({ loadMs, samples, peakRssMb: peakRssMb(), tokens, info })}\n`);
