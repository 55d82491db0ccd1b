/**
 * `npm run bench:structured` — what structured output costs and gains, on random-weight
 * checkpoints with the published LFM2 shapes (speed does not depend on the weight values):
 *
 * - greedy decode tok/s without a format and with a JSON schema (one string field longer than the
 *   run, so both go the full length, one forward call per token): the difference is the per-step mask;
 * - jump-forward on an extraction-like schema (an inspection form): wall time per reply with and
 *   without `jumpForward`, forward calls, and the check that both give identical ids;
 * - compile time per schema (the first one with the tokenizer info built).
 *
 * One process per model (graphs built by a process of their own first), a warm-up run, then
 * medians over `--runs` runs. Writes bench/results/<date>-<machine>-structured.json.
 *
 *   npm run bench:structured -- [--models lfm2-350m,lfm2-1.2b] [--precision q4] [--runs 3] [--threads 2] [--decode 128] [--seeds 5]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { buildThenMeasure, formatLoad, lfm2BenchCheckpoint, machineInfo, medians, writeResults } from "./bench-kit.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "lfm2-350m,lfm2-1.2b" },
    precision: { type: "string", default: "q4" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    decode: { type: "string", default: "128" },
    seeds: { type: "string", default: "5" },
  },
});
const settings = { precision: values.precision, threads: Number(values.threads), runs: Number(values.runs), decodeTokens: Number(values.decode), extractionSeeds: Number(values.seeds) };

const loadStart = loadavg();
const rows: Array<Record<string, unknown>> = [];
for (const name of values.models.split(",")) {
  const { dir } = lfm2BenchCheckpoint(name);
  process.stderr.write(`  ${name} ${values.precision}: building, then measuring… `);
  try {
    const args = (runs: string) => [dir, values.precision, values.threads, runs, values.decode, values.seeds];
    const r = buildThenMeasure("structured-worker.ts", args, values.runs);
    const m = medians(r);
    rows.push({ bench: "structured", model: name, ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...r.info, ...m, samples: r.samples });
    process.stderr.write(`${m.decodeTokPerS.toFixed(1)} → ${m.decodeTokPerSSchema.toFixed(1)} tok/s with a schema, jump-forward ×${m.jumpForwardSpeedup.toFixed(2)}\n`);
    if (r.info?.jumpForwardIdentical !== 1) process.stderr.write(`    sampled jump-forward output differs from the step-by-step output from token ${r.info?.jumpForwardFirstDifference} on\n`);
    if (r.info?.jumpForwardIdenticalGreedy !== 1) process.stderr.write("    greedy jump-forward output differs from the step-by-step output\n");
  } catch (e) {
    rows.push({ bench: "structured", model: name, error: (e as Error).message });
    process.stderr.write("failed\n");
  }
}

const file = writeResults("structured", {
  settings,
  loadStart,
  notes: [
    "decodeTokPerS / decodeTokPerSSchema: greedy decoding of decodeTokens tokens after a 64-token prompt, first to last new token; with the schema {notes: string, minLength 4096} (cannot close within the run) and jumpForward false (one forward call per token, as without a schema); schemaSlowdown = 1 - schema / plain. Greedy because on random weights the temperature-1 sampler walks much of the flat 65,536-id distribution without a mask and only the ~1k grammar-usable ids with one; ids rather than streamed text because the filler ids (special added tokens) cost ~30 ms each to stream as text: both made the schema run look faster than the plain one. decodeForwardMsPerToken* / decodeOtherMsPerToken*: each step's forward call and the rest (mask, pick); maskMsPerToken = other(schema) - other(plain); maskSlowdown = maskMsPerToken / a plain step's time; maskMsPerTokenFreeText / maskSlowdownFreeText: the same with the unbounded {notes: string} schema (the common case; it may close early, freeTextDecodeTokens says after how many tokens, but the cost is per step)",
    "extraction: the inspection-form schema (pump_id integer 1-500, pressure_bar number, status enum, inspected_by and notes strings) over extractionSeeds temperature-1 seeds after a 32-token prompt; extractionMs* = wall time per reply, prefill included; jumpForwardSpeedup = stepwise / jump-forward; jumpForwardIdentical = 1 when both gave the same ids for every seed (else jumpForwardFirstDifference: the earliest token index where a reply differs); jumpForwardIdenticalGreedy: the same for one greedy reply each way",
    "compileMs_*: compiling each schema once, uncached; firstCompileWithTokenizerInfoMs also builds xgrammar's tokenizer info (a process's first format)",
    "random weights in the published shapes; the tokenizer is the tiny fixture's padded with special filler tokens to the real vocabulary size (the mask is as wide as the real one, the grammar's usable vocabulary is the tiny one)",
  ],
  results: rows,
});

const f = (v: unknown, d = 1) => (typeof v === "number" ? v.toFixed(d) : "—");
console.log(`\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores, ${settings.threads} threads, ${settings.precision}`);
console.log(`${"model".padEnd(11)} ${"tok/s".padStart(7)} ${"+schema".padStart(8)} ${"slower".padStart(7)} ${"mask ms".padStart(8)} ${"free ms".padStart(8)} ${"JF ×".padStart(6)} ${"same".padStart(5)} ${"greedy".padStart(6)} ${"compile ms (extraction)".padStart(24)}`);
for (const r of rows) {
  if (r.error) console.log(`${String(r.model).padEnd(11)} failed: ${String(r.error).split("\n")[0].slice(0, 70)}`);
  else
    console.log(
      `${String(r.model).padEnd(11)} ${f(r.decodeTokPerS).padStart(7)} ${f(r.decodeTokPerSSchema).padStart(8)} ${`${f((r.schemaSlowdown as number) * 100)}%`.padStart(7)} ${f(r.maskMsPerToken, 2).padStart(8)} ${f(r.maskMsPerTokenFreeText, 2).padStart(8)} ${f(r.jumpForwardSpeedup, 2).padStart(6)} ${(r.jumpForwardIdentical === 1 ? "yes" : "NO").padStart(5)} ${(r.jumpForwardIdenticalGreedy === 1 ? "yes" : "NO").padStart(6)} ${f(r.compileMs_extraction).padStart(24)}`,
    );
}
console.log(`\n${file}`);
