/**
 * Decode-step batching (text-core/decode-batcher.ts) in-process, no HTTP: for 1, 2, 4 and 8
 * concurrent generations, the total new tokens per second with the batcher against the same
 * generations run one after another, and whether batching changed any token (greedy, against the
 * alone runs) and by how much it moved the logits of a step (rows gathered into one state vs alone).
 * Prints one JSON line and writes it to bench/results. (`npm run bench:serve` measures the server.)
 *
 *   npm run bench:batch -- [--model tiny|lfm2-350m|lfm2-1.2b] [--precision q4|q8|fp32]
 *                          [--clients 1,2,4,8] [--tokens 48] [--prompt 32] [--threads 2] [--runs 3]
 */
import { join } from "node:path";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { DecodeBatcher } from "../text-core/decode-batcher.ts";
import { collectTokens, generate } from "../text-core/generate.ts";
import { precisionOption } from "../text-core/graph/precision.ts";
import { TextModel } from "../text-core/model.ts";
import { DecodeState } from "../text-core/runtime.ts";
import { ROOT, benchCacheDir, lfm2BenchCheckpoint, machineInfo, median, writeResults } from "./bench-kit.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "tiny" },
    precision: { type: "string", default: "q4" },
    clients: { type: "string", default: "1,2,4,8" },
    tokens: { type: "string", default: "48" },
    prompt: { type: "string", default: "32" },
    threads: { type: "string", default: "2" },
    runs: { type: "string", default: "3" },
  },
});
const settings = {
  model: values.model as string,
  precision: precisionOption(values.precision, "q4"),
  clients: (values.clients as string).split(",").map(Number),
  tokens: Number(values.tokens),
  prompt: Number(values.prompt),
  threads: Number(values.threads),
  /** Sequential and batched runs alternate this many times; the medians are kept (a busy machine is noisy). */
  runs: Number(values.runs),
};

const dir = settings.model === "tiny" ? join(ROOT, "fixtures/text/tiny-lfm2") : lfm2BenchCheckpoint(settings.model).dir;
const model = await TextModel.load(dir, { precision: settings.precision, threads: settings.threads, cacheDir: benchCacheDir });
const rt = model.runtime;
const V = model.config.vocabSize;
const base = model.tokenizer.encode("The field technician photographed the pressure gauge and the invoice before leaving the site. ");
/** Prompt k: `prompt` tokens, a different rotation of the text for each client (no two alike). */
const promptOf = (k: number) => Array.from({ length: settings.prompt }, (_, i) => base[(i + 7 * k) % base.length]);
const opts = { maxTokens: settings.tokens, temperature: 0, stopTokenIds: [] as number[] };

// Warm-up: graph optimisation and first-call allocations out of the timings.
await collectTokens(generate(rt, promptOf(0), { ...opts, maxTokens: 4 }));

const loadStart = loadavg();
const rows: Record<string, number | boolean>[] = [];
for (const clients of settings.clients) {
  const prompts = Array.from({ length: clients }, (_, k) => promptOf(k));
  const sequentialRuns: number[] = [];
  const batchedRuns: number[] = [];
  let alone: number[][] = [];
  let together: number[][] = [];
  const batcher = new DecodeBatcher(rt);
  for (let run = 0; run < settings.runs; run++) {
    let t0 = performance.now();
    alone = [];
    for (const p of prompts) alone.push((await collectTokens(generate(rt, p, opts))).ids);
    sequentialRuns.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    together = await Promise.all(prompts.map(async (p) => (await collectTokens(generate(rt, p, { ...opts, batcher }))).ids));
    batchedRuns.push((performance.now() - t0) / 1000);
  }
  const [sequentialS, batchedS] = [median(sequentialRuns), median(batchedRuns)];
  const tokens = clients * settings.tokens;
  const sameTokens = together.every((ids, k) => ids.length === alone[k].length && ids.every((id, i) => id === alone[k][i]));
  rows.push({
    clients,
    sequentialTokensPerS: Math.round((tokens / sequentialS) * 10) / 10,
    batchedTokensPerS: Math.round((tokens / batchedS) * 10) / 10,
    speedup: Math.round((sequentialS / batchedS) * 100) / 100,
    meanRowsPerStep: Math.round((batcher.rowSteps / Math.max(1, batcher.steps)) * 100) / 100,
    sameTokens,
  });
  process.stderr.write(`${JSON.stringify(rows[rows.length - 1])}\n`);
}

/** Max |batched - alone| over the logits of 8 decode steps of 4 rows of different lengths. */
async function logitDrift(): Promise<number> {
  const states = [0, 1, 2, 3].map(() => rt.newState(1));
  const lengths = [settings.prompt, 9, Math.ceil(settings.prompt / 2), 40];
  for (const [k, s] of states.entries()) await rt.forward(s, { ids: [promptOf(k).slice(0, lengths[k])] });
  const batch = DecodeState.gather(states.map((state) => ({ state, row: 0 })));
  let drift = 0;
  for (let step = 0; step < 8; step++) {
    const ids = states.map((_, k) => [base[(step + 3 * k) % base.length]]);
    const together = (await rt.forward(batch, { ids })).output;
    for (const [k, s] of states.entries()) {
      const own = (await rt.forward(s, { ids: [ids[k]] })).output;
      for (let v = 0; v < V; v++) drift = Math.max(drift, Math.abs(together[k * V + v] - own[v]));
    }
  }
  return drift;
}

const maxLogitDrift = await logitDrift();
const notes = [
  "In-process (no HTTP); random-weight checkpoint for the real shapes, greedy, stop ids off; under whatever load the machine had (loadavg).",
  "Prompts run one at a time in both modes (prefill is not batched): short prompts keep the figures about decoding.",
  `max |logit batched - alone| over 8 steps of 4 rows of different lengths: ${maxLogitDrift.toExponential(2)} (at q4, MatMulNBits takes another path for one row than for several: see text-core/decode-batcher.ts)`,
];
const body = { settings, loadStart, notes, results: rows };
process.stdout.write(`${JSON.stringify({ bench: "decode-batch", machine: machineInfo(), loadEnd: loadavg(), maxLogitDrift, ...body })}\n`);
writeResults(`decode-batch-${settings.model}-${settings.precision}`, body);
await model.release();
