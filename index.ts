/**
 * lfm2-edge — Liquid AI's LFM2 family on a CPU, offline, from the published checkpoints.
 *
 *   const lm = await loadModel("/models/LFM2-350M");
 *   for await (const t of lm.chat([{ role: "user", content: "Hi" }], { maxTokens: 64 })) process.stdout.write(t.text);
 */
import { type LoadOptions, TextModel } from "./text-core/model.ts";

export { LfmError, isLfmError, type LfmErrorCode } from "./text-core/errors.ts";
export { TextModel, type LoadOptions, type Completion } from "./text-core/model.ts";
export type { ChatMessage, ContentPart, ToolDefinition } from "./text-core/chat.ts";
export { parseToolCalls, formatToolCalls, type ToolCall } from "./text-core/tool-calls.ts";
export type { GenerateOptions } from "./text-core/generate.ts";
export type { SamplingOptions } from "./text-core/sampler.ts";
export type { Lfm2Config } from "./text-core/config.ts";
export { Lfm2Tokenizer } from "./text-core/tokenizer.ts";

/** Loads a checkpoint folder (HF layout or HF cache folder). */
export function loadModel(path: string, opts: LoadOptions = {}): Promise<TextModel> {
  return TextModel.load(path, opts);
}
