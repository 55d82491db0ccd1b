/**
 * Text-and-audio generation for LFM2-Audio (liquid-audio `generate_sequential` /
 * `generate_interleaved`): each step the LM's last hidden state becomes either a text token (tied
 * head) or a Mimi frame (the audio head), and the result is fed back — a token's embedding, or a
 * frame as the sum of its codebook embeddings (an embedding override of the LM input).
 *
 * Modes (token ids liquid-audio hard-codes):
 * - sequential (ASR, TTS): text until `<|audio_start|>` (128, yielded) switches to audio; a frame
 *   whose first code is end-of-audio (2048) becomes all-2048, is yielded, and switches back to
 *   text; `<|im_end|>` (7) is yielded and ends.
 * - interleaved (chat): `interleavedText` tokens, then `interleavedAudio` frames, repeating;
 *   `<|text_end|>` (130) leaves only audio until end-of-audio; `<|im_end|>` ends (not yielded).
 *
 * `max_new_tokens` counts text tokens and frames alike (`maxSteps`).
 */
import { LfmError } from "../text-core/errors.ts";
import type { CompiledConstraint } from "../text-core/structured/response-format.ts";
import type { DecodeState, ForwardRequest, Lfm2Runtime } from "../text-core/runtime.ts";
import { Sampler, argmax } from "../text-core/sampler.ts";
import { AUDIO_TOKENS } from "./audio-config.ts";
import type { AudioHead } from "./audio-head.ts";

export type SpeechMode = "sequential" | "interleaved";

/** liquid-audio sampling: greedy when the temperature is unset or ≤ 0 or top-k is 1; else temperature, then top-k. */
export interface ModalitySampling {
  temperature?: number;
  topK?: number;
}

export interface SpeechGenerationOptions {
  mode: SpeechMode;
  /** Text tokens and audio frames together (liquid-audio `max_new_tokens`); default 512. */
  maxSteps?: number;
  text?: ModalitySampling;
  audio?: ModalitySampling;
  /** Seed for the text and audio draws (each gets its own stream); default random. */
  seed?: number;
  signal?: AbortSignal;
  /**
   * Sequential mode: begin the reply with `<|audio_start|>` instead of letting the model choose it
   * (yielded and counted as the first step, exactly as if sampled). For speech-only tasks (TTS).
   */
  forceAudioStart?: boolean;
  /** Interleaved turn lengths (config `interleaved_n_text` / `interleaved_n_audio`, 6 / 12). */
  interleavedText?: number;
  interleavedAudio?: number;
  /**
   * Structured output for the text side (see text-core/structured): every text step is masked by
   * the grammar, which ends at the token that closes the text (`<|text_end|>` interleaved,
   * `<|audio_start|>` sequential) or `<|im_end|>`; after that only `<|im_end|>` may be text.
   */
  textConstraint?: CompiledConstraint;
  /**
   * Continue this decode state instead of starting a new one: it holds the conversation before
   * `prompt` (which is then only the new positions), and is advanced in place by every position
   * run — the prompt, then each step fed back (all but the last: it was chosen, never run). After
   * an abort it holds exactly what ran before it; after any other failure it is unusable.
   */
  state?: DecodeState;
}

/** "stop": the model ended its turn (`<|im_end|>`); "length": maxSteps (or the context) ran out first. */
export type SpeechFinishReason = "stop" | "length";

/**
 * How generation ended. `textComplete` (with a `textConstraint` only): whether the constrained text
 * was complete — a reply can run out of steps in its speech after its text was done.
 */
export interface SpeechEnd {
  finishReason: SpeechFinishReason;
  textComplete?: boolean;
}

export type SpeechStep =
  | { kind: "text"; id: number }
  /** `endOfAudio`: the frame that closes an audio segment (all codes 2048; not a sound to decode). */
  | { kind: "audio"; codes: number[]; endOfAudio: boolean };

/** The LM prompt: ids, with rows replaced by precomputed embeddings (audio input, or a whole prefill). */
export interface SpeechPrompt {
  ids: number[];
  overrides?: ForwardRequest["overrides"];
}

/** End-of-audio code: one past Mimi's 2048 codes. */
export const END_OF_AUDIO = 2048;

/**
 * Whether a frame can be decoded to sound: no codebook holds the end-of-audio code. Codebooks 1–7
 * can sample 2048 without the frame ending the audio (only codebook 0 decides that); such a frame
 * stays in the model's sequence but has no Mimi code, and liquid-audio's demo skips it when decoding.
 */
export function isSoundFrame(codes: readonly number[]): boolean {
  return !codes.includes(END_OF_AUDIO);
}

/**
 * The mode state machine of `generate_sequential` / `generate_interleaved`, apart from the model:
 * `modality` says what the next step produces; `afterText` / `afterFrame` apply one result.
 */
export class ModeSwitch {
  modality: "text" | "audio" = "text";
  private left: number;
  private textDone = false;

  constructor(
    readonly mode: SpeechMode,
    private readonly nText = 6,
    private readonly nAudio = 12,
  ) {
    this.left = nText;
  }

  /** Called at the start of every step (interleaved counts steps, not results). */
  beginStep(): void {
    if (this.mode === "interleaved") this.left -= 1;
  }

  /** A sampled text token: whether it is yielded and whether generation ends. */
  afterText(id: number): { emit: boolean; stop: boolean } {
    if (this.mode === "sequential") {
      if (id === AUDIO_TOKENS.audioStart) this.modality = "audio";
      return { emit: true, stop: id === AUDIO_TOKENS.imEnd };
    }
    if (id === AUDIO_TOKENS.imEnd) return { emit: false, stop: true };
    if (id === AUDIO_TOKENS.textEnd) this.textDone = true;
    if (this.left === 0 || this.textDone) {
      this.modality = "audio";
      this.left = this.nAudio;
    }
    return { emit: true, stop: false };
  }

  /** A sampled frame, normalised: an end-of-audio first code makes the whole frame end-of-audio. */
  afterFrame(codes: number[]): { codes: number[]; endOfAudio: boolean } {
    if (this.mode === "interleaved" && this.left === 0 && !this.textDone) {
      this.modality = "text";
      this.left = this.nText;
    }
    if (codes[0] !== END_OF_AUDIO) return { codes, endOfAudio: false };
    this.modality = "text";
    return { codes: codes.map(() => END_OF_AUDIO), endOfAudio: true };
  }
}

/** A picker with liquid-audio's rule; draws go through text-core's sampler (HF top-k semantics). */
export function modalityPicker(s: ModalitySampling | undefined, seed: number): (logits: Float32Array) => number {
  const temperature = s?.temperature;
  if (s?.topK !== undefined && !(Number.isInteger(s.topK) && s.topK >= 1)) throw new LfmError("INVALID_ARGUMENT", `top-k must be a positive integer (got ${s.topK}).`);
  if (temperature !== undefined && !Number.isFinite(temperature)) throw new LfmError("INVALID_ARGUMENT", `temperature must be a number (got ${temperature}).`);
  if (temperature === undefined || temperature <= 0 || s?.topK === 1) return argmax;
  const sampler = new Sampler({ temperature, topK: s?.topK, seed });
  return (logits) => sampler.pick(logits, []);
}

/**
 * Streams the steps generated after `prompt`. `lm` must expose the final-normed hidden state
 * (`hidden.<numLayers>`: built with `exposeHidden`) beside its logits.
 */
export async function* generateSpeech(lm: Lfm2Runtime, head: AudioHead, prompt: SpeechPrompt, opts: SpeechGenerationOptions): AsyncGenerator<SpeechStep, SpeechEnd> {
  if (prompt.ids.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty: give at least BOS.");
  const hiddenName = `hidden.${lm.config.numLayers}`;
  if (!lm.io.hiddenOutputs.includes(hiddenName) || lm.io.output !== "logits") {
    throw new LfmError("INVALID_ARGUMENT", "speech generation needs an LM runtime with the logits head and exposeHidden (for the audio head's input).");
  }
  if (opts.forceAudioStart && opts.mode !== "sequential") throw new LfmError("INVALID_ARGUMENT", "forceAudioStart applies to sequential generation only.");
  const requested = opts.maxSteps ?? 512;
  if (!Number.isInteger(requested) || requested < 0) throw new LfmError("INVALID_ARGUMENT", `maxSteps must be a non-negative integer (got ${opts.maxSteps}).`);
  const context = lm.config.maxPositionEmbeddings;
  const held = opts.state?.length ?? 0;
  const positions = held + prompt.ids.length;
  if (positions >= context) throw new LfmError("PROMPT_TOO_LONG", `the prompt has ${positions} positions but the model's context is ${context}; shorten it.`);
  const maxSteps = Math.min(requested, context - positions);
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
  const pickText = modalityPicker(opts.text, seed);
  const pickCode = modalityPicker(opts.audio, (seed + 0x9e3779b9) >>> 0);
  const modes = new ModeSwitch(opts.mode, opts.interleavedText, opts.interleavedAudio);
  const checkAbort = () => {
    if (opts.signal?.aborted) throw new LfmError("ABORTED", "speech generation was cancelled.");
  };
  checkAbort();
  if (maxSteps === 0) return { finishReason: "length", textComplete: opts.textConstraint ? false : undefined };

  let ids = prompt.ids;
  let first = 0;
  if (opts.forceAudioStart) {
    modes.beginStep();
    modes.afterText(AUDIO_TOKENS.audioStart);
    yield { kind: "text", id: AUDIO_TOKENS.audioStart };
    if (maxSteps === 1) return { finishReason: "length", textComplete: opts.textConstraint ? true : undefined };
    ids = [...ids, AUDIO_TOKENS.audioStart];
    first = 1;
  }

  const state: DecodeState = opts.state ?? lm.newState(1, prompt.ids.length + maxSteps);
  /** Runs `req` and returns what the next step needs: text logits, or the hidden state for a frame. */
  const step = async (req: ForwardRequest): Promise<Float32Array> => {
    const audio = modes.modality === "audio";
    const out = await lm.forward(state, { ...req, extraOutputs: audio ? [hiddenName] : undefined });
    if (!audio) return out.output;
    const hidden = out.extra[hiddenName].data as Float32Array;
    return hidden.subarray(hidden.length - lm.config.hiddenSize);
  };

  const closesText = opts.mode === "sequential" ? AUDIO_TOKENS.audioStart : AUDIO_TOKENS.textEnd;
  const matcher = await opts.textConstraint?.newMatcher([closesText, AUDIO_TOKENS.imEnd]);
  let textClosed = opts.forceAudioStart === true; // the grammar's text is over: only <|im_end|> may follow
  const end = async (finishReason: SpeechFinishReason): Promise<SpeechEnd> => ({
    finishReason,
    textComplete: matcher ? textClosed || (await matcher.finished()) : undefined,
  });
  try {
    let next = await step({ ids: [ids.slice()], overrides: prompt.overrides });
    for (let i = first; i < maxSteps; i++) {
      checkAbort();
      modes.beginStep();
      let feed: ForwardRequest;
      if (modes.modality === "text") {
        if (matcher && textClosed) onlyAllow(next, AUDIO_TOKENS.imEnd);
        else if (matcher) await matcher.mask(next);
        const id = pickText(next);
        if (matcher && !textClosed) {
          matcher.accept(id);
          textClosed = id === closesText || id === AUDIO_TOKENS.imEnd;
        }
        const { emit, stop } = modes.afterText(id);
        if (emit) yield { kind: "text", id };
        if (stop) return end("stop");
        feed = { ids: [[id]] };
      } else {
        const frame = modes.afterFrame(await head.frame(next, (logits) => pickCode(logits)));
        yield { kind: "audio", codes: frame.codes, endOfAudio: frame.endOfAudio };
        // The id is a placeholder: the frame's embedding replaces its row.
        feed = { ids: [[lm.config.padTokenId]], overrides: { index: [0], values: head.frameEmbedding(frame.codes) } };
      }
      if (i + 1 === maxSteps) return end("length");
      checkAbort(); // the consumer may have aborted on this step: run nothing more
      next = await step(feed);
    }
    return end("length");
  } finally {
    matcher?.dispose();
  }
}

function onlyAllow(logits: Float32Array, id: number): void {
  const keep = logits[id];
  logits.fill(-Infinity);
  logits[id] = Number.isFinite(keep) ? keep : 0;
}
