/**
 * `npm run bench:agent` — one spoken agent turn, end to end, on random-weight checkpoints with the
 * real published shapes (speed does not depend on the weight values): LFM2-Audio-1.5B
 * (fixtures/real-configs/lfm2-audio-1.5b.config.json: encoder, LM, depthformer, audio embeddings)
 * hears and speaks, LFM2-1.2B (lfm2-1.2b.config.json) decides, Kyutai's Mimi (24 kHz shape) decodes.
 *
 * Per turn, from the end of the user's speech: the transcript, the first reply token, the whole
 * reply text, the first audio sample, the end; the speaking real-time factor (speaking wall time /
 * seconds of speech made); peak RSS (VmHWM). Measured at turn `--turn` (3) of a scripted
 * conversation, with the text model's decode state carried over turns (the agent's default) and
 * without (every prompt prefilled in full). Random weights never stop on their own: transcripts,
 * replies and speech run to their caps (`--transcript-tokens`, `--reply-tokens`, `--frames`).
 *
 * Every measured run is a process of its own (bench/agent-worker.ts), the two settings alternating
 * run by run; graphs are built by a process of their own first. Medians over `--runs`. Prints a
 * table and one JSON line, and writes bench/results/<date>-<machine>-agent.json.
 *
 *   npm run bench:agent -- [--runs 3] [--threads 2] [--precision q4] [--turn 3] [--reply-tokens 32]
 *                          [--frames 25] [--transcript-tokens 32] [--tiny]
 *
 * `--tiny` runs the bundled tiny random models instead (seconds, not minutes): to check the bench
 * itself, not to measure anything (no results file is written).
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseLfm2AudioConfig } from "../audio/audio-config.ts";
import { isPrecision } from "../text-core/graph/precision.ts";
import type { AgentWorkerSettings } from "./agent-worker.ts";
import { audioHeadTensorShapes, audioTensorShapes, writeMimiCheckpoint } from "./audio-shapes.ts";
import { ROOT, type WorkerResult, benchCacheDir, formatLoad, lfm2BenchCheckpoint, machineInfo, median, runWorker, writeResults } from "./bench-kit.ts";
import { lfm2TensorShapes, plainWordsTokenizerJson, writeSyntheticCheckpoint } from "./synthetic-checkpoint.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    precision: { type: "string", default: "q4" },
    turn: { type: "string", default: "3" },
    "reply-tokens": { type: "string", default: "32" },
    frames: { type: "string", default: "25" },
    "transcript-tokens": { type: "string", default: "32" },
    tiny: { type: "boolean", default: false },
  },
});
const int = (name: string, min: number): number => {
  const v = Number(values[name as keyof typeof values]);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer ≥ ${min} (got ${values[name as keyof typeof values]})`);
  return v;
};
const precision = values.precision;
if (!isPrecision(precision)) throw new Error(`--precision: unknown precision ${precision} (q4, q8, fp32)`);
const settings = {
  runs: int("runs", 1),
  threads: int("threads", 1),
  precision,
  turn: int("turn", 1),
  replyTokens: int("reply-tokens", 1),
  frames: int("frames", 1),
  transcriptTokens: int("transcript-tokens", 1),
  models: values.tiny ? "tiny fixtures (tiny-lfm2-audio, tiny-lfm2, tiny-mimi)" : "lfm2-audio-1.5b + lfm2-1.2b + mimi (real shapes, random weights)",
};

/**
 * LFM2-Audio-1.5B with random weights: the LM, the encoder and adapter, the audio head and the
 * audio-out embeddings. Its tokenizer is the tiny fixture's padded to the real vocabulary with
 * plain (non-special) words, so random reply ids decode to text that is spoken.
 */
function audioCheckpoint(): string {
  const raw = JSON.parse(readFileSync(join(ROOT, "fixtures/real-configs/lfm2-audio-1.5b.config.json"), "utf8"));
  const config = parseLfm2AudioConfig(raw, "lfm2-audio-1.5b");
  const tokenizerDir = join(ROOT, "fixtures/audio/tiny-lfm2-audio");
  process.stderr.write("lfm2-audio-1.5b (with the audio head): random-weight checkpoint… ");
  const dir = writeSyntheticCheckpoint(join(benchCacheDir, "bench-checkpoints", "lfm2-audio-1.5b-speech"), {
    config: raw,
    tensors: [...lfm2TensorShapes(config.lfm, "lfm."), ...audioTensorShapes(config), ...audioHeadTensorShapes(config)],
    values: "random",
    tokenizerFrom: tokenizerDir,
    tokenizerJson: plainWordsTokenizerJson(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8"), config.lfm.vocabSize),
  });
  process.stderr.write("ready\n");
  return dir;
}

function models(): { audioDir: string; textDir: string; mimi: string } {
  if (values.tiny) {
    const f = join(ROOT, "fixtures");
    return { audioDir: join(f, "audio/tiny-lfm2-audio"), textDir: join(f, "text/tiny-lfm2"), mimi: join(f, "audio/tiny-mimi") };
  }
  const audioDir = audioCheckpoint();
  const textDir = lfm2BenchCheckpoint("lfm2-1.2b", "words").dir;
  process.stderr.write("mimi (Kyutai shape, random weights)… ");
  const mimi = writeMimiCheckpoint(join(benchCacheDir, "bench-checkpoints", "mimi"));
  process.stderr.write("ready\n");
  return { audioDir, textDir, mimi };
}

const loadStart = loadavg();
const dirs = models();
const worker = (reuse: boolean, build = false): WorkerResult => {
  const s: AgentWorkerSettings = { ...dirs, precision, threads: settings.threads, turn: settings.turn, reuse, replyTokens: settings.replyTokens, frames: settings.frames, transcriptTokens: settings.transcriptTokens, build };
  return runWorker("agent-worker.ts", [JSON.stringify(s)]);
};

process.stderr.write("building the graphs… ");
worker(true, true);
process.stderr.write("done\n");
const runs: Record<"reuse" | "full", WorkerResult[]> = { reuse: [], full: [] };
for (let r = 0; r < settings.runs; r++) {
  // Alternating, so a shared machine's changing load falls on both.
  for (const reuse of r % 2 === 0 ? [true, false] : [false, true]) {
    process.stderr.write(`  run ${r + 1}/${settings.runs}, ${reuse ? "state reuse" : "full prefill"}: `);
    const res = worker(reuse);
    if (res.samples.length !== 1) throw new Error("the agent worker measured no turn");
    runs[reuse ? "reuse" : "full"].push(res);
    const s = res.samples[0];
    process.stderr.write(`first audio at ${Math.round(s.firstAudioMs)} ms\n`);
  }
}

/** Medians of each measured field, the latency split, and peak RSS (median and largest). */
function summary(results: WorkerResult[]) {
  const samples = results.map((r) => r.samples[0]);
  const m = (k: string) => median(samples.map((s) => s[k]));
  const med = (f: (s: Record<string, number>) => number) => median(samples.map(f));
  return {
    transcriptMs: m("transcribeMs"),
    firstReplyTokenMs: m("firstReplyTokenMs"),
    replyDoneMs: m("replyDoneMs"),
    firstAudioMs: m("firstAudioMs"),
    totalMs: m("totalMs"),
    // The split: each stage from the end of the one before.
    transcriptToFirstTokenMs: med((s) => s.firstReplyTokenMs - s.transcribeMs),
    firstTokenToFirstAudioMs: med((s) => s.firstAudioMs - s.firstReplyTokenMs),
    speakMs: m("speakMs"),
    audioSeconds: m("audioSeconds"),
    speakRtf: m("speakRtf"),
    promptTokens: m("promptTokens"),
    reusedTokens: m("reusedTokens"),
    loadMs: median(results.map((r) => r.loadMs)),
    peakRssMb: median(results.map((r) => r.peakRssMb)),
    peakRssMbMax: Math.max(...results.map((r) => r.peakRssMb)),
  };
}

const rows = (["reuse", "full"] as const).map((k) => ({ stateReuse: k === "reuse", ...summary(runs[k]), runs: runs[k].map((r) => ({ ...r.samples[0], loadMs: r.loadMs, peakRssMb: r.peakRssMb })) }));
const notes = [
  `turn ${settings.turn} of a scripted conversation, each turn the 4.5 s English fixture recording handed over whole (the turn starts at the end of speech); times are from then`,
  "random weights never stop: the transcript runs to --transcript-tokens, the reply to --reply-tokens (greedy), the speech to --frames Mimi frames (80 ms each) unless codebook 0 samples end-of-audio",
  "one text round per turn (maxToolRounds 0): the two tools are in the prompt, no call is run",
  "stateReuse true: the text model continues its kept decode state (only the new turn's tokens run); false: every prompt prefilled in full",
  "speakRtf = speaking wall time (whole reply text → last sample: TTS prompt, frames, Mimi) / seconds of speech made",
  "the checkpoints carry the tiny fixture tokenizers padded to 65536 entries with plain words ' wN' (so random reply ids decode to text that is spoken; ~100 MB of JS heap a real vocabulary does not cost)",
];
// Tiny figures check the bench, they measure nothing: no results file for them.
const file = values.tiny ? undefined : writeResults("agent", { settings, loadStart, notes, results: rows });

const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : "—");
console.log(`\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores, ${settings.threads} threads, ${settings.models}`);
console.log(`turn ${settings.turn}, medians of ${settings.runs}; ms from the end of speech`);
console.log(`${"state".padEnd(8)} ${"transcript".padStart(10)} ${"1st token".padStart(10)} ${"reply done".padStart(10)} ${"1st audio".padStart(10)} ${"total".padStart(8)} ${"speak RTF".padStart(9)} ${"prompt/reused".padStart(14)} ${"peak RSS MB".padStart(11)}`);
for (const r of rows) {
  console.log(
    `${(r.stateReuse ? "reuse" : "full").padEnd(8)} ${f(r.transcriptMs).padStart(10)} ${f(r.firstReplyTokenMs).padStart(10)} ${f(r.replyDoneMs).padStart(10)} ${f(r.firstAudioMs).padStart(10)} ${f(r.totalMs).padStart(8)} ${f(r.speakRtf, 3).padStart(9)} ${`${f(r.promptTokens)}/${f(r.reusedTokens)}`.padStart(14)} ${f(r.peakRssMb).padStart(11)}`,
  );
}
const roundTo3 = (r: Record<string, number | boolean>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "number" ? Math.round(v * 1000) / 1000 : v]));
const line = { bench: "agent", file: file ? file.slice(ROOT.length + 1) : null, ...settings, results: rows.map(({ runs: _, ...r }) => roundTo3(r)) };
console.log(JSON.stringify(line));
console.log(file ? `\n${file}` : "\n(--tiny: no results file written)");
