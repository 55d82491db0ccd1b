/**
 * `npm run bench:audio` — LFM2-Audio speed on random-weight checkpoints with the real published
 * shapes (speed does not depend on the weight values):
 *
 * - transcription real-time factor at the LFM2-Audio-1.5B shape (FastConformer 17 × d512 + adapter
 *   + the 1.2B LM; fixtures/real-configs/lfm2-audio-1.5b.config.json): resample, log-mel, encoder,
 *   the ASR prompt, prefill and `--decode` greedy tokens for a `--seconds` clip, per LM precision
 *   (the encoder runs q8 under q4 and q8, as `Lfm2AudioModel` does by default);
 * - Mimi decoding real-time factor at Kyutai's shape (fp32), whole clip and frame by frame.
 *
 * RTF = wall time / audio duration (below 1 = faster than real time). Each configuration runs in
 * its own process (graphs built by a process of their own first), so peak RSS is its own; figures
 * are medians over `--runs` runs after a warm-up. Writes bench/results/<date>-<machine>-audio.json
 * (-2, -3, … for later runs that day) and prints a table, with the load average when it ran.
 *
 *   npm run bench:audio -- [--precisions q4,q8] [--runs 3] [--threads 2] [--seconds 20] [--decode 32] [--skip-mimi]
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseLfm2AudioConfig } from "../audio/audio-config.ts";
import { KYUTAI_MIMI_FILE } from "../audio/mimi-config.ts";
import { defaultCacheDir } from "../text-core/graph-cache.ts";
import { lfm2TensorShapes, writeSyntheticCheckpoint } from "./synthetic-checkpoint.ts";
import { audioTensorShapes, writeMimiCheckpoint } from "./audio-shapes.ts";

const ROOT = join(import.meta.dirname, "..");
const { values } = parseArgs({
  options: {
    precisions: { type: "string", default: "q4,q8" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    seconds: { type: "string", default: "20" },
    decode: { type: "string", default: "32" },
    "skip-mimi": { type: "boolean", default: false },
  },
});
const settings = { threads: Number(values.threads), runs: Number(values.runs), seconds: Number(values.seconds), decodeTokens: Number(values.decode) };
const cacheDir = process.env.LFM_CACHE_DIR ?? defaultCacheDir();

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface WorkerResult {
  loadMs: number;
  peakRssMb: number;
  samples: Array<Record<string, number>>;
}

function runWorker(args: string[]): WorkerResult {
  const out = execFileSync(process.execPath, [join(ROOT, "bin/run-ts.mjs"), join(ROOT, "bench/audio-worker.ts"), ...args], {
    encoding: "utf8",
    env: { ...process.env, LFM_CACHE_DIR: cacheDir },
    maxBuffer: 1 << 24,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(out.trim().split("\n").pop() as string) as WorkerResult;
}

const load = { start: loadavg() };
const rows: Array<Record<string, unknown>> = [];
const medians = (r: WorkerResult) => Object.fromEntries(Object.keys(r.samples[0]).map((k) => [k, median(r.samples.map((s) => s[k]))]));

// LFM2-Audio-1.5B: config + random bf16 weights for the LM, the conformer and the adapter.
const raw = JSON.parse(readFileSync(join(ROOT, "fixtures/real-configs/lfm2-audio-1.5b.config.json"), "utf8"));
const config = parseLfm2AudioConfig(raw, "lfm2-audio-1.5b");
process.stderr.write("lfm2-audio-1.5b: random-weight checkpoint… ");
const audioDir = writeSyntheticCheckpoint(join(cacheDir, "bench-checkpoints", "lfm2-audio-1.5b"), {
  config: raw,
  tensors: [...lfm2TensorShapes(config.lfm, "lfm."), ...audioTensorShapes(config)],
  values: "random",
  tokenizerFrom: join(ROOT, "fixtures/audio/tiny-lfm2-audio"),
});
process.stderr.write("ready\n");
for (const precision of values.precisions.split(",")) {
  process.stderr.write(`  transcribe ${precision}: building… `);
  const args = [audioDir, precision, values.threads];
  try {
    runWorker(["transcribe", ...args, "0", values.seconds, values.decode]);
    process.stderr.write("measuring… ");
    const r = runWorker(["transcribe", ...args, values.runs, values.seconds, values.decode]);
    const m = medians(r);
    rows.push({ bench: "transcribe", model: "lfm2-audio-1.5b", precision, encoderPrecision: precision === "fp32" ? "fp32" : "q8", ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...m, samples: r.samples });
    process.stderr.write(`RTF ${m.rtf.toFixed(3)}\n`);
  } catch (e) {
    rows.push({ bench: "transcribe", model: "lfm2-audio-1.5b", precision, error: (e as Error).message });
    process.stderr.write("failed\n");
  }
}

if (!values["skip-mimi"]) {
  process.stderr.write("mimi (Kyutai shape, random weights): ");
  const file = writeMimiCheckpoint(join(cacheDir, "bench-checkpoints", "mimi"));
  try {
    runWorker(["mimi", file, values.threads, "0", values.seconds]);
    const r = runWorker(["mimi", file, values.threads, values.runs, values.seconds]);
    const m = medians(r);
    rows.push({ bench: "mimi", model: `mimi (${KYUTAI_MIMI_FILE} shape)`, precision: "fp32", ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...m, samples: r.samples });
    process.stderr.write(`RTF whole ${m.wholeRtf.toFixed(3)}, streamed ${m.streamRtf.toFixed(3)}\n`);
  } catch (e) {
    rows.push({ bench: "mimi", precision: "fp32", error: (e as Error).message });
    process.stderr.write("failed\n");
  }
}
const loadEnd = loadavg();

const cpu = cpus()[0]?.model ?? "unknown cpu";
const machine = { cpu, logicalCores: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version };
const date = new Date().toISOString().slice(0, 10);
const slug = `${cpu.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase()}-${machine.logicalCores}c`;
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
let file = join(ROOT, "bench/results", `${date}-${slug}-audio.json`);
for (let n = 2; existsSync(file); n++) file = join(ROOT, "bench/results", `${date}-${slug}-audio-${n}.json`);
writeFileSync(
  file,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine,
      settings,
      loadAverage: { start: load.start, end: loadEnd },
      notes: [
        "rtf = wall time / audio seconds; transcribe: resample + log-mel + encoder/adapter + prompt + prefill + decodeTokens forced greedy tokens",
        "mimi: whole = decode() of the clip (chunks of frames), stream = one 80 ms frame per call",
      ],
      results: rows,
    },
    null,
    1,
  )}\n`,
);

const f = (v: unknown, d = 3) => (typeof v === "number" ? v.toFixed(d) : "—");
console.log(`\nload average ${load.start.map((x) => x.toFixed(2)).join(" ")} → ${loadEnd.map((x) => x.toFixed(2)).join(" ")} on ${machine.logicalCores} cores, ${settings.threads} threads`);
console.log(`${"bench".padEnd(11)} ${"prec".padEnd(5)} ${"RTF".padStart(7)} ${"encode ms".padStart(10)} ${"prefill ms".padStart(10)} ${"decode ms".padStart(10)} ${"peak RSS MB".padStart(11)}`);
for (const r of rows) {
  if (r.error) {
    console.log(`${String(r.bench).padEnd(11)} ${String(r.precision).padEnd(5)} failed: ${String(r.error).split("\n")[0].slice(0, 70)}`);
  } else if (r.bench === "transcribe") {
    console.log(`${"transcribe".padEnd(11)} ${String(r.precision).padEnd(5)} ${f(r.rtf).padStart(7)} ${f(r.encodeMs, 0).padStart(10)} ${f(r.prefillMs, 0).padStart(10)} ${f(r.decodeMs, 0).padStart(10)} ${f(r.peakRssMb, 0).padStart(11)}`);
  } else {
    console.log(`${"mimi whole".padEnd(11)} ${"fp32".padEnd(5)} ${f(r.wholeRtf).padStart(7)} ${"".padStart(32)} ${f(r.peakRssMb, 0).padStart(11)}`);
    console.log(`${"mimi stream".padEnd(11)} ${"fp32".padEnd(5)} ${f(r.streamRtf).padStart(7)} ${`(${f(r.msPerFrameStreamed, 1)} ms per 80 ms frame)`.padStart(32)}`);
  }
}
console.log(`\n${file}`);
