/**
 * Run in a child process (`node [--expose-gc] bin/run-ts.mjs test/helpers/transcript-rss-probe.ts FILE`):
 * `lfm transcribe`'s path without the model — FILE read through `openAudioStream` at 16 kHz, cut
 * into windows and joined as `transcribeStream` does, each window "heard" by a stand-in that gives
 * the text a speaker at 2.5 words per second would (a sentence every 8 words), then the segments,
 * SRT and WebVTT. Prints JSON: windows, segments, text and subtitle sizes, the resident memory
 * before reading (`baseRss`), at its peak (`peakRss`, bytes) and, with --expose-gc, the largest
 * left after collecting garbage at every window and after formatting (`liveRss`).
 */
import { openAudioStream } from "../../audio/audio-stream.ts";
import { transcribeChunkedStream } from "../../audio/chunking.ts";
import type { Transcript } from "../../pipelines/transcribe.ts";
import { toSrt, toVtt, transcriptSegments } from "../../pipelines/transcript-segments.ts";

const RATE = 16000;
const WORD_SECONDS = 0.4;
const [path] = process.argv.slice(2);
const collectGarbage = (globalThis as { gc?: () => void }).gc;
const stream = await openAudioStream(path, { targetRateHz: RATE });
collectGarbage?.();
const baseRss = process.memoryUsage().rss;
let liveRss = baseRss;
const sample = () => {
  if (!collectGarbage) return;
  collectGarbage();
  liveRss = Math.max(liveRss, process.memoryUsage().rss);
};
// Word k is spoken at k × 0.4 s: a window hears the words that start inside it.
const heard = async (_samples: Float32Array, chunk: { start: number; end: number }) => {
  const first = Math.ceil(chunk.start / RATE / WORD_SECONDS);
  const words: string[] = [];
  for (let k = first; k * WORD_SECONDS < chunk.end / RATE; k++) words.push(`word${k}${k % 8 === 7 ? "." : ""}`);
  return { text: words.join(" "), ids: [] as number[] };
};
const joined = await transcribeChunkedStream(stream, RATE, heard, { onChunk: sample });
const transcript: Transcript = {
  text: joined.text,
  durationSeconds: joined.samples / RATE,
  chunks: joined.chunks.map(({ chunk, result, merge, join }) => ({
    startSeconds: chunk.start / RATE,
    endSeconds: chunk.end / RATE,
    ids: result.ids,
    text: result.text,
    ...(merge ? { merge } : {}),
    ...(join ? { join } : {}),
  })),
};
const segments = transcriptSegments(transcript);
const srt = toSrt(segments);
const vtt = toVtt(segments);
sample();
let monotonic = true;
for (let i = 1; i < segments.length; i++) if (segments[i].startSeconds < segments[i - 1].endSeconds) monotonic = false;
const peakRss = process.resourceUsage().maxRSS * 1024;
process.stdout.write(
  `${JSON.stringify({ windows: joined.chunks.length, samples: joined.samples, words: transcript.text.split(" ").length, segments: segments.length, monotonic, lastEnd: segments.at(-1)?.endSeconds, textBytes: transcript.text.length, srtBytes: srt.length, vttBytes: vtt.length, baseRss, peakRss, liveRss })}\n`,
);
