/**
 * Speech to text with LFM2-Audio, as liquid-audio's ASR recipe: system prompt "Perform ASR.", the
 * recording as the user turn, greedy text decoding (sequential mode, text only) until `<|im_end|>`.
 *
 *   wav → mono → 16 kHz → chunks ≤ 30 s (cut in pauses, 4 s overlap) → per chunk: mel → encoder →
 *   prompt → LM → text → transcripts joined on their overlap (audio/chunking.ts)
 *
 * A recording that fits one window is one chunk, i.e. exactly liquid-audio's single call.
 *
 * `transcribeStream` does the same for a recording read from disk in blocks (`openAudioStream`):
 * resampled block by block and cut into the same windows as they arrive, so memory stays flat
 * however long the recording is, and the transcript equals `transcribe` of the whole clip.
 */
import type { AudioStream } from "../audio/audio-stream.ts";
import { type ChunkPlanOptions, type ChunkedTranscript, DEFAULT_CHUNK_SECONDS, type ChunkJoin, type MergeResult, transcribeChunked, transcribeChunkedStream } from "../audio/chunking.ts";
import { AUDIO_TOKENS } from "../audio/audio-config.ts";
import type { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { SYSTEM_PROMPTS } from "../audio/prompt.ts";
import { resample, resampleBlocks } from "../audio/resample.ts";
import type { AudioClip } from "../audio/wav.ts";
import { LfmError } from "../text-core/errors.ts";
import { generate } from "../text-core/generate.ts";

export interface TranscribeOptions extends ChunkPlanOptions {
  /** New tokens at most per chunk (default 512). */
  maxTokens?: number;
  /** System prompt (default liquid-audio's "Perform ASR."). */
  systemPrompt?: string;
  signal?: AbortSignal;
  /** Called after each chunk. */
  onProgress?: (progress: TranscribeProgress) => void;
}

export interface TranscribeProgress {
  /** 1-based index of the chunk just transcribed. */
  chunk: number;
  chunks: number;
  startSeconds: number;
  endSeconds: number;
  /** That chunk's text. */
  text: string;
}

export interface TranscriptChunk {
  startSeconds: number;
  endSeconds: number;
  /** Token ids the model generated for this chunk (no stop token). */
  ids: number[];
  text: string;
  /** How it was joined to the text before it (absent for the first chunk). */
  merge?: MergeResult["method"];
  /** Where it was joined, in non-whitespace characters (absent for the first chunk); times segments. */
  join?: ChunkJoin;
}

export interface Transcript {
  text: string;
  durationSeconds: number;
  chunks: TranscriptChunk[];
}

/** Transcribes one clip that fits the model's window: the ids the model generates. */
export async function transcribeWindow(
  model: Lfm2AudioModel,
  wave: Float32Array,
  sampleRateHz: number,
  opts: Pick<TranscribeOptions, "maxTokens" | "systemPrompt" | "signal"> = {},
): Promise<number[]> {
  const audio = await model.embedAudio({ samples: wave, sampleRateHz });
  const prompt = model
    .newPrompt()
    .newTurn("system")
    .addText(opts.systemPrompt ?? SYSTEM_PROMPTS.asr)
    .endTurn()
    .newTurn("user")
    .addAudio(audio.rows, audio.count)
    .endTurn()
    .newTurn("assistant")
    .build();
  // Text only: `<|im_end|>` (and the config's EOS) ends the answer; `<|audio_start|>` would switch
  // to speech, which a transcript does not contain, so it ends it too.
  const stops = new Set([...model.config.lfm.eosTokenIds, AUDIO_TOKENS.imEnd, AUDIO_TOKENS.audioStart]);
  const ids: number[] = [];
  for await (const t of generate(model.lm, prompt.ids, {
    promptOverrides: prompt.overrides,
    maxTokens: opts.maxTokens ?? 512,
    stopTokenIds: [...stops],
    temperature: 0,
    signal: opts.signal,
  })) {
    ids.push(t.id);
  }
  return ids;
}

/** Transcribes a clip of any length (see the file comment). */
export async function transcribe(model: Lfm2AudioModel, clip: Pick<AudioClip, "samples" | "sampleRateHz">, opts: TranscribeOptions = {}): Promise<Transcript> {
  const rate = model.config.preprocessor.sampleRateHz;
  const wave = resample(clip.samples, clip.sampleRateHz, rate);
  const chunkSeconds = opts.chunkSeconds ?? DEFAULT_CHUNK_SECONDS;
  checkWindowFits(model, chunkSeconds, opts.maxTokens ?? 512);
  const joined = await transcribeChunked(wave, rate, windowTranscriber(model, rate, opts), {
    ...opts,
    chunkSeconds,
    onChunk: (chunk, chunks, piece, text) => opts.onProgress?.({ chunk, chunks, startSeconds: piece.start / rate, endSeconds: piece.end / rate, text }),
  });
  return toTranscript(joined, wave.length, rate);
}

/** One window's ids and trimmed text: what the chunk planners join. */
function windowTranscriber(model: Lfm2AudioModel, rate: number, opts: Pick<TranscribeOptions, "maxTokens" | "systemPrompt" | "signal">): (samples: Float32Array) => Promise<{ ids: number[]; text: string }> {
  return async (samples) => {
    const ids = await transcribeWindow(model, samples, rate, opts);
    return { ids, text: model.tokenizer.decode(ids, { skipSpecialTokens: true }).trim() };
  };
}

/** The joined windows as a `Transcript` (times in seconds). */
function toTranscript(joined: ChunkedTranscript<{ ids: number[]; text: string }>, samples: number, rate: number): Transcript {
  return {
    text: joined.text,
    durationSeconds: samples / rate,
    chunks: joined.chunks.map(({ chunk, result, merge, join }) => ({
      startSeconds: chunk.start / rate,
      endSeconds: chunk.end / rate,
      ids: result.ids,
      text: result.text,
      ...(merge ? { merge } : {}),
      ...(join ? { join } : {}),
    })),
  };
}

export interface TranscribeStreamProgress {
  /** 1-based index of the chunk just transcribed. */
  chunk: number;
  /** Whether it was the last (the count is known only then). */
  last: boolean;
  startSeconds: number;
  endSeconds: number;
  /** The recording's length as its header declares it (null when it does not say). */
  declaredSeconds: number | null;
  /** That chunk's text. */
  text: string;
}

export interface TranscribeStreamOptions extends Omit<TranscribeOptions, "onProgress"> {
  /** Called after each chunk. */
  onProgress?: (progress: TranscribeStreamProgress) => void;
}

/**
 * Transcribes a recording read in blocks (see the file comment); the stream is consumed and closed.
 * Damage found partway through the file (a bad Ogg page, a NaN sample) fails the call with its
 * typed error after the chunks before it were transcribed.
 */
export async function transcribeStream(model: Lfm2AudioModel, stream: AudioStream, opts: TranscribeStreamOptions = {}): Promise<Transcript> {
  const rate = model.config.preprocessor.sampleRateHz;
  const chunkSeconds = opts.chunkSeconds ?? DEFAULT_CHUNK_SECONDS;
  try {
    checkWindowFits(model, chunkSeconds, opts.maxTokens ?? 512);
    const blocks = stream.sampleRateHz === rate ? stream : resampleBlocks(stream, stream.sampleRateHz, rate);
    const joined = await transcribeChunkedStream(
      blocks,
      rate,
      windowTranscriber(model, rate, opts),
      {
        ...opts,
        chunkSeconds,
        onChunk: (chunk, piece, text, last) =>
          opts.onProgress?.({ chunk, last, startSeconds: piece.start / rate, endSeconds: piece.end / rate, declaredSeconds: stream.declaredSeconds, text }),
      },
    );
    return toTranscript(joined, joined.samples, rate);
  } finally {
    await stream.close();
  }
}

/** A window must fit the encoder's positions and, with its prompt and answer, the LM's context. */
function checkWindowFits(model: Lfm2AudioModel, chunkSeconds: number, maxTokens: number): void {
  const { preprocessor, encoder, lfm } = model.config;
  const frames = Math.ceil((chunkSeconds * preprocessor.sampleRateHz) / preprocessor.hopSamples);
  const positions = Math.ceil(frames / encoder.subsamplingFactor);
  const promptOverhead = 64;
  if (positions > encoder.posEmbMaxLen || positions + promptOverhead + maxTokens > lfm.maxPositionEmbeddings) {
    throw new LfmError(
      "INVALID_ARGUMENT",
      `a ${chunkSeconds} s chunk is ${positions} audio positions, which with the prompt and ${maxTokens} new tokens exceeds the model's context ` +
        `(${lfm.maxPositionEmbeddings} positions, encoder ${encoder.posEmbMaxLen}); use a shorter chunk length or fewer max tokens.`,
    );
  }
}
