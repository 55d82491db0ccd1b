/**
 * `POST /v1/chat/completions`: a checked request (chat-request.ts) → the model's prompt
 * (message-content.ts) → tokens from the library's generation, streamed as OpenAI's chunks or
 * collected into one reply, with `usage` and `timings` either way.
 *
 * Text is cut at a `stop` string (text-core/stop-text.ts); with `tools`, a call the model writes
 * (`<|tool_call_start|>[name(arg=1)]<|tool_call_end|>`) is parsed into OpenAI's `tool_calls` (the
 * stream sends the text before it as it comes, and the calls once the reply is complete, since a
 * call is only known to parse when it has ended).
 *
 * A text model's chats continue from the decode states its prompt cache keeps (the registry's
 * `promptCache`, shared by all clients): the longest kept prefix of the prompt is restored and only
 * the rest is run; the state after the prompt and after a finished reply are kept for the next
 * turn. `usage.prompt_tokens_details.cached_tokens` says how many prompt tokens were not run.
 */
import { randomUUID } from "node:crypto";
import { AUDIO_TOKENS } from "../audio/audio-config.ts";
import type { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { type FinishReason, generate } from "../text-core/generate.ts";
import type { TextGenerateOptions } from "../text-core/model.ts";
import { StopTextMatcher } from "../text-core/stop-text.ts";
import { compileStructuredOutput } from "../text-core/structured/response-format.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import { TOOL_CALL_START, readToolCalls } from "../text-core/tool-calls.ts";
import { type TokenLogprob, tokenLogprob } from "./chat-logprobs.ts";
import type { ChatRequest } from "./chat-request.ts";
import { badField } from "./errors.ts";
import { audioPrompt, textMessages, visionMessages } from "./message-content.ts";
import type { LoadedModel, ModelEntry } from "./model-registry.ts";

/** New tokens when a request names no limit: long enough for an answer, short of a runaway. */
export const DEFAULT_MAX_TOKENS = 2048;

/** OpenAI's tool call in a reply; `arguments` is JSON text. */
export interface ReplyToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface Usage {
  prompt_tokens: number;
  /** OpenAI's shape: `cached_tokens` of the prompt continued from a kept decode state (not run again). */
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens: number;
  total_tokens: number;
}

/** Where the time went, in milliseconds (not in OpenAI's API; llama.cpp's server has the like). */
export interface Timings {
  /** Waiting for the model's queue (and its load, on first use). */
  queue_ms: number;
  /** Prompt tokens continued from a kept decode state (not run again). */
  cached_tokens: number;
  /** Prompt processing up to the first new token. */
  prompt_ms: number;
  /** The new tokens after the first. */
  completion_ms: number;
  /** New tokens per second after the first. */
  tokens_per_s: number;
  total_ms: number;
}

export type OpenAiFinishReason = "stop" | "length" | "tool_calls";

/** What a finished reply holds. */
export interface ChatReply {
  content: string | null;
  toolCalls?: ReplyToolCall[];
  /** Calls the model wrote that did not parse (a non-standard field: the raw text and why). */
  toolCallErrors?: { raw: string; code: string; message: string }[];
  finishReason: OpenAiFinishReason;
  usage: Usage;
  timings: Timings;
  /** With `logprobs: true`: every new token's (OpenAI's `logprobs.content`), in order. */
  logprobs?: TokenLogprob[];
  /** How many of `logprobs` went out with streamed content; the rest go with the last chunk. */
  logprobsSent?: number;
}

/** How a reply goes out while it is made: each piece of content as it is safe to send. */
export interface ReplySink {
  /** `logprobs` (with `logprobs: true`): the tokens' entries not sent before, this piece's tokens among them. */
  content(text: string, logprobs?: TokenLogprob[]): Promise<void>;
}

/** Per-request facts the generation needs beside the request. */
export interface ChatContext {
  signal: AbortSignal;
  allowFiles?: string;
  /** When the request arrived (performance.now()). */
  arrivedAt: number;
  onTokens?: (count: number) => void;
  /** Called when a prompt was looked up in the model's prompt cache: how many of its tokens were found. */
  onPromptCache?: (cachedTokens: number) => void;
  /** Text models: share decode steps with the model's other chats (`lfm serve --max-batch` above 1). */
  decodeBatching?: boolean;
}

/** The prompt's length and the token stream of one reply, whatever the kind of model. */
interface Generation {
  promptTokens: number;
  /** Prompt tokens continued from a kept state. */
  cachedTokens: number;
  tokenizer: Lfm2Tokenizer;
  tokens: AsyncGenerator<{ id: number; logprob?: number; topLogprobs?: { id: number; logprob: number }[] }, FinishReason>;
}

function sampling(req: ChatRequest, signal: AbortSignal): TextGenerateOptions {
  return {
    maxTokens: req.maxTokens ?? DEFAULT_MAX_TOKENS,
    temperature: req.temperature,
    topP: req.topP,
    topK: req.topK,
    minP: req.minP,
    repetitionPenalty: req.repetitionPenalty,
    seed: req.seed,
    signal,
    responseFormat: req.responseFormat,
    tools: req.tools,
    toolChoice: req.toolChoice,
    ...(req.logprobs ? { logprobs: true, topLogprobs: req.logprobs.top } : {}),
  };
}

async function startGeneration(entry: ModelEntry, loaded: LoadedModel, req: ChatRequest, ctx: ChatContext): Promise<Generation> {
  const opts = sampling(req, ctx.signal);
  switch (loaded.kind) {
    case "text": {
      const model = loaded.model;
      const ids = model.chatIds(textMessages(entry, req.messages), { tools: req.tools });
      const run = ctx.decodeBatching ? { ...opts, batcher: model.decodeBatcher } : opts;
      const cache = loaded.promptCache;
      if (!cache) return { promptTokens: ids.length, cachedTokens: 0, tokenizer: model.tokenizer, tokens: model.stream(ids, run) };
      const prefix = cache.lookup(ids);
      ctx.onPromptCache?.(prefix?.ids.length ?? 0);
      // Kept: the state after the whole prompt, and after a reply that finished (never a cancelled
      // or stop-string-cut one's: generate gives no "end" state then), each complete and never advanced.
      const tokens = model.stream(ids, { ...run, prefix, onState: (kept) => cache.add(kept) });
      return { promptTokens: ids.length, cachedTokens: prefix?.ids.length ?? 0, tokenizer: model.tokenizer, tokens };
    }
    case "vision": {
      const model = loaded.model;
      const prompt = await model.prepareChat(await visionMessages(entry, req.messages, ctx.allowFiles), { tools: req.tools });
      return { promptTokens: prompt.promptIds.length, cachedTokens: 0, tokenizer: model.tokenizer, tokens: model.stream(prompt, opts) };
    }
    case "audio":
      return audioGeneration(entry, loaded.model, req, opts);
    case "speech":
      // The registry loads a chat model for chat; a speech load here is a wiring mistake.
      throw new Error(`${entry.id}: chat was handed the speech load`);
  }
}

/** LFM2-Audio answering in text: the turn ends at `<|im_end|>`, and at `<|audio_start|>` (speech in a chat reply is not served: POST /v1/audio/speech speaks). */
async function audioGeneration(entry: ModelEntry, model: Lfm2AudioModel, req: ChatRequest, opts: TextGenerateOptions): Promise<Generation> {
  if (req.tools) throw badField("tools", `model ${entry.id} (LFM2-Audio) has no tool-call format.`);
  const prompt = await audioPrompt(entry, model, req.messages);
  const constraint = await compileStructuredOutput(model.tokenizer, model.config.lfm.vocabSize, { responseFormat: req.responseFormat });
  const stops = [...new Set([...model.config.lfm.eosTokenIds, AUDIO_TOKENS.imEnd, AUDIO_TOKENS.audioStart])];
  const tokens = generate(model.lm, prompt.ids, { ...opts, promptOverrides: prompt.overrides, stopTokenIds: stops, constraint });
  return { promptTokens: prompt.ids.length, cachedTokens: 0, tokenizer: model.tokenizer, tokens };
}

/** OpenAI's call id shape (`call_` + 24 characters). */
function callId(): string {
  return `call_${randomUUID().replace(/-/g, "").slice(0, 24)}`;
}

/**
 * Runs one chat reply on a loaded model: sends content through `sink` as it is made, and returns
 * the finished reply. A client that went away aborts `ctx.signal`, which stops generation at the
 * next token (ABORTED is thrown).
 */
export async function runChat(entry: ModelEntry, loaded: LoadedModel, req: ChatRequest, ctx: ChatContext, sink: ReplySink): Promise<ChatReply> {
  const startedAt = performance.now();
  const generation = await startGeneration(entry, loaded, req, ctx);
  const withTools = req.tools !== undefined;
  // With tools the call markers are special tokens that must survive decoding to be parsed.
  const decoder = generation.tokenizer.createStreamDecoder({ skipSpecialTokens: !withTools });
  const stopper = new StopTextMatcher(req.stop);
  let text = ""; // the reply so far, cut at a stop string
  let sent = 0; // characters of `text` sent as content
  let completionTokens = 0;
  let firstTokenAt: number | undefined;
  let finish: FinishReason = "stop";
  const logprobs: TokenLogprob[] | undefined = req.logprobs ? [] : undefined;
  let logprobsSent = 0;

  const deliver = async (piece: string) => {
    text += stopper.push(piece);
    // Content up to a tool call's start marker streams; the call itself waits for the end.
    const callAt = withTools ? text.indexOf(TOOL_CALL_START) : -1;
    const safeEnd = callAt >= 0 ? callAt : text.length;
    if (safeEnd > sent) {
      const entries = logprobs?.slice(logprobsSent);
      await sink.content(text.slice(sent, safeEnd), entries);
      sent = safeEnd;
      logprobsSent += entries?.length ?? 0;
    }
  };

  const tokens = generation.tokens;
  try {
    for (;;) {
      const step = await tokens.next();
      if (step.done) {
        finish = step.value;
        break;
      }
      if (step.value.id < 0) continue; // TextModel.stream's own flush; this decoder flushes itself
      firstTokenAt ??= performance.now();
      completionTokens++;
      ctx.onTokens?.(1);
      if (logprobs && step.value.logprob !== undefined) logprobs.push(tokenLogprob(generation.tokenizer, step.value.id, step.value.logprob, step.value.topLogprobs));
      await deliver(decoder.push(step.value.id));
      if (stopper.stopped) break;
    }
  } finally {
    await tokens.return("stop"); // stops a generation left early (a stop string) and frees its matcher
  }
  if (!stopper.stopped) {
    await deliver(decoder.flush());
    text += stopper.flush();
  } else finish = "stop";

  const endedAt = performance.now();
  const reply: ChatReply = {
    content: text,
    finishReason: finish,
    usage: {
      prompt_tokens: generation.promptTokens,
      prompt_tokens_details: { cached_tokens: generation.cachedTokens },
      completion_tokens: completionTokens,
      total_tokens: generation.promptTokens + completionTokens,
    },
    timings: timings(ctx.arrivedAt, startedAt, firstTokenAt, endedAt, completionTokens, generation.cachedTokens),
    ...(logprobs ? { logprobs, logprobsSent } : {}),
  };
  if (withTools) {
    const read = readToolCalls(text);
    // A reply cut by max_tokens inside a call has no finished call to give (finish_reason says "length").
    const cut = finish === "length" && read.malformed.some((m) => m.unterminated);
    if (!cut && read.toolCalls.length > 0) {
      reply.toolCalls = read.toolCalls.map((c) => ({ id: callId(), type: "function", function: { name: c.name, arguments: JSON.stringify(c.arguments) } }));
      reply.finishReason = "tool_calls";
    }
    if (read.malformed.length > 0) reply.toolCallErrors = read.malformed.map(({ raw, error }) => ({ raw, code: error.code, message: error.message }));
    reply.content = read.content === "" && reply.toolCalls ? null : read.content;
    // Text after a call (rare) was held back while streaming: send it now.
    if (reply.content !== null && reply.content.length > sent && reply.content.startsWith(text.slice(0, sent))) await sink.content(reply.content.slice(sent));
  }
  return reply;
}

function timings(arrivedAt: number, startedAt: number, firstTokenAt: number | undefined, endedAt: number, tokens: number, cachedTokens: number): Timings {
  const first = firstTokenAt ?? endedAt;
  const completionMs = endedAt - first;
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return {
    queue_ms: round(startedAt - arrivedAt),
    cached_tokens: cachedTokens,
    prompt_ms: round(first - startedAt),
    completion_ms: round(completionMs),
    tokens_per_s: tokens > 1 && completionMs > 0 ? Math.round(((tokens - 1) / completionMs) * 1000 * 10) / 10 : 0,
    total_ms: round(endedAt - arrivedAt),
  };
}

/** The id and creation time every chunk of one reply shares. */
export function completionId(): { id: string; created: number } {
  return { id: `chatcmpl-${randomUUID().replace(/-/g, "")}`, created: Math.floor(Date.now() / 1000) };
}
