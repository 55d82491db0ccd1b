/**
 * `lfm describe`: images (+ a question) → text through an LFM2-VL checkpoint. Also takes a whole
 * conversation (`--messages FILE.json` whose content parts may be `{"type": "image", "image":
 * "path"}`). With --json it prints `{"prompt_ids", "ids", "text", "finish_reason", "usage", "timings"}` —
 * `prompt_ids` with the image placeholders expanded — a scriptable contract kept stable.
 */
import { accessSync, constants } from "node:fs";
import type { ParseArgsConfig } from "node:util";
import { LfmError } from "../text-core/errors.ts";
import { VlModel, type VlChatMessage, type VlContentPart, DEFAULT_DESCRIBE_PROMPT } from "../vision/vl-model.ts";
import { modelOrBundled } from "./bundled.ts";
import { GenerationClock, QUIET, SUMMARY_HELP, printSummary, runReply, summaryJson } from "./generation-output.ts";
import {
  COMMON,
  RANGES,
  SAMPLING,
  SAMPLING_HELP,
  STRUCTURED,
  STRUCTURED_HELP,
  type CliCommand,
  type Values,
  checkComplete,
  checkGenerationFlags,
  generationOptions,
  loadFlags,
  num,
  parse,
  precisionOf,
  readJsonInput,
  structuredFlags,
} from "./cli-kit.ts";
import { MAX_INPUT_BYTES, checkOneStdinReader, textFromFlags } from "./input-source.ts";


const HELP = `lfm describe --model DIR IMAGE... [--prompt TEXT] [--json] [options]
  Describes one or more images (JPEG, PNG, WebP, TIFF, GIF) with an LFM2-VL checkpoint
  (e.g. LiquidAI/LFM2-VL-450M or LFM2-VL-1.6B), or answers --prompt about them. The images come
  first in the user turn, in the order given, then the prompt. Streams the answer.
  --prompt TEXT          The question (default "${DEFAULT_DESCRIBE_PROMPT}"); --message TEXT is the same.
  --prompt-file F        The question from a file ("-": standard input); --message-file F is the same.
                         A regular UTF-8 file of at most ${MAX_INPUT_BYTES / 2 ** 20} MiB; its final line break is dropped.
  --image FILE           Another image (repeatable; same as a positional IMAGE).
  --system TEXT          A system prompt.
  --messages FILE.json   A whole conversation instead: [{"role": "user", "content": [{"type": "image",
                         "image": "scan.jpg"}, {"type": "text", "text": "Total?"}]}, ...]; image paths
                         are relative to the current folder. IMAGEs given as well go before the text
                         of the last user turn. "-": read it from standard input.
  --json                 Print {"prompt_ids", "ids", "text", "finish_reason"} (prompt_ids with the image
                         placeholders expanded; finish_reason "stop" or "length" = --max-tokens ran out).
  --max-input-pixels N   Refuse larger images (default 100000000; 1 to ${RANGES.maxInputPixels.max}), checked before decoding.
  --precision P          q4 (default) | q8 | fp32 (reference parity) for the language core; the vision
                         tower follows it at fp32 and is q8 otherwise (fastest for image tiles).
  --vision-precision P   The vision tower's own: q8 | q4 (least memory, slowest) | fp32.
${SAMPLING_HELP}
${STRUCTURED_HELP}
${SUMMARY_HELP}
  Also: --threads N, --cache-dir DIR, --no-cache.`;

/** `--messages` content, checked: strings, or lists of text and image parts. */
function parseMessages(raw: unknown, path: string): VlChatMessage[] {
  const list = Array.isArray(raw) ? raw : (raw as { messages?: unknown })?.messages;
  if (!Array.isArray(list) || list.length === 0) {
    throw new LfmError("INVALID_ARGUMENT", `${path} must hold a non-empty JSON list of {"role", "content"} messages.`);
  }
  return list.map((m, i) => {
    const { role, content } = (m ?? {}) as { role?: unknown; content?: unknown };
    if (typeof role !== "string") throw new LfmError("INVALID_ARGUMENT", `message ${i} in ${path} needs a string "role".`);
    if (typeof content === "string") return { role, content };
    if (!Array.isArray(content)) throw new LfmError("INVALID_ARGUMENT", `message ${i} in ${path}: "content" must be a string or a list of parts.`);
    const parts = content.map((p): VlContentPart => {
      const part = (p ?? {}) as { type?: unknown; text?: unknown; image?: unknown };
      if (part.type === "text" && typeof part.text === "string") return { type: "text", text: part.text };
      if (part.type === "image" && typeof part.image === "string") return { type: "image", image: part.image };
      throw new LfmError("INVALID_ARGUMENT", `message ${i} in ${path}: parts are {"type": "text", "text": "..."} or {"type": "image", "image": "path"}; got ${JSON.stringify(p)}.`);
    });
    return { role, content: parts };
  });
}

/** The conversation the flags describe. */
async function conversation(v: Values, images: string[]): Promise<VlChatMessage[]> {
  const messages: VlChatMessage[] = [];
  if (typeof v.system === "string") messages.push({ role: "system", content: v.system });
  const imageParts = images.map((image): VlContentPart => ({ type: "image", image }));
  if (typeof v.messages === "string") {
    messages.push(...parseMessages(await readJsonInput(v.messages, "messages"), v.messages === "-" ? "standard input" : v.messages));
    if (typeof v.prompt === "string") messages.push({ role: "user", content: [...imageParts, { type: "text", text: v.prompt }] });
    else if (imageParts.length > 0) {
      const last = messages.map((m) => m.role).lastIndexOf("user");
      if (last < 0) throw new LfmError("INVALID_ARGUMENT", `${v.messages} has no user turn to put the images in; add --prompt TEXT.`);
      const m = messages[last];
      messages[last] = { role: m.role, content: [...imageParts, ...(typeof m.content === "string" ? [{ type: "text" as const, text: m.content }] : m.content)] };
    }
    return messages;
  }
  if (imageParts.length === 0) throw new LfmError("INVALID_ARGUMENT", "give at least one image: lfm describe --model DIR IMAGE... (or --messages FILE.json).");
  messages.push({ role: "user", content: [...imageParts, { type: "text", text: (v.prompt as string | undefined) ?? DEFAULT_DESCRIBE_PROMPT }] });
  return messages;
}

function checkReadable(file: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw new LfmError("FILE_NOT_FOUND", `Image file ${file} not found or not readable.`);
  }
}

/** The flags of an LFM2-VL conversation (lfm describe; lfm chat takes them too for an LFM2-VL checkpoint). */
export const VL_CHAT_FLAGS = {
  prompt: { type: "string" },
  "prompt-file": { type: "string" },
  message: { type: "string" }, // lfm chat's name for the user text
  "message-file": { type: "string" },
  image: { type: "string", multiple: true },
  system: { type: "string" },
  messages: { type: "string" },
  "max-input-pixels": { type: "string" },
  "vision-precision": { type: "string" },
} as const satisfies ParseArgsConfig["options"];

/** Runs the conversation that parsed VL_CHAT_FLAGS (+ COMMON, SAMPLING, QUIET) and positional IMAGEs describe. */
export async function runVlChat(v: Values, positionals: string[], signal: AbortSignal): Promise<number> {
  const images = [...positionals, ...((v.image as unknown as string[] | undefined) ?? [])];
  // Every flag is checked before anything is read or loaded.
  checkGenerationFlags(v);
  const maxInputPixels = num(v, "max-input-pixels", RANGES.maxInputPixels);
  const visionPrecision = precisionOf(v, "vision-precision");
  const structured = structuredFlags(v);
  checkOneStdinReader(v, ["messages", "prompt-file", "message-file"]);
  const question = await textFromFlags(v, [
    { text: "prompt", file: "prompt-file" },
    { text: "message", file: "message-file" },
  ]);
  if (question) v.prompt = question.text;
  const messages = await conversation(v, images);
  // A missing image fails fast, before any model is built.
  for (const m of messages) {
    if (typeof m.content === "string") continue;
    for (const p of m.content) if (p.type === "image" && typeof p.image === "string") checkReadable(p.image);
  }
  const load = loadFlags(v);
  const modelDir = modelOrBundled(v, "vision");
  const model = await VlModel.load(modelDir, {
    ...load,
    visionPrecision,
    image: maxInputPixels === undefined ? {} : { maxInputPixels },
  });
  try {
    const opts = { ...generationOptions(model, v, signal), responseFormat: structured.responseFormat };
    const prompt = await model.prepareChat(messages);
    const clock = new GenerationClock(prompt.promptIds.length);
    const quiet = Boolean(v.quiet);
    const reply = await runReply(model.stream(prompt, opts), clock, { stdout: !v.json, quiet });
    if (v.json) {
      // The text as the library's complete() gives it (the whole reply decoded at once).
      const text = model.tokenizer.decode(reply.ids, { skipSpecialTokens: true });
      const result = { prompt_ids: prompt.promptIds, ids: reply.ids, text, finish_reason: reply.finishReason, ...summaryJson(reply.stats) };
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      printSummary(reply.stats, quiet);
    }
    checkComplete(structured, reply.finishReason);
    return 0;
  } finally {
    await model.release();
  }
}

const DESCRIBE_OPTIONS = { ...COMMON, ...SAMPLING, ...STRUCTURED, ...VL_CHAT_FLAGS, ...QUIET } as const;

export const describeCommand: CliCommand = {
  name: "describe",
  summary: "Describe images or answer questions about them (LFM2-VL).",
  help: HELP,
  options: DESCRIBE_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values, positionals } = parse(args, DESCRIBE_OPTIONS);
    return runVlChat(values, positionals, signal);
  },
};
