/**
 * `lfm transcribe`: a WAV recording → text through an LFM2-Audio checkpoint (liquid-audio folder).
 * With --json it prints `{"text", "duration", "chunks": [{"start", "end", "text", "ids"}]}` — a
 * scriptable contract kept stable.
 */
import { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { openAudioStream } from "../audio/audio-stream.ts";
import { LfmError } from "../text-core/errors.ts";
import { textForStream } from "./terminal-text.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, RANGES, loadFlags, num, parse } from "./cli-kit.ts";
import { floatRange } from "./flags.ts";
import { transcribeStream } from "../pipelines/transcribe.ts";


/** A window is one encoder pass: the encoder's positions bound it far below 10 minutes anyway. */
const CHUNK_SECONDS = floatRange(0, 600, true);
const OVERLAP_SECONDS = floatRange(0, 300);

const HELP = `lfm transcribe --model DIR FILE.wav [--json] [--max-tokens N] [options]
  Transcribes a recording — WAV (PCM 8/16/24/32-bit, float 32/64, A-law, µ-law, IMA ADPCM), FLAC,
  MP3 or Ogg Opus/Vorbis; any channel count and sample rate — with an LFM2-Audio checkpoint (liquid-audio folder, e.g.
  LiquidAI/LFM2-Audio-1.5B), as liquid-audio's ASR recipe: system prompt "Perform ASR.", greedy.
  Recordings longer than one window are split at pauses into overlapping chunks whose
  transcripts are joined on the words both heard (progress on stderr). The file is read from
  disk in pieces as the chunks are transcribed: memory does not grow with its length (WAV files
  past 4 GiB as RF64, or with the data size left at 0xFFFFFFFF by a recorder, are read too).
  --json              Print {"text", "duration", "chunks": [{"start", "end", "text", "ids"}]}.
  --max-tokens N      New tokens at most per chunk (default 512; 1 to ${RANGES.audioSteps.max}).
  --chunk-seconds S   Longest chunk (default 30; above 0, at most ${CHUNK_SECONDS.max}).
  --overlap-seconds S Seconds consecutive chunks share (default 4; 0 to ${OVERLAP_SECONDS.max}); with the cut
                      search (≤ 5 s) under half the chunk.
  --system TEXT       Another system prompt (default "Perform ASR.").
  --max-minutes M     Refuse recordings longer than this (default 180; above 0, at most ${RANGES.maxMinutes.max}).
  --precision P       LM weights: q4 (default) | q8 | fp32 (reference parity); the audio encoder
                      runs in q8 unless fp32 is asked for.   Also: --threads N, --cache-dir DIR, --no-cache.
  On a terminal, control characters in the text show as escapes (\\x1b); piped output keeps them.`;

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
} as const;

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
    const load = loadFlags(v);
    // Open the audio first: a bad header fails fast, before any model is built.
    const audio = await openAudioStream(positionals[0], { maxSeconds: maxMinutes === undefined ? undefined : maxMinutes * 60 });
    let model: Lfm2AudioModel;
    try {
      model = await Lfm2AudioModel.load(modelOrBundled(v, "audio"), load);
    } catch (e) {
      await audio.close();
      throw e;
    }
    const tty = process.stderr.isTTY && !v.json;
    try {
      const transcript = await transcribeStream(model, audio, {
        maxTokens,
        chunkSeconds,
        overlapSeconds,
        systemPrompt: v.system as string | undefined,
        signal,
        onProgress: (p) => {
          // Not for a recording that is one chunk. The count is known only at the end (the file is
          // read as it goes), so the position is given against the declared length.
          if (v.json || (p.chunk === 1 && p.last)) return;
          const of = p.declaredSeconds === null ? "" : ` of ${clock(p.declaredSeconds)}`;
          process.stderr.write(`${tty ? "\x1b[2m" : ""}chunk ${p.chunk}${p.last ? " (last)" : ""} (${clock(p.startSeconds)}–${clock(p.endSeconds)}${of})${tty ? "\x1b[0m" : ""}\n`);
        },
      });
      if (v.json) {
        const chunks = transcript.chunks.map((c) => ({ start: c.startSeconds, end: c.endSeconds, text: c.text, ids: c.ids }));
        process.stdout.write(`${JSON.stringify({ text: transcript.text, duration: transcript.durationSeconds, chunks })}\n`);
      } else {
        process.stdout.write(`${textForStream(transcript.text, process.stdout.isTTY)}\n`);
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};
