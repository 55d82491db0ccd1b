/**
 * Time per `Sampler.pick` over a 65536-entry vocabulary (LFM2's) with the sampling settings that
 * sort or scan the whole row: min-p, top-p, top-p + min-p, top-k + top-p, each with 300 ids seen
 * (repetition penalty). No model: pseudo-random logits. Prints a JSON line (settings, the machine,
 * the median ms per token of each setting over --runs runs) and writes it to bench/results.
 *
 *   npm run bench:sampler -- [--runs 7] [--picks 40] [--vocab 65536]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { Sampler, type SamplingOptions } from "../text-core/sampler.ts";
import { machineInfo, median, writeResults } from "./bench-kit.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "7" },
    picks: { type: "string", default: "40" },
    vocab: { type: "string", default: "65536" },
  },
});
const settings = { runs: Number(values.runs), picks: Number(values.picks), vocab: Number(values.vocab), seenIds: 300, rows: 8 };

const CONFIGS: SamplingOptions[] = [
  { temperature: 0.3, minP: 0.15, repetitionPenalty: 1.05 },
  { temperature: 0.8, topP: 0.9 },
  { temperature: 1, topP: 0.95, minP: 0.05 },
  { temperature: 0.1, topK: 50, topP: 0.1, repetitionPenalty: 1.05 },
];

/** Normally distributed logits (scale 3) from a seeded LCG, the same on every run. */
function randomRow(V: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const row = new Float32Array(V);
  for (let i = 0; i < V; i++) row[i] = 3 * Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  return row;
}

const loadStart = loadavg();
const rows = Array.from({ length: settings.rows }, (_, k) => randomRow(settings.vocab, k + 1));
const seen = Array.from({ length: settings.seenIds }, (_, i) => (i * 131) % settings.vocab);

const results = CONFIGS.map((opts) => {
  const sampler = new Sampler({ ...opts, seed: 1 });
  for (let i = 0; i < settings.picks; i++) sampler.pick(rows[i % rows.length], seen); // warm-up (JIT)
  const msPerToken: number[] = [];
  for (let run = 0; run < settings.runs; run++) {
    const t0 = performance.now();
    for (let i = 0; i < settings.picks; i++) sampler.pick(rows[i % rows.length], seen);
    msPerToken.push((performance.now() - t0) / settings.picks);
  }
  return { options: opts, medianMsPerToken: median(msPerToken), msPerToken };
});

const notes = ["ms per Sampler.pick (one token), pseudo-random logits; median over runs of `picks` picks each, after one warm-up pass"];
const file = writeResults("sampler", { settings, loadStart, notes, results });
console.log(JSON.stringify({ machine: machineInfo(), settings, results: results.map(({ options, medianMsPerToken }) => ({ options, medianMsPerToken })), file }));
