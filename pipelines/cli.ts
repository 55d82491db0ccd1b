/**
 * `lfm` — the command-line interface. Each command parses its flags, loads what it needs and
 * prints either human-readable output or, with --json, one JSON object (the scriptable contract).
 * Errors are printed as `error [CODE]: message` with exit status 2; Ctrl-C cancels cleanly.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline/promises";
import type { ChatMessage, ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import type { GenerateOptions } from "../text-core/generate.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import { TextModel } from "../text-core/model.ts";
import { defaultThreads } from "../text-core/runtime.ts";
import { formatProfile, profileModel } from "./profile.ts";
import { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import { parseToolCalls } from "../text-core/tool-calls.ts";
import { COMMON, SAMPLING, type Values, generationOptions, idList, loadFlags, num, parse, readJsonFile } from "./cli-kit.ts";
import { EXTRA_COMMANDS } from "./commands.ts";
import { describeCommand } from "./describe-cli.ts";
import { readConfigJson } from "../text-core/config.ts";
import { isLfm2VlConfig } from "../vision/vl-config.ts";

const HELP = `lfm — Liquid AI LFM2 models on this CPU, offline.

Usage: lfm <command> [options]

Commands:
  tokenize   Text → token ids (and back).
  generate   Continue a plain prompt (text or token ids).
  chat       Chat with the model: messages from a file, one --message, or interactively on a terminal.
  profile    Where the time goes per block type (conv, attention, FFN, head) in prefill and decode.
  bench      Speed on random-weight models with the published shapes (same as npm run bench).
${EXTRA_COMMANDS.map((c) => `  ${c.name.padEnd(10)} ${c.summary}\n`).join("")}
Common options:
  --model DIR          Checkpoint folder (Hugging Face layout, or an HF cache folder models--Org--Name,
                       or Org/Name already in the HF cache). Default: the bundled tiny random model.
  --precision P        q4 (default: 4-bit weights, fastest decoding) | q8 (fastest prompts) | fp32 (matches the reference)
  --threads N          CPU threads (default: physical cores)
  --json               Print one JSON object instead of streaming text.
  --cache-dir DIR      Where built graphs are cached (default: $LFM_CACHE_DIR or ~/.cache/lfm2-edge).
  --no-cache           Build the graph in a temporary folder and do not keep it.
  -h, --help           Help for a command: lfm <command> --help

Examples (the bundled tiny model; real checkpoints: see README):
  lfm tokenize --model fixtures/text/tiny-lfm2 --json "Hello world"
  lfm generate --model fixtures/text/tiny-lfm2 --prompt "The pump" --max-tokens 16
  lfm chat --model fixtures/text/tiny-lfm2 --message "Status of pump 7?" --max-tokens 24
`;

const SAMPLING_HELP = `Sampling (defaults come from the checkpoint's generation_config.json, else greedy):
  --max-tokens N           New tokens at most (default 256)
  --temperature T          0 = greedy
  --top-k K  --top-p P  --min-p P  --repetition-penalty R  --seed S
  --stop ID[,ID...]        Extra stop token ids (the config's EOS and <|im_end|> always stop)`;

const COMMAND_HELP: Record<string, string> = {
  tokenize: `lfm tokenize --model DIR [--no-special] [--json] TEXT
  Prints the token ids of TEXT (with BOS unless --no-special); with --json: {"ids":[...]}.
  --decode IDS    Instead: decode comma-separated ids to text ({"text": ...} with --json).`,
  generate: `lfm generate --model DIR (--prompt TEXT | --prompt-ids 1,6,594,...) [options]
  Continues the prompt. Streams text, or with --json prints {"prompt_ids", "ids", "text"}.
${SAMPLING_HELP}`,
  chat: `lfm chat --model DIR [--messages FILE.json | --message TEXT] [--system TEXT] [--tools FILE.json] [options]
  FILE.json: [{"role": "user", "content": "..."}, ...]; tools: a JSON list of function schemas.
  With an LFM2-VL checkpoint: --image FILE (repeatable) puts images before the message text, and
  --messages content may hold {"type": "image", "image": "path"} parts, and --vision-precision P
  sets the vision tower's precision (see lfm describe --help).
  Without --messages/--message on a terminal: an interactive chat (empty line or Ctrl-D ends it).
  With --json prints {"prompt_ids", "ids", "text", "tool_calls"}.
${SAMPLING_HELP}`,
};

COMMAND_HELP.profile = `lfm profile --model DIR [--precision q4] [--prompt-tokens 512] [--decode-steps 64] [--threads N] [--json]
  Runs one prefill and some decode steps with onnxruntime's profiler and prints the time share of
  each block type (conv, attention, FFN, head, embedding), the session overhead, the top operators,
  and the peak RSS.`;
COMMAND_HELP.bench = `lfm bench [--models lfm2-350m,lfm2-1.2b] [--precisions q4,q8,fp32] [--runs 3] [--threads 2] [--prompt 512] [--decode 128]
  Builds random-weight checkpoints with the published shapes (fixtures/real-configs) in the cache
  folder, measures prefill/decode tokens per second, time to first token and peak RSS (medians),
  and writes bench/results/<date>-<machine>.json.`;

/** The bundled tiny model: what runs when no --model is given, so a fresh clone works offline. */
export const BUNDLED_MODEL = join(import.meta.dirname, "..", "fixtures", "text", "tiny-lfm2");

function requireModel(v: Values): string {
  if (typeof v.model === "string") return v.model;
  if (!v.json) process.stderr.write(`(no --model given: using the bundled tiny random model ${BUNDLED_MODEL}; its text is random)\n`);
  return BUNDLED_MODEL;
}

async function loadFor(v: Values): Promise<TextModel> {
  return TextModel.load(requireModel(v), {
    ...loadFlags(v),
  });
}

/** Streams to stdout, or collects and prints the JSON contract. */
async function runCompletion(model: TextModel, promptIds: number[], opts: GenerateOptions, json: boolean, withToolCalls: boolean): Promise<string> {
  if (json) {
    const out = await model.complete(promptIds, opts);
    const result: Record<string, unknown> = { prompt_ids: out.promptIds, ids: out.ids, text: out.text };
    if (withToolCalls) result.tool_calls = parseToolCalls(model.tokenizer.decode(out.ids)).toolCalls;
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return out.text;
  }
  let text = "";
  for await (const t of model.stream(promptIds, opts)) {
    text += t.text;
    process.stdout.write(t.text);
  }
  process.stdout.write("\n");
  return text;
}

async function cmdTokenize(args: string[]): Promise<void> {
  const { values: v, positionals } = parse(args, { ...COMMON, "no-special": { type: "boolean" }, decode: { type: "string" } });
  if (v.help) return void console.log(COMMAND_HELP.tokenize);
  const tokenizer = await Lfm2Tokenizer.fromDir(resolveModelDir(requireModel(v)));
  if (typeof v.decode === "string") {
    const text = tokenizer.decode(idList(v.decode, "decode"), { skipSpecialTokens: Boolean(v["no-special"]) });
    console.log(v.json ? JSON.stringify({ text }) : text);
    return;
  }
  if (positionals.length !== 1) throw new LfmError("INVALID_ARGUMENT", "tokenize takes exactly one TEXT argument (quote it).");
  const ids = tokenizer.encode(positionals[0], { addSpecialTokens: !v["no-special"] });
  console.log(v.json ? JSON.stringify({ ids }) : ids.join(" "));
}

async function cmdGenerate(args: string[], signal: AbortSignal): Promise<void> {
  const { values: v, positionals } = parse(args, { ...COMMON, ...SAMPLING, prompt: { type: "string" }, "prompt-ids": { type: "string" } });
  if (v.help) return void console.log(COMMAND_HELP.generate);
  const promptText = (v.prompt as string | undefined) ?? (positionals.length ? positionals.join(" ") : undefined);
  if (promptText === undefined && v["prompt-ids"] === undefined) {
    throw new LfmError("INVALID_ARGUMENT", "give a prompt: --prompt TEXT or --prompt-ids 1,6,594,...");
  }
  const model = await loadFor(v);
  try {
    const promptIds = v["prompt-ids"] !== undefined ? idList(v["prompt-ids"] as string, "prompt-ids") : model.encodePrompt(promptText as string);
    if (promptIds.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty.");
    if (!v.json) process.stdout.write(model.tokenizer.decode(promptIds, { skipSpecialTokens: true }));
    await runCompletion(model, promptIds, generationOptions(model, v, signal), Boolean(v.json), false);
  } finally {
    await model.release();
  }
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

/** The value of `--model` in raw arguments (before a command's own parsing). */
function modelArg(args: string[]): string | undefined {
  const i = args.findIndex((a) => a === "--model" || a.startsWith("--model="));
  if (i < 0) return undefined;
  return args[i].startsWith("--model=") ? args[i].slice("--model=".length) : args[i + 1];
}

async function cmdChat(args: string[], signal: AbortSignal): Promise<void> {
  // An LFM2-VL checkpoint chats through the vision pipeline (images before the message text).
  const modelPath = modelArg(args);
  const isVl = modelPath !== undefined && !args.includes("--help") && !args.includes("-h") && isLfm2VlConfig(readConfigJson(resolveModelDir(modelPath)));
  if (isVl) {
    const status = await describeCommand.run(args, signal);
    if (status !== 0) process.exitCode = status;
    return;
  }
  if (args.some((a) => a === "--image" || a.startsWith("--image="))) {
    throw new LfmError("INVALID_ARGUMENT", `--image needs an LFM2-VL checkpoint (config model_type "lfm2_vl"); ${modelPath ?? "the bundled text model"} is a text-only LFM2.`);
  }
  const { values: v } = parse(args, {
    ...COMMON,
    ...SAMPLING,
    messages: { type: "string" },
    message: { type: "string" },
    system: { type: "string" },
    tools: { type: "string" },
  });
  if (v.help) return void console.log(COMMAND_HELP.chat);
  const tools = typeof v.tools === "string" ? (readJsonFile(v.tools, "tools") as ToolDefinition[]) : undefined;
  if (tools !== undefined && !Array.isArray(tools)) throw new LfmError("INVALID_ARGUMENT", `${v.tools} must hold a JSON list of tool definitions.`);
  const messages: ChatMessage[] = [];
  if (typeof v.system === "string") messages.push({ role: "system", content: v.system });
  if (typeof v.messages === "string") messages.push(...parseMessages(readJsonFile(v.messages, "messages"), v.messages));
  if (typeof v.message === "string") messages.push({ role: "user", content: v.message });
  const interactive = !messages.some((m) => m.role === "user") && process.stdin.isTTY && !v.json;
  if (!interactive && !messages.some((m) => m.role !== "system")) {
    throw new LfmError("INVALID_ARGUMENT", "give the conversation: --messages FILE.json or --message TEXT (or run on a terminal for an interactive chat).");
  }
  const model = await loadFor(v);
  try {
    const opts = generationOptions(model, v, signal);
    if (!interactive) {
      await runCompletion(model, model.chatIds(messages, { tools }), opts, Boolean(v.json), true);
      return;
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    console.error("Interactive chat — empty line or Ctrl-D to end, Ctrl-C stops a reply.");
    for (;;) {
      let line: string;
      try {
        line = await rl.question("\x1b[1m> \x1b[0m");
      } catch {
        break;
      }
      if (line.trim() === "") break;
      messages.push({ role: "user", content: line });
      const turn = new AbortController();
      const onSigint = () => turn.abort();
      process.once("SIGINT", onSigint);
      let reply = "";
      try {
        reply = await runCompletion(model, model.chatIds(messages, { tools }), { ...opts, signal: turn.signal }, false, false);
      } catch (e) {
        if (!(e instanceof LfmError && e.code === "ABORTED")) throw e;
        process.stdout.write("\n[stopped]\n");
      } finally {
        process.off("SIGINT", onSigint);
      }
      messages.push({ role: "assistant", content: reply });
    }
    rl.close();
  } finally {
    await model.release();
  }
}

async function cmdProfile(args: string[]): Promise<void> {
  const { values: v } = parse(args, { ...COMMON, "prompt-tokens": { type: "string" }, "decode-steps": { type: "string" } });
  if (v.help) return void console.log(COMMAND_HELP.profile);
  if (v["no-cache"]) throw new LfmError("INVALID_ARGUMENT", "profile reads the cached graph; drop --no-cache.");
  const model = await loadFor(v);
  try {
    const graphPath = model.runtime.graphPath;
    if (!graphPath) throw new LfmError("INVALID_ARGUMENT", "this model was loaded without a graph file to profile.");
    const threads = num(v, "threads", "int") ?? defaultThreads();
    const report = await profileModel(model, graphPath, num(v, "prompt-tokens", "int") ?? 512, num(v, "decode-steps", "int") ?? 64, threads);
    console.log(v.json ? JSON.stringify(report) : formatProfile(report));
  } finally {
    await model.release();
  }
}

function cmdBench(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(COMMAND_HELP.bench);
    return 0;
  }
  const root = join(import.meta.dirname, "..");
  const r = spawnSync(process.execPath, [join(root, "bin/run-ts.mjs"), join(root, "bench/run.ts"), ...args], { stdio: "inherit" });
  return r.status ?? 1;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    switch (command) {
      case undefined:
      case "-h":
      case "--help":
      case "help":
        console.log(HELP);
        return 0;
      case "tokenize":
        await cmdTokenize(rest);
        return 0;
      case "generate":
        await cmdGenerate(rest, controller.signal);
        return 0;
      case "chat":
        await cmdChat(rest, controller.signal);
        return 0;
      case "profile":
        await cmdProfile(rest);
        return 0;
      case "bench":
        return cmdBench(rest);
      default: {
        const extra = EXTRA_COMMANDS.find((c) => c.name === command);
        if (extra) {
          if (rest.includes("--help") || rest.includes("-h")) {
            console.log(extra.help);
            return 0;
          }
          return await extra.run(rest, controller.signal);
        }
        const names = ["tokenize", "generate", "chat", "profile", "bench", ...EXTRA_COMMANDS.map((c) => c.name)];
        throw new LfmError("INVALID_ARGUMENT", `unknown command "${command}". Commands: ${names.join(", ")} (lfm --help).`);
      }
    }
  } catch (e) {
    if (e instanceof LfmError) {
      process.stderr.write(`error [${e.code}]: ${e.message}\n`);
      return e.code === "ABORTED" ? 130 : 2;
    }
    process.stderr.write(`internal error: ${(e as Error)?.stack ?? String(e)}\nPlease report this with the command you ran.\n`);
    return 1;
  } finally {
    process.off("SIGINT", onSigint);
  }
}
