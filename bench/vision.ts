/**
 * `npm run bench:vision` — LFM2-VL speed on random-weight checkpoints with the published shapes
 * (speed does not depend on the weight values; fixtures/real-configs/lfm2-vl-*.json):
 *
 * - tile encoding: ms for one 512×512 tile (32×32 patches) through the SigLIP2 tower and the
 *   projector (`ImageEncoder.encode`), LFM2-VL-450M and LFM2-VL-1.6B, tower at fp32 / q8 / q4, each
 *   in its own process (its peak RSS), then all in one process called in turn (`--paired-rounds`
 *   rounds), which is what compares their speed on a machine whose load drifts;
 * - image to first token, LFM2-VL-450M with `VlModel`'s defaults (language core q4, tower q8): a 1024×768 JPEG → preprocessing
 *   (decode, tiling, resize, patches) → prompt ids → tower → LM prefill → first token, per stage.
 *
 * One process per configuration (graphs built by a process of their own first), a warm-up run,
 * then medians over `--runs` runs. Writes bench/results/<date>-<machine>-vision.json and prints a
 * table with the load average when it ran.
 *
 *   npm run bench:vision -- [--models 450m,1.6b] [--precisions fp32,q8,q4] [--runs 3] [--paired-rounds 5] [--threads 2] [--skip-first-token]
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { type WorkerResult, buildThenMeasure, formatLoad, machineInfo, medians, writeResults } from "./bench-kit.ts";
import { vlCheckpoint } from "./vl-checkpoint.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "450m,1.6b" },
    precisions: { type: "string", default: "fp32,q8,q4" },
    runs: { type: "string", default: "3" },
    "paired-rounds": { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    "skip-first-token": { type: "boolean", default: false },
  },
});
const settings = { threads: Number(values.threads), runs: Number(values.runs), pairedRounds: Number(values["paired-rounds"]) };

const loadStart = loadavg();
const rows: Array<Record<string, unknown>> = [];
const measure = (label: string, row: Record<string, unknown>, args: (runs: string) => string[], report: (m: Record<string, number>) => string, runs = values.runs) => {
  process.stderr.write(`  ${label}: building, then measuring… `);
  try {
    const r: WorkerResult = buildThenMeasure("vision-worker.ts", args, runs);
    const m = medians(r);
    rows.push({ ...row, ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...r.info, ...m, samples: r.samples });
    process.stderr.write(`${report(m)}\n`);
  } catch (e) {
    rows.push({ ...row, error: (e as Error).message });
    process.stderr.write("failed\n");
  }
};

const models = values.models.split(",");
const precisions = values.precisions.split(",");
for (const model of models) {
  // 450M: one full checkpoint serves both benchmarks.
  const { dir } = vlCheckpoint(model, model === "450m" && !values["skip-first-token"]);
  for (const precision of precisions) {
    measure(`tile ${model} ${precision}`, { bench: "tile", model: `lfm2-vl-${model}`, precision }, (runs) => ["tile", dir, precision, values.threads, runs], (m) => `${m.tileMs.toFixed(0)} ms/tile`);
  }
  if (precisions.length > 1) {
    const paired = (m: Record<string, number>) => precisions.map((p) => `${p} ${m[`${p}Ms`].toFixed(0)}`).join(", ") + " ms/tile";
    measure(`tile ${model} ${precisions.join("/")} in turn`, { bench: "tile-paired", model: `lfm2-vl-${model}`, precisions }, (runs) => ["tile-paired", dir, values.precisions, values.threads, runs], paired, values["paired-rounds"]);
  }
}
if (!values["skip-first-token"]) {
  const { dir } = vlCheckpoint("450m", true);
  // VlModel's defaults: the language core at q4, the tower at q8.
  measure("first token 450m q4", { bench: "first-token", model: "lfm2-vl-450m", precision: "q4", towerPrecision: "q8" }, (runs) => ["first-token", dir, "q4", values.threads, runs], (m) => `${m.totalMs.toFixed(0)} ms`);
}

const file = writeResults("vision", {
  settings,
  loadStart,
  notes: [
    "tile: ImageEncoder.encode of one 32×32-patch crop (a 512×512 tile): SigLIP2 tower + pixel unshuffle + projector",
    "tile-paired: the same tile through one encoder per precision in one process, called in turn each round (medians over paired-rounds rounds); compares the precisions' speed under the same load (peak RSS here is all of them together)",
    "first-token (VlModel defaults: language core q4, tower q8): 1024×768 JPEG bytes → VlModel.preprocess → renderChat + encodeVisionText → encodeImages → runtime.forward (prefill with image overrides) → argmax",
    "random weights in the published shapes; the tokenizer is the tiny fixture's (a real 65k BPE vocabulary costs a little more heap)",
  ],
  results: rows,
});

const f = (v: unknown, d = 0) => (typeof v === "number" ? v.toFixed(d) : "—");
console.log(`\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores, ${settings.threads} threads`);
console.log(`${"tile encoding (512×512)".padEnd(24)} ${"prec".padEnd(5)} ${"ms/tile".padStart(8)} ${"peak RSS MB".padStart(12)} ${"ms/tile in turn".padStart(16)}`);
for (const r of rows.filter((r) => r.bench === "tile")) {
  const inTurn = rows.find((p) => p.bench === "tile-paired" && p.model === r.model && !p.error)?.[`${r.precision}Ms`];
  console.log(`${String(r.model).padEnd(24)} ${String(r.precision).padEnd(5)} ${r.error ? `failed: ${String(r.error).split("\n")[0].slice(0, 60)}` : `${f(r.tileMs).padStart(8)} ${f(r.peakRssMb).padStart(12)} ${f(inTurn).padStart(16)}`}`);
}
for (const r of rows.filter((r) => r.bench === "first-token")) {
  if (r.error) {
    console.log(`\nimage → first token: failed: ${String(r.error).split("\n")[0].slice(0, 70)}`);
    continue;
  }
  console.log(`\nimage → first token, ${r.model} ${r.precision} (tower ${r.towerPrecision}): ${r.crops} crops, ${r.imageTokens} image tokens, ${r.promptTokens} prompt tokens, peak RSS ${f(r.peakRssMb)} MB`);
  console.log(`  preprocess ${f(r.preprocessMs)} ms | prompt ids ${f(r.promptMs)} ms | tower ${f(r.towerMs)} ms | prefill ${f(r.prefillMs)} ms | first token ${f(r.firstTokenMs, 1)} ms | total ${f(r.totalMs)} ms`);
}
console.log(`\n${file}`);
