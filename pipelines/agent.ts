/**
 * A speech-to-speech agent with tools, in the control-plane pattern:
 *
 *   recording → LFM2-Audio transcribes (pipelines/transcribe.ts) → an LFM2 text model reads the
 *   conversation with the tools in its chat template and answers, or calls tools (LFM2's
 *   `<|tool_call_start|>[name(k=v)]<|tool_call_end|>`, constrained by `toolChoice`) → each call's
 *   arguments are validated and the tool run (agent-tools.ts) → the results go back as `tool`
 *   messages and the model goes on, up to `maxToolRounds` rounds of calls → the final text is the
 *   reply, spoken by LFM2-Audio (pipelines/speak.ts), frame by frame.
 *
 * Why not LFM2-Audio end to end: its tokenizer keeps LFM2's tool-call tokens and its chat template
 * can render a tool list, but liquid-audio's chat recipe (ChatState) has no tool list and no tool
 * role, the model card documents no function calling, and the speech-generating prompt has no
 * place for a tool result. A text LFM2 has a documented tool format that the structured-output
 * grammar constrains, so that model decides, and LFM2-Audio does what it was trained for: hearing
 * and speaking.
 *
 * Tools marked `confirm: true` are not run at once: the turn's reply is the question "Run NAME
 * with ARGS? Say yes or no.", and the next turn's words are the answer (yes/no words in a few
 * languages; anything else is no). The conversation (its messages) carries over turns.
 *
 * Each round renders the whole history, but runs only what it adds: the text model's decode state
 * after each prompt and after each reply is kept (text-core/prompt-cache.ts), and a round continues
 * the longest kept state whose tokens its prompt starts with — the new user message and the
 * assistant header, or the tool results. The match is on token ids, so the model sees exactly
 * what a full prefill of the conversation would; a turn cancelled before its answer leaves the
 * kept states as they were, with its messages. (Transcription and speech are one-shot prompts of
 * LFM2-Audio with no history, so there is nothing of theirs to carry over.)
 */
import type { SpeechStack } from "../audio/speech-stack.ts";
import { loadSpeechStack } from "../audio/speech-stack.ts";
import type { ModalitySampling } from "../audio/speech-generation.ts";
import type { AudioClip } from "../audio/wav.ts";
import type { ChatMessage, ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import type { PrefilledPrefix } from "../text-core/generate.ts";
import { TextModel, type TextGenerateOptions } from "../text-core/model.ts";
import { PromptCache } from "../text-core/prompt-cache.ts";
import type { ToolChoice } from "../text-core/structured/response-format.ts";
import { type JsonValue, type ToolCall, readToolCalls } from "../text-core/tool-calls.ts";
import { type AgentTool, DEFAULT_TOOL_TIMEOUT_MS, type ToolOutcome, checkTools, runToolCall, toolDefinition } from "./agent-tools.ts";
import { DEFAULT_MAX_FRAMES, Speaker } from "./speak.ts";
import { transcribe } from "./transcribe.ts";

export interface AgentLoadOptions {
  /** LM and depthformer precision of both models: "q4" (default), "q8", "fp32". */
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  /** Mimi codec folder or file (default: the audio checkpoint's folder). */
  mimi?: string;
  /** Load the Mimi decoder and speak replies (default true); false: text replies only. */
  speak?: boolean;
  onProgress?: (stage: string) => void;
}

export interface AgentOptions {
  tools: AgentTool[];
  /** The text model's system prompt (default DEFAULT_AGENT_SYSTEM). */
  system?: string;
  /** The first round's tool choice (later rounds: "auto" when one is given); none: unconstrained. */
  toolChoice?: ToolChoice;
  /** Rounds of tool calls per turn at most (default 4); the round after them answers without tools. */
  maxToolRounds?: number;
  /** One tool call's time limit (default 10 s). */
  toolTimeoutMs?: number;
  /** Run `confirm: true` tools without asking (scripts). */
  autoConfirm?: boolean;
  /** The text model's sampling and limits (`maxTokens`, `temperature`, `seed`, …) for every round. */
  generation?: Omit<TextGenerateOptions, "tools" | "toolChoice" | "responseFormat" | "signal" | "prefix" | "onState">;
  /**
   * Continue each round from the text model's kept decode state instead of re-reading the whole
   * conversation (default true; false: every round prefills its prompt in full, e.g. to measure).
   */
  reuseState?: boolean;
  /** Speech: frames at most (default 750, 60 s), frame sampling (default TTS recipe), seed. */
  speech?: { maxFrames?: number; audio?: ModalitySampling; seed?: number };
  /** Transcription: new tokens at most per window (default 512). */
  transcribeMaxTokens?: number;
}

export interface TurnOptions {
  signal?: AbortSignal;
  /** This turn's first-round tool choice, instead of the agent's. */
  toolChoice?: ToolChoice;
  /** Called with each round's rendered prompt (the text model's input), before it runs. */
  onPrompt?: (prompt: string, round: number) => void;
}

export type AgentEvent =
  | { type: "transcript"; turn: number; text: string; ms: number }
  | { type: "tool_call"; turn: number; round: number; name: string; arguments: Record<string, JsonValue> }
  | { type: "tool_result"; turn: number; round: number; name: string; ok: boolean; content: string; truncated: boolean; ms: number }
  /** A call the model wrote that did not parse: answered to the model as an error, not run. */
  | { type: "tool_call_error"; turn: number; round: number; raw: string; message: string }
  /** A `confirm: true` call waits for the next turn's yes or no; the reply text is the question. */
  | { type: "confirm"; turn: number; name: string; arguments: Record<string, JsonValue>; question: string }
  /** The answer to a pending confirmation, read from this turn's words. */
  | { type: "confirmation"; turn: number; name: string; confirmed: boolean }
  | { type: "reply_text"; turn: number; text: string }
  /** One Mimi frame of the spoken reply. */
  | { type: "audio"; turn: number; frame: number; samples: Float32Array; sampleRateHz: number }
  /**
   * `promptTokens`: the text model's prompt tokens over the turn's rounds; `reusedTokens`: how many
   * of them came from a kept decode state instead of being run again.
   */
  | {
      type: "timings";
      turn: number;
      transcribeMs: number | null;
      firstReplyTokenMs: number | null;
      firstAudioMs: number | null;
      totalMs: number;
      promptTokens: number;
      reusedTokens: number;
    };

export const DEFAULT_AGENT_SYSTEM = "You are a voice assistant. Use the tools when they help. Answer in one or two short plain sentences: your answer is spoken aloud.";
export const DEFAULT_MAX_TOOL_ROUNDS = 4;
/** What the agent says when it heard nothing it could use. */
export const NOTHING_HEARD = "Sorry, I did not catch that.";

/** A turn's measurements, filled in by its rounds. */
interface RoundClock {
  firstReplyTokenMs: number | null;
  promptTokens: number;
  reusedTokens: number;
}

/** The calls of one round still to run when a confirmation interrupted them. */
interface PendingCalls {
  calls: ToolCall[];
  /** The call waiting for yes or no. */
  index: number;
  round: number;
}

export class Agent {
  /** The conversation as the text model reads it (system prompt first). */
  readonly messages: ChatMessage[];
  private readonly tools: AgentTool[];
  private readonly definitions: ToolDefinition[];
  private readonly speaker: Speaker | undefined;
  private pending: PendingCalls | undefined;
  private turns = 0;
  /** Tool calls run so far (a cancelled turn after one is not rolled back). */
  private toolRuns = 0;
  /** The text model's decode states kept between rounds and turns (undefined: `reuseState: false`). */
  readonly stateCache: PromptCache | undefined;

  private constructor(
    private readonly stack: SpeechStack<true, boolean>,
    readonly textModel: TextModel,
    private readonly opts: AgentOptions,
  ) {
    this.tools = checkTools(opts.tools);
    this.definitions = this.tools.map(toolDefinition);
    this.messages = [{ role: "system", content: opts.system ?? DEFAULT_AGENT_SYSTEM }];
    this.speaker = stack.mimi ? Speaker.fromStack(stack as SpeechStack<true, true>) : undefined;
    this.stateCache = opts.reuseState === false ? undefined : new PromptCache();
    const rounds = opts.maxToolRounds ?? DEFAULT_MAX_TOOL_ROUNDS;
    if (!Number.isInteger(rounds) || rounds < 0 || rounds > 16) throw new LfmError("INVALID_ARGUMENT", `maxToolRounds must be an integer from 0 to 16 (got ${rounds}).`);
  }

  /**
   * Loads LFM2-Audio (encoder, LM, audio head, Mimi) from `audioModel` and the LFM2 text model from
   * `textModel`. The tools are checked first, so a bad tool fails before any graph is built.
   */
  static async load(audioModel: string, textModel: string, opts: AgentOptions, load: AgentLoadOptions = {}): Promise<Agent> {
    checkTools(opts.tools);
    const shared = { precision: load.precision, threads: load.threads, cacheDir: load.cacheDir, onProgress: load.onProgress };
    const text = await TextModel.load(textModel, shared);
    try {
      if (text.renderChat([{ role: "user", content: "x" }], { tools: opts.tools.map(toolDefinition) }).indexOf("<|tool_list_start|>") < 0) {
        throw new LfmError("CHAT_TEMPLATE_INVALID", `the chat template of ${textModel} does not list tools; the agent needs an LFM2 text checkpoint whose template renders them.`);
      }
      const stack = await loadSpeechStack(audioModel, { ...shared, mimi: load.mimi, listen: true, decode: load.speak ?? true });
      return new Agent(stack, text, opts);
    } catch (e) {
      await text.release();
      throw e;
    }
  }

  /** Starts a new conversation: the history back to the system prompt, no confirmation pending. */
  reset(): void {
    this.messages.splice(1);
    this.pending = undefined;
    this.stateCache?.clear();
  }

  /** A confirmation is waiting for the next turn's yes or no. */
  get awaitingConfirmation(): { name: string; arguments: Record<string, JsonValue> } | undefined {
    const call = this.pending?.calls[this.pending.index];
    return call && { name: call.name, arguments: call.arguments };
  }

  /** One spoken turn: `clip` is the user's recording. */
  async *turn(clip: Pick<AudioClip, "samples" | "sampleRateHz">, opts: TurnOptions = {}): AsyncGenerator<AgentEvent> {
    const started = performance.now();
    const turn = ++this.turns;
    const heard = await transcribe(this.stack.model, clip, { maxTokens: this.opts.transcribeMaxTokens, signal: opts.signal });
    const transcribeMs = performance.now() - started;
    yield { type: "transcript", turn, text: heard.text, ms: transcribeMs };
    yield* this.respond(turn, heard.text, started, transcribeMs, opts);
  }

  /** One turn from text already transcribed (or typed): the same loop without the recording. */
  async *turnText(text: string, opts: TurnOptions = {}): AsyncGenerator<AgentEvent> {
    const turn = ++this.turns;
    yield* this.respond(turn, text, performance.now(), null, opts);
  }

  private async *respond(turn: number, heard: string, started: number, transcribeMs: number | null, opts: TurnOptions): AsyncGenerator<AgentEvent> {
    const clock: RoundClock = { firstReplyTokenMs: null, promptTokens: 0, reusedTokens: 0 };
    let reply: string | undefined;
    let firstRound = 0;
    let calls: { calls: ToolCall[]; from: number } | undefined;
    // A turn cancelled (or abandoned by its consumer) before its answer leaves no half of itself
    // in the conversation: the messages and the pending confirmation go back to how they were —
    // unless a tool already ran, whose call and result stay (what it did cannot be taken back).
    const mark = { messages: this.messages.length, pending: this.pending, toolRuns: this.toolRuns, states: this.stateCache?.snapshot() };
    let answered = false;
    try {
      if (this.pending) {
        const { calls: waiting, index, round } = this.pending;
        this.pending = undefined;
        const call = waiting[index];
        const confirmed = isYes(heard);
        yield { type: "confirmation", turn, name: call.name, confirmed };
        if (confirmed) {
          yield* this.runCall(turn, round, call, opts.signal);
        } else {
          const content = JSON.stringify({ error: `the user declined; ${call.name} was not run.` });
          this.messages.push({ role: "tool", content });
          yield { type: "tool_result", turn, round, name: call.name, ok: false, content, truncated: false, ms: 0 };
        }
        calls = { calls: waiting, from: index + 1 };
        firstRound = round;
      } else if (heard.trim() === "") {
        reply = NOTHING_HEARD;
      } else {
        this.messages.push({ role: "user", content: heard });
      }
      if (reply === undefined) reply = yield* this.rounds(turn, firstRound, calls, clock, started, opts);
      answered = true;
    } finally {
      if (!answered && this.toolRuns === mark.toolRuns) {
        this.messages.length = mark.messages;
        this.pending = mark.pending;
        if (mark.states) this.stateCache?.restore(mark.states);
      }
    }
    yield { type: "reply_text", turn, text: reply };
    let firstAudioMs: number | null = null;
    if (this.speaker && reply.trim() !== "") {
      const speech = this.opts.speech ?? {};
      let frame = 0;
      // The reply is speech only: start the audio at once rather than wait for the model to choose it.
      const frames = this.speaker.speak(reply, { maxFrames: speech.maxFrames ?? DEFAULT_MAX_FRAMES, audio: speech.audio, seed: speech.seed, forceAudioStart: true, signal: opts.signal });
      for await (const e of frames) {
        if (e.kind !== "audio") continue;
        firstAudioMs ??= performance.now() - started;
        yield { type: "audio", turn, frame: frame++, samples: e.samples, sampleRateHz: this.speaker.mimi.config.sampleRateHz };
      }
    }
    yield { type: "timings", turn, transcribeMs, firstReplyTokenMs: clock.firstReplyTokenMs, firstAudioMs, totalMs: performance.now() - started, promptTokens: clock.promptTokens, reusedTokens: clock.reusedTokens };
  }

  /**
   * Rounds of the text model until it answers without calls (or the last round, which has no tool
   * constraint and whose calls are not run). `resume`: calls of an earlier round still to run.
   * Returns the reply text: the answer, or a confirmation question.
   */
  private async *rounds(
    turn: number,
    firstRound: number,
    resume: { calls: ToolCall[]; from: number } | undefined,
    clock: RoundClock,
    started: number,
    opts: TurnOptions,
  ): AsyncGenerator<AgentEvent, string> {
    const maxRounds = this.opts.maxToolRounds ?? DEFAULT_MAX_TOOL_ROUNDS;
    let round = firstRound;
    let queued = resume;
    for (;;) {
      if (queued) {
        const question = yield* this.runCalls(turn, round, queued.calls, queued.from, opts.signal);
        if (question !== undefined) return question;
        queued = undefined;
        round++;
      }
      const last = round >= maxRounds;
      const chosen = opts.toolChoice ?? this.opts.toolChoice;
      const toolChoice: ToolChoice | undefined = last ? "none" : round === 0 ? chosen : chosen === undefined ? undefined : "auto";
      const promptIds = this.textModel.chatIds(this.messages, { tools: this.definitions });
      opts.onPrompt?.(this.textModel.renderChat(this.messages, { tools: this.definitions }), round);
      const ids: number[] = [];
      let firstTokenMs: number | null = null;
      const generation = this.opts.generation ?? {};
      // Extra stop ids add to the model's own (<|im_end|>, EOS), as in lfm chat.
      const stops = generation.stopTokenIds ? { stopTokenIds: [...this.textModel.stopTokenIds, ...generation.stopTokenIds] } : {};
      const cache = this.stateCache;
      const prefix = cache?.lookup(promptIds);
      clock.promptTokens += promptIds.length;
      clock.reusedTokens += prefix?.ids.length ?? 0;
      // Kept only once the round's reply is whole: an aborted round adds nothing (see respond).
      const kept: PrefilledPrefix[] = [];
      const tokens = this.textModel.stream(promptIds, {
        ...generation,
        ...stops,
        tools: this.definitions,
        toolChoice,
        signal: opts.signal,
        prefix,
        onState: cache && ((state) => kept.push(state)),
      });
      for await (const t of tokens) {
        if (t.id < 0) continue; // the decoder's held-back tail: the ids are decoded whole below
        firstTokenMs ??= performance.now() - started;
        ids.push(t.id);
      }
      for (const state of kept) cache?.add(state);
      const raw = this.textModel.tokenizer.decode(ids);
      const read = readToolCalls(raw);
      const wroteCalls = read.toolCalls.length > 0 || read.malformed.length > 0;
      if (!wroteCalls || last) {
        clock.firstReplyTokenMs = firstTokenMs;
        // A call written in the last round is not run: only its text around it is the answer.
        const text = (wroteCalls ? stripSpecialTokens(read.content) : this.textModel.tokenizer.decode(ids, { skipSpecialTokens: true })).trim();
        this.messages.push({ role: "assistant", content: text });
        return text;
      }
      this.messages.push({ role: "assistant", content: raw.trim() });
      for (const bad of read.malformed) {
        const content = JSON.stringify({ error: `the tool call could not be read: ${bad.error.message}` });
        yield { type: "tool_call_error", turn, round, raw: bad.raw, message: bad.error.message };
        this.messages.push({ role: "tool", content });
      }
      queued = { calls: read.toolCalls, from: 0 };
    }
  }

  /** Runs `calls` from `from` on; stops at a call that needs confirming and returns its question. */
  private async *runCalls(turn: number, round: number, calls: ToolCall[], from: number, signal: AbortSignal | undefined): AsyncGenerator<AgentEvent, string | undefined> {
    for (let i = from; i < calls.length; i++) {
      const call = calls[i];
      const tool = this.tools.find((t) => t.name === call.name);
      if (tool?.confirm && !this.opts.autoConfirm) {
        this.pending = { calls, index: i, round };
        const question = confirmQuestion(call);
        yield { type: "tool_call", turn, round, name: call.name, arguments: call.arguments };
        yield { type: "confirm", turn, name: call.name, arguments: call.arguments, question };
        return question;
      }
      yield { type: "tool_call", turn, round, name: call.name, arguments: call.arguments };
      yield* this.runCall(turn, round, call, signal);
    }
    return undefined;
  }

  /** Runs one call (announced by the caller) and answers it with a tool message. */
  private async *runCall(turn: number, round: number, call: ToolCall, signal: AbortSignal | undefined): AsyncGenerator<AgentEvent> {
    this.toolRuns++;
    const outcome: ToolOutcome = await runToolCall(this.tools, call, { timeoutMs: this.opts.toolTimeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS, signal });
    this.messages.push({ role: "tool", content: outcome.content });
    yield { type: "tool_result", turn, round, name: call.name, ok: outcome.ok, content: outcome.content, truncated: outcome.truncated, ms: outcome.ms };
  }

  async release(): Promise<void> {
    const parts: Promise<void>[] = [this.textModel.release(), this.stack.model.release(), this.stack.head.release()];
    if (this.stack.mimi) parts.push(this.stack.mimi.release());
    await Promise.all(parts);
  }
}

/** "Run NAME with ARGS? Say yes or no." — ARGS as `key value, key value`, for the ear. */
export function confirmQuestion(call: ToolCall): string {
  const args = Object.entries(call.arguments).map(([k, v]) => `${k} ${typeof v === "string" ? v : JSON.stringify(v)}`);
  return `Run ${call.name}${args.length > 0 ? ` with ${args.join(", ")}` : ""}? Say yes or no.`;
}

const YES = new Set(["yes", "yeah", "yep", "yup", "sure", "ok", "okay", "confirm", "confirmed", "affirmative", "ja", "jawohl", "oui", "si", "sí", "sì", "da", "tak", "sim", "hai", "はい", "是", "是的", "好", "네", "예"]);
const NO = new Set(["no", "nope", "nah", "not", "don't", "dont", "cancel", "stop", "never", "nein", "non", "nee", "não", "nao", "niet", "nie", "いいえ", "不", "不要", "아니요"]);

/**
 * Whether an answer to "yes or no?" is yes: a yes word (a few languages) and no no word. Anything
 * else — silence, another topic, "yes, no, wait" — is no: a tool that changes things runs only on
 * a clear yes.
 */
export function isYes(answer: string): boolean {
  const words = answer.toLowerCase().normalize("NFC").split(/[^\p{L}\p{N}']+/u).filter((w) => w !== "");
  if (words.some((w) => NO.has(w))) return false;
  if (words.some((w) => YES.has(w))) return true;
  // "go ahead", "do it": two-word yes.
  const text = words.join(" ");
  return /\b(go ahead|do it)\b/.test(text);
}

function stripSpecialTokens(text: string): string {
  return text.replace(/<\|[a-z_]+\|>/g, "");
}
