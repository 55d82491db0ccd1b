/**
 * One audio benchmark configuration in its own process (so peak RSS is its own). Prints one JSON
 * line. Usage:
 *   node bin/run-ts.mjs bench/audio-worker.ts transcribe DIR PRECISION THREADS RUNS SECONDS DECODE
 *   node bin/run-ts.mjs bench/audio-worker.ts mimi DIR THREADS RUNS SECONDS
 * RUNS = 0: only build the graphs into the cache and exit (the measured process loads them).
 *
 * transcribe: a SECONDS-long clip (the English fixture recording, repeated) → resample, log-mel,
 * encoder + adapter, the ASR prompt, prefill, DECODE greedy tokens (forced: no stop, so every run
 * does the same work). Real-time factor = that wall time / SECONDS.
 * mimi: SECONDS of random codes decoded whole (chunks of the decoder's default size) and streamed
 * one 80 ms frame at a time.
 */
import { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { MimiDecoder } from "../audio/mimi-decoder.ts";
import { SYSTEM_PROMPTS } from "../audio/prompt.ts";
import { readAudioFile } from "../audio/audio-file.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { argmax, flushWrites, peakRssMb } from "./prompt.ts";
import { join } from "node:path";

const [kind, dir, ...rest] = process.argv.slice(2);
const cacheDir = process.env.LFM_CACHE_DIR;
const ms = (t0: number) => performance.now() - t0;

if (kind === "transcribe") {
  const [precision, threadsArg, runsArg, secondsArg, decodeArg] = rest;
  const [threads, runs, seconds, decode] = [threadsArg, runsArg, secondsArg, decodeArg].map(Number);
  const t0 = performance.now();
  const model = await Lfm2AudioModel.load(dir, { precision: precision as Precision, threads, cacheDir });
  const loadMs = ms(t0);
  if (runs === 0) {
    await model.release();
    process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples: [] })}\n`);
    process.exit(0);
  }
  flushWrites();
  const speech = await readAudioFile(join(import.meta.dirname, "..", "fixtures/audio/clips/speech_en_16k.wav"));
  const wave = new Float32Array(Math.round(seconds * speech.sampleRateHz));
  for (let at = 0; at < wave.length; at += speech.samples.length) wave.set(speech.samples.subarray(0, Math.min(speech.samples.length, wave.length - at)), at);
  const once = async () => {
    const start = performance.now();
    const audio = await model.embedAudio({ samples: wave, sampleRateHz: speech.sampleRateHz });
    const encodeMs = ms(start);
    const prompt = model.newPrompt().newTurn("system").addText(SYSTEM_PROMPTS.asr).endTurn().newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant").build();
    const state = model.lm.newState(1, prompt.ids.length + decode + 1);
    const p0 = performance.now();
    let logits = (await model.lm.forward(state, { ids: [prompt.ids], overrides: prompt.overrides })).output;
    const prefillMs = ms(p0);
    const d0 = performance.now();
    for (let i = 0; i < decode; i++) logits = (await model.lm.forward(state, { ids: [[argmax(logits)]] })).output;
    const decodeMs = ms(d0);
    const totalMs = ms(start);
    return { encodeMs, prefillMs, decodeMs, totalMs, promptPositions: prompt.ids.length, audioRows: audio.count, rtf: totalMs / 1000 / seconds };
  };
  await once(); // warm-up
  const samples = [];
  for (let r = 0; r < runs; r++) samples.push(await once());
  await model.release();
  process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples })}\n`);
} else if (kind === "mimi") {
  const [threadsArg, runsArg, secondsArg] = rest;
  const [threads, runs, seconds] = [threadsArg, runsArg, secondsArg].map(Number);
  const t0 = performance.now();
  const mimi = await MimiDecoder.load(dir, { threads, cacheDir });
  const loadMs = ms(t0);
  if (runs === 0) {
    await mimi.release();
    process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples: [] })}\n`);
    process.exit(0);
  }
  flushWrites();
  let seed = 7;
  const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const frames = Math.round(seconds * 12.5);
  const codes = Array.from({ length: frames }, () => Array.from({ length: mimi.config.numCodebooks }, () => Math.floor(rand() * 2048)));
  await mimi.decode(codes.slice(0, 4)); // warm-up
  const samples = [];
  for (let r = 0; r < runs; r++) {
    const w0 = performance.now();
    await mimi.decode(codes);
    const wholeMs = ms(w0);
    const stream = mimi.stream();
    const s0 = performance.now();
    for (const f of codes) await stream.push([f]);
    const streamMs = ms(s0);
    samples.push({ wholeMs, streamMs, wholeRtf: wholeMs / 1000 / seconds, streamRtf: streamMs / 1000 / seconds, msPerFrameStreamed: streamMs / frames });
  }
  await mimi.release();
  process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples })}\n`);
} else {
  throw new Error(`unknown worker kind "${kind}" (transcribe, mimi)`);
}
