/**
 * llama.cpp's side of `npm run bench:quality`: the next-token distribution of every position of
 * the prompt from a GGUF (Q4_0 / Q8_0 of the same random weights), through node-llama-cpp's
 * `controlledEvaluate` (probabilities at temperature 1, no truncation), compared with the fp32
 * logits ours computed (a float32 [tokens, V] file). Prints one JSON line {top1, meanKl}.
 *
 * Usage: node bin/run-ts.mjs bench/llama-quality-worker.ts GGUF THREADS REFERENCE.bin IDS(comma-separated)
 */
import { readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { agreement } from "../text-core/logit-agreement.ts";

const [path, threadsArg, referencePath, idsArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const ids = idsArg.split(",").map(Number) as Token[];
const bytes = readFileSync(referencePath);
const reference = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
const V = reference.length / ids.length;

const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true, progressLogs: false, maxThreads: threads, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: false });
const context = await model.createContext({ contextSize: Math.max(512, ids.length + 1), batchSize: Math.max(512, ids.length), sequences: 1, threads: { ideal: threads, min: threads } });
const sequence = context.getSequence();
const next = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1 } };
const out = await sequence.controlledEvaluate(ids.map((id) => [id, { generateNext: next }]));

// llama.cpp's log-probabilities stand in for its logits: agreement() normalises both sides.
const logProbabilities = new Float32Array(reference.length);
for (let t = 0; t < ids.length; t++) {
  const probabilities = out[t]?.next?.probabilities;
  if (!probabilities) throw new Error(`no probabilities for position ${t}`);
  if (probabilities.size !== V) throw new Error(`position ${t}: ${probabilities.size} probabilities, expected the whole vocabulary (${V})`);
  for (const [token, p] of probabilities) logProbabilities[t * V + token] = Math.log(Math.max(p, 1e-38));
}
await context.dispose();
await model.dispose();
const { top1, kl } = agreement(reference, logProbabilities, V);
process.stdout.write(`${JSON.stringify({ top1, meanKl: kl })}\n`);
