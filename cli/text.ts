/** The language core's commands: `lfm tokenize`, `lfm generate`, `lfm chat`. */
import { createInterface } from "node:readline/promises";
import type { ChatMessage, ToolDefinition } from "../text-core/chat.ts";
import { readConfigJson } from "../text-core/config.ts";
import { LfmError } from "../text-core/errors.ts";
import type { FinishReason } from "../text-core/generate.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import { TextModel, type TextGenerateOptions } from "../text-core/model.ts";
import { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import { type MalformedToolCall, type ToolCall, readToolCalls } from "../text-core/tool-calls.ts";
import { isLfm2VlConfig } from "../vision/vl-config.ts";
import { modelOrBundled } from "./bundled.ts";
import { GenerationClock, QUIET, SUMMARY_HELP, printSummary, runReply, summaryJson } from "./generation-output.ts";
import { terminalLine, textForStream } from "./terminal-text.ts";
import {
  COMMON,
  type CliCommand,
  SAMPLING,
  SAMPLING_HELP,
  STRUCTURED,
  STRUCTURED_HELP,
  TOOL_CHOICE,
  type Values,
  checkComplete,
  checkGenerationFlags,
  generationOptions,
  idList,
  loadFlags,
  parse,
  readJsonFile,
  readJsonInput,
  structuredFlags,
} from "./cli-kit.ts";
import { VL_CHAT_FLAGS, runVlChat } from "./describe.ts";
import { MAX_INPUT_BYTES, checkOneStdinReader, dropFinalNewline, readStdinText, readTextInput, stdinIsTerminal, textFromFlags } from "./input-source.ts";

/** How the text commands take long text, for their help. */
const INPUT_HELP = `  A file named by a flag (F) is a regular UTF-8 file of at most ${MAX_INPUT_BYTES / 2 ** 20} MiB ("-": standard input);
  the line break that ends a file or piped text is dropped.`;

async function loadTextModel(v: Values): Promise<TextModel> {
  return TextModel.load(modelOrBundled(v, "text"), loadFlags(v));
}

/** How a reply is printed: --json or streamed text; --quiet; chat reads tool calls from it. */
interface CompletionOutput {
  json: boolean;
  quiet: boolean;
  toolCalls: boolean;
}

/**
 * Streams the reply to stdout and its summary to stderr, or collects it and prints the JSON
 * contract; returns the reply and why it ended.
 */
async function runCompletion(model: TextModel, promptIds: number[], opts: TextGenerateOptions, out: CompletionOutput): Promise<{ text: string; finishReason: FinishReason }> {
  const clock = new GenerationClock(promptIds.length);
  const reply = await runReply(model.stream(promptIds, opts), clock, { stdout: !out.json, quiet: out.quiet });
  const calls = out.toolCalls ? toolCallsOf(model, reply.ids, reply.finishReason) : undefined;
  if (out.json) {
    // The text as the library's complete() gives it (the whole reply decoded at once).
    const text = model.tokenizer.decode(reply.ids, { skipSpecialTokens: true });
    const result: Record<string, unknown> = { prompt_ids: promptIds, ids: reply.ids, text };
    if (calls) {
      result.tool_calls = calls.toolCalls;
      result.tool_call_errors = calls.malformed.map(({ raw, error }) => ({ raw, code: error.code, message: error.message }));
    }
    result.finish_reason = reply.finishReason;
    Object.assign(result, summaryJson(reply.stats));
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return { text, finishReason: reply.finishReason };
  }
  for (const bad of calls?.malformed ?? []) {
    const cut = bad.unterminated && reply.finishReason === "length" ? " (the reply hit --max-tokens inside the call)" : "";
    process.stderr.write(`warning [${bad.error.code}]: ${terminalLine(bad.error.message)}${cut}\n`);
  }
  printSummary(reply.stats, out.quiet);
  return { text: reply.text, finishReason: reply.finishReason };
}

/**
 * The reply's tool calls, read span by span: a malformed call is reported beside the good ones,
 * never fatal (models do emit broken calls; the reply stays). A reply that --max-tokens ended
 * inside a call (no end marker) makes `toolCalls` null: the calls are unfinished, the finish reason
 * says "length", and a forced call then fails with OUTPUT_INCOMPLETE.
 */
function toolCallsOf(model: TextModel, ids: number[], finishReason: FinishReason): { toolCalls: ToolCall[] | null; malformed: MalformedToolCall[] } {
  const read = readToolCalls(model.tokenizer.decode(ids));
  const cut = finishReason === "length" && read.malformed.some((m) => m.unterminated);
  return { toolCalls: cut ? null : read.toolCalls, malformed: read.malformed };
}

/** Ids of `flag` that the tokenizer does not know: INVALID_ARGUMENT naming them and the range. */
function checkTokenIds(ids: number[], tokenizer: Lfm2Tokenizer, flag: string): void {
  const unknown = ids.filter((id) => tokenizer.idToToken(id) === undefined);
  if (unknown.length > 0) {
    throw new LfmError("INVALID_ARGUMENT", `--${flag}: ${unknown.slice(0, 5).join(", ")}${unknown.length > 5 ? ", …" : ""} ${unknown.length === 1 ? "is not a token id" : "are not token ids"} of this tokenizer (${tokenizer.vocabSize} ids, 0–${tokenizer.vocabSize - 1}).`);
  }
}

/** tokenize reads only the tokenizer: no precision, threads or graph cache. */
const TOKENIZE_OPTIONS = {
  model: COMMON.model,
  json: COMMON.json,
  help: COMMON.help,
  "no-special": { type: "boolean" },
  decode: { type: "string" },
} as const;

export const tokenizeCommand: CliCommand = {
  name: "tokenize",
  summary: "Text → token ids (and back).",
  help: `lfm tokenize --model DIR [--no-special] [--json] TEXT
  Prints the token ids of TEXT (with BOS unless --no-special); with --json: {"ids":[...]}.
  --decode IDS    Instead: decode comma-separated ids to text ({"text": ...} with --json).`,
  options: TOKENIZE_OPTIONS,
  async run(args: string[]): Promise<number> {
    const { values: v, positionals } = parse(args, TOKENIZE_OPTIONS);
    const tokenizer = await Lfm2Tokenizer.fromDir(resolveModelDir(modelOrBundled(v, "text")));
    if (typeof v.decode === "string") {
      const ids = idList(v.decode, "decode");
      checkTokenIds(ids, tokenizer, "decode");
      const text = tokenizer.decode(ids, { skipSpecialTokens: Boolean(v["no-special"]) });
      console.log(v.json ? JSON.stringify({ text }) : textForStream(text, process.stdout.isTTY));
      return 0;
    }
    if (positionals.length !== 1) throw new LfmError("INVALID_ARGUMENT", "tokenize takes exactly one TEXT argument (quote it).");
    const ids = tokenizer.encode(positionals[0], { addSpecialTokens: !v["no-special"] });
    console.log(v.json ? JSON.stringify({ ids }) : ids.join(" "));
    return 0;
  },
};

const GENERATE_OPTIONS = {
  ...COMMON,
  ...SAMPLING,
  ...STRUCTURED,
  ...QUIET,
  prompt: { type: "string" },
  "prompt-file": { type: "string" },
  "prompt-ids": { type: "string" },
} as const;

export const generateCommand: CliCommand = {
  name: "generate",
  summary: "Continue a plain prompt (text or token ids).",
  help: `lfm generate --model DIR (--prompt TEXT | --prompt-file F | --prompt-ids 1,6,594,...) [options]
  Continues the prompt. Streams text, or with --json prints {"prompt_ids", "ids", "text", "finish_reason",
  "usage": {"prompt_tokens", "completion_tokens"}, "timings": {"ttft_ms", "tokens_per_s", "total_ms"}}
  (finish_reason: "stop" = a stop token or a complete format, "length" = --max-tokens ran out).
  --prompt TEXT            The prompt (words after the flags are the prompt too).
  --prompt-file F          The prompt from a file ("-": standard input).
  --prompt-ids IDS         The prompt as comma-separated token ids.
  Without any of them, the prompt is standard input when it is not a terminal (cat report.txt | lfm generate).
${INPUT_HELP}
${SUMMARY_HELP}
${SAMPLING_HELP}
${STRUCTURED_HELP}
  Also: --precision P, --threads N, --cache-dir DIR, --no-cache (lfm --help).`,
  options: GENERATE_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, GENERATE_OPTIONS);
    // Every flag is checked before the model loads and the prompt is echoed.
    checkGenerationFlags(v);
    const structured = structuredFlags(v);
    const prompt = await generatePrompt(v, positionals);
    const model = await loadTextModel(v);
    try {
      let promptIds: number[];
      if ("ids" in prompt) {
        checkTokenIds(prompt.ids, model.tokenizer, "prompt-ids");
        promptIds = prompt.ids;
      } else promptIds = model.encodePrompt(prompt.text);
      if (promptIds.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty.");
      if (!v.json) process.stdout.write(textForStream(model.tokenizer.decode(promptIds, { skipSpecialTokens: true }), process.stdout.isTTY));
      const opts = { ...generationOptions(model, v, signal), responseFormat: structured.responseFormat };
      const { finishReason } = await runCompletion(model, promptIds, opts, { json: Boolean(v.json), quiet: Boolean(v.quiet), toolCalls: false });
      checkComplete(structured, finishReason);
      return 0;
    } finally {
      await model.release();
    }
  },
};

/**
 * generate's prompt: exactly one of --prompt, words after the flags, --prompt-file and
 * --prompt-ids; without any, standard input when it is not a terminal.
 */
async function generatePrompt(v: Values, positionals: string[]): Promise<{ text: string } | { ids: number[] }> {
  const given = (["prompt", "prompt-file", "prompt-ids"] as const).filter((f) => typeof v[f] === "string").map((f) => `--${f}`);
  if (positionals.length > 0) given.push("prompt words after the flags");
  if (given.length > 1) throw new LfmError("INVALID_ARGUMENT", `give the prompt once: ${given.join(" and ")} were both given.`);
  if (typeof v["prompt-ids"] === "string") return { ids: idList(v["prompt-ids"], "prompt-ids") };
  if (typeof v.prompt === "string") return { text: v.prompt };
  if (positionals.length > 0) return { text: positionals.join(" ") };
  if (typeof v["prompt-file"] === "string") return { text: dropFinalNewline(await readTextInput(v["prompt-file"], "--prompt-file")) };
  const piped = stdinIsTerminal() ? undefined : await readStdinText("the prompt");
  if (piped) return { text: dropFinalNewline(piped) };
  throw new LfmError(
    "INVALID_ARGUMENT",
    `give a prompt: --prompt TEXT, --prompt-file F, --prompt-ids 1,6,594,... or text on standard input${piped === "" ? " (it was empty)" : ""}.`,
  );
}

function parseMessages(raw: unknown, path: string): ChatMessage[] {
  const list = Array.isArray(raw) ? raw : (raw as { messages?: unknown })?.messages;
  if (!Array.isArray(list) || list.length === 0) {
    throw new LfmError("INVALID_ARGUMENT", `${path} must hold a non-empty JSON list of {"role", "content"} messages.`);
  }
  for (const [i, m] of list.entries()) {
    if (typeof m !== "object" || m === null || typeof (m as ChatMessage).role !== "string" || (m as ChatMessage).content === undefined) {
      throw new LfmError("INVALID_ARGUMENT", `message ${i} in ${path} needs a string "role" and a "content".`);
    }
  }
  return list as ChatMessage[];
}

/** The flags only an LFM2-VL conversation takes. */
const VL_ONLY_FLAGS = ["image", "prompt", "prompt-file", "max-input-pixels", "vision-precision"] as const;

const CHAT_OPTIONS = { ...COMMON, ...SAMPLING, ...STRUCTURED, ...TOOL_CHOICE, ...VL_CHAT_FLAGS, ...QUIET, tools: { type: "string" } } as const;

export const chatCommand: CliCommand = {
  name: "chat",
  summary: "Chat with the model: messages from a file, one --message, or interactively on a terminal.",
  help: `lfm chat --model DIR [--messages FILE.json | --message TEXT | --message-file F] [--system TEXT] [--tools FILE.json] [options]
  --messages FILE.json     The conversation: [{"role": "user", "content": "..."}, ...] ("-": standard input).
  --message TEXT           The user's message (after --messages' turns, when both are given).
  --message-file F         The user's message from a file ("-": standard input).
  --system TEXT            A system prompt before the conversation.
  --tools FILE.json        A JSON list of function schemas the model may call.
  --tool-choice C          With --tools: "required" (the reply is one call list in LFM2's call syntax),
                           "auto" (free text; a call, once started, is constrained) or a tool's NAME
                           (only calls of that tool). Without it the reply is unconstrained.
  With an LFM2-VL checkpoint: --image FILE (repeatable) puts images before the message text,
  --messages content may hold {"type": "image", "image": "path"} parts, --prompt TEXT and
  --prompt-file F are --message and --message-file's other names, and --max-input-pixels N and
  --vision-precision P work as in lfm describe (see lfm describe --help).
  Without --messages/--message/--message-file: standard input is the message when it is not a
  terminal (echo "Status?" | lfm chat); on a terminal, an interactive chat (empty line or Ctrl-D ends it).
${INPUT_HELP}
  With --json prints {"prompt_ids", "ids", "text", "tool_calls", "tool_call_errors", "finish_reason",
  "usage", "timings"} (see lfm generate --help). A tool call that does not parse does not fail the
  reply: "tool_calls" holds the calls that parse, "tool_call_errors" [{"raw", "code", "message"}] the
  others (raw: the call as written, markers included); on the terminal a warning line on stderr.
  tool_calls is null when --max-tokens cut the reply inside a call.
${SUMMARY_HELP}
  In the interactive chat the summary follows each reply.
${SAMPLING_HELP}
${STRUCTURED_HELP}
  (--tool-choice required or NAME cut short by --max-tokens is OUTPUT_INCOMPLETE too.)
  Also: --precision P, --threads N, --cache-dir DIR, --no-cache (lfm --help).`,
  options: CHAT_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, CHAT_OPTIONS);
    checkGenerationFlags(v);
    // An LFM2-VL checkpoint chats through the vision pipeline (images before the message text).
    if (typeof v.model === "string" && isLfm2VlConfig(readConfigJson(resolveModelDir(v.model)))) {
      if (v.tools !== undefined) throw new LfmError("INVALID_ARGUMENT", "--tools is not supported with an LFM2-VL checkpoint.");
      const textFlags = ["message", "message-file", "prompt", "prompt-file", "messages"];
      if (textFlags.every((f) => v[f] === undefined) && !stdinIsTerminal()) {
        // As with a text checkpoint, piped text is the message (images first, then it).
        const piped = dropFinalNewline(await readStdinText("the message"));
        if (piped !== "") v.message = piped;
      }
      return runVlChat(v, positionals, signal);
    }
    if (v.image !== undefined) {
      throw new LfmError("INVALID_ARGUMENT", `--image needs an LFM2-VL checkpoint (config model_type "lfm2_vl"); ${v.model ?? "the bundled text model"} is a text-only LFM2.`);
    }
    const vlOnly = VL_ONLY_FLAGS.find((f) => v[f] !== undefined);
    if (vlOnly) throw new LfmError("INVALID_ARGUMENT", `--${vlOnly} applies to LFM2-VL checkpoints; ${v.model ?? "the bundled text model"} is a text-only LFM2.`);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": give the user text with --message TEXT (quote it).`);
    const tools = typeof v.tools === "string" ? (readJsonFile(v.tools, "tools") as ToolDefinition[]) : undefined;
    if (tools !== undefined && !Array.isArray(tools)) throw new LfmError("INVALID_ARGUMENT", `${v.tools} must hold a JSON list of tool definitions.`);
    const structured = structuredFlags(v, tools);
    checkOneStdinReader(v, ["messages", "message-file"]);
    const messages: ChatMessage[] = [];
    if (typeof v.system === "string") messages.push({ role: "system", content: v.system });
    if (typeof v.messages === "string") messages.push(...parseMessages(await readJsonInput(v.messages, "messages"), v.messages === "-" ? "standard input" : v.messages));
    const user = await textFromFlags(v, [{ text: "message", file: "message-file" }]);
    let pipedEmpty = false;
    if (user) messages.push({ role: "user", content: user.text });
    else if (v.messages === undefined && !stdinIsTerminal()) {
      // A pipe or a file on standard input is the message: echo "Status?" | lfm chat
      const piped = await readStdinText("the message");
      if (piped !== "") messages.push({ role: "user", content: dropFinalNewline(piped) });
      pipedEmpty = piped === "";
    }
    const interactive = !messages.some((m) => m.role === "user") && stdinIsTerminal() && !v.json;
    if (!interactive && !messages.some((m) => m.role !== "system")) {
      throw new LfmError(
        "INVALID_ARGUMENT",
        `give the conversation: --messages FILE.json, --message TEXT, --message-file F or the message on standard input${pipedEmpty ? " (it was empty)" : ""} (or run on a terminal for an interactive chat).`,
      );
    }
    const model = await loadTextModel(v);
    try {
      const opts: TextGenerateOptions = { ...generationOptions(model, v, signal), responseFormat: structured.responseFormat, tools, toolChoice: structured.toolChoice };
      if (interactive) await interactiveChat(model, messages, opts, structured.mustComplete, Boolean(v.quiet));
      else {
        const output = { json: Boolean(v.json), quiet: Boolean(v.quiet), toolCalls: true };
        const { finishReason } = await runCompletion(model, model.chatIds(messages, { tools }), opts, output);
        checkComplete(structured, finishReason);
      }
      return 0;
    } finally {
      await model.release();
    }
  },
};

/**
 * A chat on the terminal. readline owns the terminal in raw mode, so Ctrl-C reaches it (its
 * "SIGINT" event), not the process: during a reply it stops the reply and returns to the prompt;
 * at the prompt it leaves, as does Ctrl-D or an empty line.
 */
async function interactiveChat(model: TextModel, messages: ChatMessage[], opts: TextGenerateOptions, mustComplete: boolean, quiet: boolean): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  let turn: AbortController | undefined;
  rl.on("SIGINT", () => {
    if (turn && !turn.signal.aborted) turn.abort();
    else rl.close();
  });
  console.error("Interactive chat — Ctrl-C stops a reply; empty line, Ctrl-D or Ctrl-C at the prompt ends.");
  try {
    for (;;) {
      let line: string;
      try {
        line = await rl.question("\x1b[1m> \x1b[0m");
      } catch {
        break; // closed: Ctrl-D, or Ctrl-C at the prompt
      }
      if (line.trim() === "") break;
      messages.push({ role: "user", content: line });
      turn = new AbortController();
      let reply = "";
      try {
        const signal = AbortSignal.any([turn.signal, ...(opts.signal ? [opts.signal] : [])]);
        const output = { json: false, quiet, toolCalls: opts.tools !== undefined };
        const out = await runCompletion(model, model.chatIds(messages, { tools: opts.tools }), { ...opts, signal }, output);
        reply = out.text;
        // One cut-short reply does not end the conversation: say so and go on.
        if (mustComplete && out.finishReason === "length") process.stderr.write("[incomplete: --max-tokens ran out before the format was complete]\n");
      } catch (e) {
        if (!(e instanceof LfmError && e.code === "ABORTED") || opts.signal?.aborted) throw e;
        process.stdout.write("[stopped]\n"); // the reply's line is ended and its summary printed
      } finally {
        turn = undefined;
      }
      messages.push({ role: "assistant", content: reply });
    }
  } finally {
    rl.close();
  }
}
