/**
 * `lfm transcribe`: a recording → text through an LFM2-Audio checkpoint (liquid-audio folder), as
 * plain text, JSON, SRT or WebVTT (pipelines/transcript-segments.ts), to stdout or --out FILE.
 * `--format json` (or --json) prints `{"text", "duration", "chunks": [{"start", "end", "text", "ids"}],
 * "segments": [{"start", "end", "text"}]}` — a scriptable contract kept stable.
 */
import { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { openAudioStream } from "../audio/audio-stream.ts";
import { LfmError } from "../text-core/errors.ts";
import { textForStream } from "./terminal-text.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, RANGES, loadFlags, num, parse } from "./cli-kit.ts";
import { floatRange } from "./flags.ts";
import { type Transcript, transcribeStream } from "../pipelines/transcribe.ts";
import { toSrt, toText, toVtt, transcriptSegments } from "../pipelines/transcript-segments.ts";
import { OutputFile } from "./output-file.ts";

const FORMATS = ["txt", "json", "srt", "vtt"] as const;
type Format = (typeof FORMATS)[number];


/** A window is one encoder pass: the encoder's positions bound it far below 10 minutes anyway. */
const CHUNK_SECONDS = floatRange(0, 600, true);
const OVERLAP_SECONDS = floatRange(0, 300);

const HELP = `lfm transcribe --model DIR FILE.wav [--format txt|json|srt|vtt] [--out FILE] [--max-tokens N] [options]
  Transcribes a recording — WAV (PCM 8/16/24/32-bit, float 32/64, A-law, µ-law, IMA ADPCM), FLAC,
  MP3 or Ogg Opus/Vorbis; any channel count and sample rate — with an LFM2-Audio checkpoint (liquid-audio folder, e.g.
  LiquidAI/LFM2-Audio-1.5B), as liquid-audio's ASR recipe: system prompt "Perform ASR.", greedy.
  Recordings longer than one window are split at pauses into overlapping chunks whose
  transcripts are joined on the words both heard (progress on stderr). The file is read from
  disk in pieces as the chunks are transcribed: memory does not grow with its length (WAV files
  past 4 GiB as RF64, or with the data size left at 0xFFFFFFFF by a recorder, are read too).
  --format F          txt (default): the text. srt | vtt: subtitles, a cue per sentence (at least
                      one per chunk) with estimated times: the model gives no timestamps, so a
                      chunk's text is spread over its time, and borders go where overlapping chunks
                      were joined. json: {"text", "duration", "chunks": [{"start", "end", "text", "ids"}],
                      "segments": [{"start", "end", "text"}]} (seconds).
  --json              Same as --format json.
  --out FILE          Write there instead of stdout, all at once when the transcript is complete (a
                      temporary file renamed over FILE: an interrupted run leaves FILE as it was).
  --max-tokens N      New tokens at most per chunk (default 512; 1 to ${RANGES.audioSteps.max}).
  --chunk-seconds S   Longest chunk (default 30; above 0, at most ${CHUNK_SECONDS.max}).
  --overlap-seconds S Seconds consecutive chunks share (default 4; 0 to ${OVERLAP_SECONDS.max}); with the cut
                      search (≤ 5 s) under half the chunk.
  --system TEXT       Another system prompt (default "Perform ASR.").
  --max-minutes M     Refuse recordings longer than this (default 180; above 0, at most ${RANGES.maxMinutes.max}).
  --precision P       LM weights: q4 (default) | q8 | fp32 (reference parity); the audio encoder
                      runs in q8 unless fp32 is asked for.   Also: --threads N, --cache-dir DIR, --no-cache.
  On a terminal, control characters in the text show as escapes (\\x1b); piped output keeps them.
  On a terminal, progress shows the share of the recording done and the time left (ETA).`;

function clock(seconds: number): string {
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds - 60 * m).toFixed(1).padStart(4, "0")}`;
}

const TRANSCRIBE_OPTIONS = {
  ...COMMON,
  "max-tokens": { type: "string" },
  "chunk-seconds": { type: "string" },
  "overlap-seconds": { type: "string" },
  "max-minutes": { type: "string" },
  system: { type: "string" },
  format: { type: "string" },
  out: { type: "string" },
} as const;

/** --format (and --json, its alias for json). */
function formatOf(v: { format?: unknown; json?: unknown }): Format {
  const f = v.format as string | undefined;
  if (f === undefined) return v.json ? "json" : "txt";
  if (!(FORMATS as readonly string[]).includes(f)) throw new LfmError("INVALID_ARGUMENT", `--format must be one of ${FORMATS.join(", ")} (got "${f}").`);
  if (v.json && f !== "json") throw new LfmError("INVALID_ARGUMENT", `--json asks for JSON but --format says ${f}; pass one of them.`);
  return f as Format;
}

/** The transcript in `format`, ending with a newline. */
function render(transcript: Transcript, format: Format): string {
  if (format === "txt") return toText(transcript);
  const segments = transcriptSegments(transcript);
  if (format === "srt") return toSrt(segments);
  if (format === "vtt") return toVtt(segments);
  const chunks = transcript.chunks.map((c) => ({ start: c.startSeconds, end: c.endSeconds, text: c.text, ids: c.ids }));
  const timed = segments.map((g) => ({ start: g.startSeconds, end: g.endSeconds, text: g.text }));
  return `${JSON.stringify({ text: transcript.text, duration: transcript.durationSeconds, chunks, segments: timed })}\n`;
}

/** Time left, from the pace so far: "" until a chunk is done or when the length is unknown. */
function eta(elapsedSeconds: number, doneSeconds: number, totalSeconds: number | null): string {
  if (totalSeconds === null || !(doneSeconds > 0) || totalSeconds <= 0) return "";
  const share = Math.min(1, doneSeconds / totalSeconds);
  const left = Math.max(0, (elapsedSeconds / doneSeconds) * (totalSeconds - doneSeconds));
  const whole = Math.round(left);
  const h = Math.floor(whole / 3600);
  const mm = String(Math.floor(whole / 60) % 60);
  const ss = String(whole % 60).padStart(2, "0");
  return `, ${Math.floor(100 * share)}%, ETA ${h > 0 ? `${h}:${mm.padStart(2, "0")}` : mm}:${ss}`;
}

export const transcribeCommand: CliCommand = {
  name: "transcribe",
  summary: "Speech to text from a WAV, FLAC, MP3 or Ogg file (LFM2-Audio).",
  help: HELP,
  options: TRANSCRIBE_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, TRANSCRIBE_OPTIONS);
    if (positionals.length !== 1) throw new LfmError("INVALID_ARGUMENT", "transcribe takes exactly one audio FILE (lfm transcribe --model DIR FILE.wav).");
    const maxTokens = num(v, "max-tokens", RANGES.audioSteps);
    const maxMinutes = num(v, "max-minutes", RANGES.maxMinutes);
    const chunkSeconds = num(v, "chunk-seconds", CHUNK_SECONDS);
    const overlapSeconds = num(v, "overlap-seconds", OVERLAP_SECONDS);
    const format = formatOf(v);
    const json = format === "json";
    const load = loadFlags({ ...v, json });
    // The destination and the audio first: a bad one fails fast, before any model is built.
    const out = v.out === undefined ? null : OutputFile.create(v.out as string);
    try {
      const audio = await openAudioStream(positionals[0], { maxSeconds: maxMinutes === undefined ? undefined : maxMinutes * 60 });
      let model: Lfm2AudioModel;
      try {
        model = await Lfm2AudioModel.load(modelOrBundled(v, "audio"), load);
      } catch (e) {
        await audio.close();
        throw e;
      }
      try {
        const started = performance.now();
        const tty = process.stderr.isTTY && !json;
        const transcript = await transcribeStream(model, audio, {
          maxTokens,
          chunkSeconds,
          overlapSeconds,
          systemPrompt: v.system as string | undefined,
          signal,
          onProgress: (p) => {
            // Not for a recording that is one chunk. The count is known only at the end (the file is
            // read as it goes), so the position is given against the declared length.
            if (json || (p.chunk === 1 && p.last)) return;
            const of = p.declaredSeconds === null ? "" : ` of ${clock(p.declaredSeconds)}`;
            const left = tty && !p.last ? eta((performance.now() - started) / 1000, p.endSeconds, p.declaredSeconds) : "";
            process.stderr.write(`${tty ? "\x1b[2m" : ""}chunk ${p.chunk}${p.last ? " (last)" : ""} (${clock(p.startSeconds)}–${clock(p.endSeconds)}${of}${left})${tty ? "\x1b[0m" : ""}\n`);
          },
        });
        const text = render(transcript, format);
        if (out) out.commit(text);
        // JSON escapes control characters itself; the other formats carry the model's text as is.
        else process.stdout.write(json ? text : textForStream(text, process.stdout.isTTY));
        return 0;
      } finally {
        await model.release();
      }
    } catch (e) {
      out?.discard();
      throw e;
    }
  },
};
