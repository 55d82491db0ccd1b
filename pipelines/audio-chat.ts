/**
 * Speech-to-speech chat with LFM2-Audio, as liquid-audio's chat recipe: the prompt
 *
 *   <|startoftext|><|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n[audio rows]<|im_end|>\n<|im_start|>assistant\n
 *
 * then interleaved (text and audio in turns) or sequential (text, then audio) generation. The
 * reply streams as text pieces and audio frames; with a Mimi decoder loaded, each frame is decoded
 * to 24 kHz samples as soon as it is sampled.
 *
 * `AudioConversation` holds several turns (liquid-audio's multi-turn chat: each reply's text
 * tokens and audio frames go back into the history as generated, then `<|im_end|>\n`) and keeps
 * the LM's decode state between them, so a turn runs only its own positions — the user's audio
 * rows and the turn markers — not the whole conversation again.
 */
import type { AudioHead } from "../audio/audio-head.ts";
import type { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import type { MimiDecoder, MimiStream } from "../audio/mimi-decoder.ts";
import { type AssembledPrompt, SYSTEM_PROMPTS } from "../audio/prompt.ts";
import { type ModalitySampling, type SpeechEnd, type SpeechMode, type SpeechStep, generateSpeech, isSoundFrame } from "../audio/speech-generation.ts";
import { loadSpeechStack } from "../audio/speech-stack.ts";
import type { AudioClip } from "../audio/wav.ts";
import type { AudioChatPrompt } from "../audio/prompt.ts";
import { AUDIO_TOKENS } from "../audio/audio-config.ts";
import { LfmError } from "../text-core/errors.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import type { DecodeState } from "../text-core/runtime.ts";
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
  reply(prompt: AssembledPrompt, opts: AudioChatOptions = {}): AsyncGenerator<AudioChatEvent> {
    return this.replyFrom(prompt, opts);
  }

  /**
   * A conversation of several turns, with `system` (default "Respond with interleaved text and
   * audio.") first. `reuseState` (default true): keep the decode state between turns; false runs
   * the whole history every turn (the same replies, slower: for measuring).
   */
  conversation(system: string = SYSTEM_PROMPTS.interleavedChat, opts: { reuseState?: boolean } = {}): AudioConversation {
    return new AudioConversation(this, this.model.newPrompt().newTurn("system").addText(system).endTurn(), opts.reuseState ?? true);
  }

  /**
   * The reply to `prompt` — the positions after those `state` holds, when it is given (it is
   * advanced in place); `onStep` sees each step as generated, before its event.
   */
  async *replyFrom(prompt: AssembledPrompt, opts: AudioChatOptions, state?: DecodeState, onStep?: (step: SpeechStep) => void): AsyncGenerator<AudioChatEvent> {
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
      state,
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
        onStep?.(step);
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

/**
 * Turns of one spoken conversation. The history is liquid-audio's ChatState: the system turn, then
 * per turn the user's audio rows and the assistant's reply exactly as generated (text tokens and
 * audio frames in order, the end-of-audio frame included), closed by `<|im_end|>\n`. The kept
 * decode state holds the history's first `state.length` positions: everything run so far (a
 * reply's last step was chosen, never run, so it is run with the next turn). A turn stopped by its
 * signal (barge-in) keeps the reply up to where it stopped, in the history and the state alike;
 * a turn that fails otherwise leaves the history as it was and the next turn runs it all again.
 */
export class AudioConversation {
  private state: DecodeState | undefined;

  constructor(
    readonly chat: AudioChat,
    /** The conversation so far, ending after a closed turn. */
    readonly history: AudioChatPrompt,
    private readonly reuseState: boolean,
  ) {}

  /** Positions of the history the kept decode state holds (0: none kept). */
  get keptPositions(): number {
    return this.state?.length ?? 0;
  }

  /** One turn: `clip` is the user's recording; streams the reply as `AudioChat.reply` does. */
  async *turn(clip: Pick<AudioClip, "samples" | "sampleRateHz">, opts: AudioChatOptions = {}): AsyncGenerator<AudioChatEvent> {
    const audio = await this.chat.model.embedAudio(clip);
    const mark = this.history.pieceCount;
    this.history.newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant");
    const state = this.reuseState && this.state ? this.state : this.chat.model.lm.newState(1);
    const held = state.length;
    const prompt = this.history.build(held);
    this.state = undefined; // until the turn is settled below
    let failed = false;
    try {
      for await (const e of this.chat.replyFrom(prompt, opts, state, (step) => {
        // <|im_end|> (yielded in sequential mode) is the turn's end, written by endTurn below.
        if (step.kind === "text" && step.id !== AUDIO_TOKENS.imEnd) this.history.addTextIds([step.id]);
        else if (step.kind === "audio") this.history.addAudioOut([step.codes]);
      })) {
        yield e;
      }
    } catch (e) {
      // Stopped (barge-in) is not a failure: the reply so far stays, as after a consumer's return.
      failed = !(e instanceof LfmError && e.code === "ABORTED");
      throw e;
    } finally {
      if (failed) {
        this.history.truncate(mark);
        // A state the failed turn never advanced (a bad option, a prompt too long) still holds the history.
        if (state.length === held && held > 0) this.state = state;
      } else {
        this.history.endTurn();
        if (this.reuseState) this.state = state;
      }
    }
  }
}
