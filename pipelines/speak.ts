/**
 * Text → speech with an LFM2-Audio checkpoint, as liquid-audio's TTS recipe does it: the prompt
 *
 *   <|startoftext|><|im_start|>system\nPerform TTS.<|im_end|>\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n
 *
 * then sequential generation (audio temperature 0.8, top-k 64, greedy text by default), each frame
 * decoded by Mimi as soon as it is sampled, up to the end-of-audio frame (which is not a sound).
 */
import type { Lfm2AudioConfig } from "../audio/audio-config.ts";
import type { AudioHead } from "../audio/audio-head.ts";
import type { MimiDecoder } from "../audio/mimi-decoder.ts";
import { AudioChatPrompt, SYSTEM_PROMPTS } from "../audio/prompt.ts";
import { type ModalitySampling, generateSpeech, isSoundFrame } from "../audio/speech-generation.ts";
import { type SpeechStack, loadSpeechStack } from "../audio/speech-stack.ts";
import { LfmError } from "../text-core/errors.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import type { Lfm2Runtime } from "../text-core/runtime.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";

export interface SpeakerLoadOptions {
  /** Mimi codec folder or file; default the checkpoint folder (it ships Kyutai's Mimi). */
  mimi?: string;
  /** LM and depthformer precision: "q4" (default), "q8", "fp32". Mimi runs in fp32. */
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  onProgress?: (stage: string) => void;
}

export interface SpeakOptions {
  /** Default "Perform TTS." (LFM2.5-Audio voices: "Perform TTS. Use the UK male voice." etc.). */
  system?: string;
  /** Audio frames at most (12.5 per second); default 750 (60 s). */
  maxFrames?: number;
  /** Frame sampling; default liquid-audio's TTS recipe, temperature 0.8 and top-k 64 (0 = greedy). */
  audio?: ModalitySampling;
  /** Text sampling; default greedy. */
  text?: ModalitySampling;
  seed?: number;
  /** Begin the reply with `<|audio_start|>` rather than waiting for the model to choose it. */
  forceAudioStart?: boolean;
  signal?: AbortSignal;
}

export type SpeakEvent =
  | { kind: "text"; id: number }
  /** One decoded frame: `samplesPerFrame` samples at `sampleRateHz`, and its codes. */
  | { kind: "audio"; samples: Float32Array; codes: number[]; frame: number };

export const DEFAULT_MAX_FRAMES = 750;
/** Text tokens allowed around the audio (the switch token, the closing `<|im_end|>`, any words). */
const TEXT_ALLOWANCE = 64;

export class Speaker {
  private constructor(
    readonly dir: string,
    readonly config: Lfm2AudioConfig,
    readonly tokenizer: Lfm2Tokenizer,
    readonly lm: Lfm2Runtime,
    readonly head: AudioHead,
    readonly mimi: MimiDecoder,
  ) {}

  static async load(path: string, opts: SpeakerLoadOptions = {}): Promise<Speaker> {
    return Speaker.fromStack(await loadSpeechStack(path, { ...opts, listen: false, decode: true }));
  }

  /**
   * A speaker on a speech stack loaded for other jobs too (the agent hears and speaks with one
   * LM); its `release` releases the stack's LM, head and Mimi decoder.
   */
  static fromStack(stack: SpeechStack<boolean, true>): Speaker {
    return new Speaker(stack.dir, stack.config, stack.tokenizer, stack.lm, stack.head, stack.mimi);
  }

  /** The TTS prompt's token ids. */
  promptIds(text: string, system: string = SYSTEM_PROMPTS.tts): number[] {
    if (text.trim().length === 0) throw new LfmError("EMPTY_TEXT", "there is no text to speak; pass some words.");
    const prompt = new AudioChatPrompt(this.tokenizer, this.config.lfm.hiddenSize, undefined, this.config.lfm.padTokenId);
    prompt.newTurn("system").addText(system).endTurn().newTurn("user").addText(text).endTurn().newTurn("assistant");
    return prompt.build().ids;
  }

  /** Streams the reply: text tokens as sampled, audio as decoded samples, frame by frame. */
  async *speak(text: string, opts: SpeakOptions = {}): AsyncGenerator<SpeakEvent> {
    const maxFrames = opts.maxFrames ?? DEFAULT_MAX_FRAMES;
    if (!Number.isInteger(maxFrames) || maxFrames < 1) throw new LfmError("INVALID_ARGUMENT", `maxFrames must be a positive integer (got ${opts.maxFrames}).`);
    const ids = this.promptIds(text, opts.system);
    const stream = this.mimi.stream();
    let frames = 0;
    const steps = generateSpeech(this.lm, this.head, { ids }, {
      mode: "sequential",
      maxSteps: maxFrames + TEXT_ALLOWANCE,
      audio: opts.audio ?? { temperature: 0.8, topK: 64 },
      text: opts.text,
      seed: opts.seed,
      forceAudioStart: opts.forceAudioStart,
      signal: opts.signal,
    });
    for await (const step of steps) {
      if (step.kind === "text") {
        yield step;
        continue;
      }
      if (step.endOfAudio) return;
      if (!isSoundFrame(step.codes)) continue; // no sound to decode (see isSoundFrame)
      const samples = await stream.push([step.codes]);
      yield { kind: "audio", samples, codes: step.codes, frame: frames++ };
      if (frames >= maxFrames) return;
    }
  }

  async release(): Promise<void> {
    await Promise.all([this.lm.release(), this.head.release(), this.mimi.release()]);
  }
}
