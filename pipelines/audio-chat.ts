/**
 * Speech-to-speech chat with LFM2-Audio, as liquid-audio's chat recipe: the prompt
 *
 *   <|startoftext|><|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n[audio rows]<|im_end|>\n<|im_start|>assistant\n
 *
 * then interleaved (text and audio in turns) or sequential (text, then audio) generation. The
 * reply streams as text pieces and audio frames; with a Mimi decoder loaded, each frame is decoded
 * to 24 kHz samples as soon as it is sampled.
 */
import type { AudioHead } from "../audio/audio-head.ts";
import type { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import type { MimiDecoder, MimiStream } from "../audio/mimi-decoder.ts";
import { type AssembledPrompt, SYSTEM_PROMPTS } from "../audio/prompt.ts";
import { type ModalitySampling, type SpeechEnd, type SpeechMode, generateSpeech, isSoundFrame } from "../audio/speech-generation.ts";
import { loadSpeechStack } from "../audio/speech-stack.ts";
import type { AudioClip } from "../audio/wav.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { type ResponseFormat, compileStructuredOutput } from "../text-core/structured/response-format.ts";

export interface AudioChatLoadOptions {
  /**
   * Mimi codec folder or file to decode the spoken reply (default: none — frames are generated,
   * as the model needs them, but not turned into sound). Located before any graph is built.
   */
  mimi?: string;
  /** LM and depthformer precision: "q4" (default), "q8", "fp32". The encoder runs q8 (fp32 with fp32); Mimi fp32. */
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  onProgress?: (stage: string) => void;
}

export interface AudioChatOptions {
  mode?: SpeechMode;
  /** Text tokens and audio frames together (liquid-audio `max_new_tokens`); default 512. */
  maxSteps?: number;
  /** Text sampling; default greedy. */
  text?: ModalitySampling;
  /** Frame sampling; default liquid-audio's chat recipe, temperature 1 and top-k 4. */
  audio?: ModalitySampling;
  seed?: number;
  signal?: AbortSignal;
  /**
   * Constrains the reply's text (JSON schema, JSON object, EBNF or regex, as `TextModel.generate`);
   * the speech is still the model's own. Compiled before the first step, so a bad schema fails early.
   */
  responseFormat?: ResponseFormat;
}

export type AudioChatEvent =
  /**
   * `text`: the characters this token completed (often "", special tokens dropped). A last event
   * with `id: null` carries characters still held back when the reply ended (a cut-off UTF-8 tail).
   */
  | { kind: "text"; id: number | null; text: string }
  /** `samples`: the frame decoded at 24 kHz when a Mimi codec is loaded and the frame is a sound. */
  | { kind: "audio"; codes: number[]; endOfAudio: boolean; samples?: Float32Array }
  /**
   * The last event: `finishReason` "stop" when the model ended its turn, "length" when maxSteps ran
   * out; with a `responseFormat`, `textComplete` says whether the constrained text was complete
   * (steps can run out in the speech after it).
   */
  | ({ kind: "end" } & SpeechEnd);

export const DEFAULT_CHAT_STEPS = 512;
export const CHAT_AUDIO_SAMPLING: ModalitySampling = { temperature: 1, topK: 4 };

export class AudioChat {
  private constructor(
    readonly model: Lfm2AudioModel,
    readonly head: AudioHead,
    readonly mimi: MimiDecoder | undefined,
  ) {}

  static async load(path: string, opts: AudioChatLoadOptions = {}): Promise<AudioChat> {
    const stack = await loadSpeechStack(path, { ...opts, listen: true, decode: opts.mimi !== undefined });
    return new AudioChat(stack.model, stack.head, stack.mimi);
  }

  /** The chat prompt for one recording (system prompt default "Respond with interleaved text and audio."). */
  async prompt(clip: Pick<AudioClip, "samples" | "sampleRateHz">, system: string = SYSTEM_PROMPTS.interleavedChat): Promise<AssembledPrompt> {
    const audio = await this.model.embedAudio(clip);
    return this.model.newPrompt().newTurn("system").addText(system).endTurn().newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant").build();
  }

  /** Streams the assistant's reply to `prompt`. */
  async *reply(prompt: AssembledPrompt, opts: AudioChatOptions = {}): AsyncGenerator<AudioChatEvent> {
    const tokenizer = this.model.tokenizer;
    const textConstraint = await compileStructuredOutput(tokenizer, this.model.lm.config.vocabSize, { responseFormat: opts.responseFormat });
    const text = tokenizer.createStreamDecoder({ skipSpecialTokens: true });
    const stream: MimiStream | undefined = this.mimi?.stream();
    const steps = generateSpeech(this.model.lm, this.head, prompt, {
      mode: opts.mode ?? "interleaved",
      maxSteps: opts.maxSteps ?? DEFAULT_CHAT_STEPS,
      text: opts.text,
      audio: opts.audio ?? CHAT_AUDIO_SAMPLING,
      seed: opts.seed,
      signal: opts.signal,
      textConstraint,
    });
    let ending: SpeechEnd;
    try {
      for (;;) {
        const next = await steps.next();
        if (next.done) {
          ending = next.value;
          break;
        }
        const step = next.value;
        if (step.kind === "text") {
          yield { kind: "text", id: step.id, text: text.push(step.id) };
          continue;
        }
        const samples = stream && isSoundFrame(step.codes) ? await stream.push([step.codes]) : undefined;
        yield { kind: "audio", codes: step.codes, endOfAudio: step.endOfAudio, samples };
      }
    } finally {
      await steps.return({ finishReason: "length" }); // a consumer that stops early still releases the grammar matcher
    }
    const rest = text.flush();
    if (rest !== "") yield { kind: "text", id: null, text: rest };
    yield { kind: "end", ...ending };
  }

  async release(): Promise<void> {
    await Promise.all([this.model.release(), this.head.release(), ...(this.mimi ? [this.mimi.release()] : [])]);
  }
}
