/**
 * Run in a child process (`node [--expose-gc] bin/run-ts.mjs test/helpers/stream-rss-probe.ts FILE
 * RATE`): reads FILE through `openAudioStream` at RATE Hz and cuts it into transcription windows
 * as `transcribeStream` does, then prints JSON: the windows, the samples, the resident memory
 * before reading (`baseRss`) and at its peak (`peakRss`, bytes). With --expose-gc it also collects
 * garbage after every window and reports the largest resident memory left then (`liveRss`): what
 * the reading holds on to, as opposed to garbage not yet collected.
 */
import { openAudioStream } from "../../audio/audio-stream.ts";
import { streamWindows } from "../../audio/chunking.ts";

const [path, rateArg] = process.argv.slice(2);
const rate = Number(rateArg);
const collectGarbage = (globalThis as { gc?: () => void }).gc;
// Everything the reading needs is loaded before the baseline is taken.
const stream = await openAudioStream(path, { targetRateHz: rate });
collectGarbage?.();
const baseRss = process.memoryUsage().rss;
let liveRss = baseRss;
let windows = 0;
let samples = 0;
let energy = 0;
for await (const w of streamWindows(stream, rate)) {
  windows++;
  samples = w.chunk.end;
  for (let i = 0; i < w.samples.length; i += 97) energy += w.samples[i] * w.samples[i];
  if (collectGarbage) {
    collectGarbage();
    liveRss = Math.max(liveRss, process.memoryUsage().rss);
  }
}
const peakRss = process.resourceUsage().maxRSS * 1024;
process.stdout.write(`${JSON.stringify({ windows, samples, energy, baseRss, peakRss, liveRss })}\n`);
