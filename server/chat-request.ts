/**
 * `POST /v1/chat/completions` bodies read into a typed request, field by field: every mistake is
 * a 400 naming the field (`param`), and a field this server does not implement is refused by
 * name rather than silently ignored — except the harmless ones in IGNORED_FIELDS (documented in
 * docs/serve.md), which change nothing a client could observe.
 */
import type { ToolDefinition } from "../text-core/chat.ts";
import type { JsonValue, ToolCall } from "../text-core/tool-calls.ts";
import type { ResponseFormat, ToolChoice } from "../text-core/structured/response-format.ts";
import { MAX_STOP_CHARS, MAX_STOP_STRINGS } from "../text-core/stop-text.ts";
import { badField } from "./errors.ts";

/** Where an image comes from: bytes in the request, or a file in the allowed folder. */
export type ImageSource = { kind: "data"; bytes: Uint8Array; mediaType: string } | { kind: "file"; url: string };

export type RequestPart = { type: "text"; text: string } | { type: "image"; source: ImageSource; param: string } | { type: "audio"; bytes: Uint8Array; format: string; param: string };

export interface RequestMessage {
  role: "system" | "user" | "assistant" | "tool";
  parts: RequestPart[];
  /** An assistant turn's earlier calls (rendered in LFM2's call syntax). */
  toolCalls?: ToolCall[];
}

export interface ChatRequest {
  model: string;
  messages: RequestMessage[];
  stream: boolean;
  includeUsage: boolean;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  stop: string[];
  tools?: ToolDefinition[];
  toolChoice?: ToolChoice;
  responseFormat?: ResponseFormat;
  /** `logprobs: true`: each new token's log-probability, with its `top` most likely alternatives (`top_logprobs`, 0–20). */
  logprobs?: { top: number };
}

/** The most alternatives `top_logprobs` may ask for (as OpenAI). */
export const MAX_TOP_LOGPROBS = 20;

/** Accepted and without effect: they describe the caller or ask for what happens anyway. */
export const IGNORED_FIELDS = ["user", "metadata", "parallel_tool_calls", "service_tier", "prompt_cache_key", "safety_identifier"] as const;

/** Accepted only at the value that means "off" (anything else is a 400 naming the field). */
const OFF_VALUES: Record<string, unknown[]> = {
  n: [1],
  frequency_penalty: [0],
  presence_penalty: [0],
  store: [false],
};

const KNOWN_FIELDS = new Set([
  "model",
  "messages",
  "stream",
  "stream_options",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "repetition_penalty",
  "seed",
  "stop",
  "tools",
  "tool_choice",
  "response_format",
  "logprobs",
  "top_logprobs",
  ...IGNORED_FIELDS,
  ...Object.keys(OFF_VALUES),
]);

/** Most new tokens one request may ask for (the model's context caps it further). */
export const MAX_COMPLETION_TOKENS = 32_768;
/** Most messages, and most parts in one message. */
const MAX_MESSAGES = 1024;
const MAX_PARTS = 256;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  return typeof v === "string" ? "a string" : typeof v === "object" ? "an object" : `${typeof v} ${String(v)}`;
}

function numberIn(body: Json, key: string, min: number, max: number, opts: { int?: boolean; aboveMin?: boolean } = {}): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  const fits = typeof v === "number" && Number.isFinite(v) && (!opts.int || Number.isInteger(v)) && (opts.aboveMin ? v > min : v >= min) && v <= max;
  if (!fits) {
    const what = opts.int ? `a whole number from ${min} to ${max}` : opts.aboveMin ? `a number above ${min} and at most ${max}` : `a number from ${min} to ${max}`;
    throw badField(key, `must be ${what}; got ${describe(v)}.`);
  }
  return v;
}

function boolean(body: Json, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badField(key, `must be true or false; got ${describe(v)}.`);
  return v;
}

/** Strict base64 (standard or URL alphabet, padding optional): Buffer.from would skip bad characters silently. */
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

export function decodeBase64(text: string, param: string): Uint8Array {
  const compact = text.replace(/\s+/g, "");
  if (compact.length === 0 || !BASE64.test(compact) || compact.length % 4 === 1) throw badField(param, "is not valid base64 data.");
  return Buffer.from(compact, "base64");
}

/** An `image_url.url`: a data URL (decoded here) or a file:// URL (read later, inside the allowed folder). */
function imageSource(url: unknown, param: string): ImageSource {
  if (typeof url !== "string" || url === "") throw badField(param, `must be a data: URL or a file:// URL; got ${describe(url)}.`);
  if (url.startsWith("data:")) {
    const m = /^data:([\w.+-]+\/[\w.+-]+)?((?:;[\w-]+=[^;,]*)*);base64,(.*)$/s.exec(url);
    if (!m) throw badField(param, 'a data URL must be base64: "data:image/png;base64,...".');
    const mediaType = m[1] ?? "application/octet-stream";
    if (!mediaType.startsWith("image/") && mediaType !== "application/octet-stream") throw badField(param, `a data URL of ${mediaType} is not an image.`);
    return { kind: "data", bytes: decodeBase64(m[3], param), mediaType };
  }
  if (url.startsWith("file:")) return { kind: "file", url };
  if (/^https?:/i.test(url)) throw badField(param, "remote images are never fetched: send the image as a data: URL (or a file:// URL inside --allow-files).");
  throw badField(param, "must be a data: URL or a file:// URL.");
}

/** Formats `input_audio.format` may name; the bytes are sniffed in any case (audio/audio-file.ts). */
const AUDIO_FORMATS = new Set(["wav", "mp3", "flac", "ogg", "opus"]);

function contentParts(content: unknown, param: string, role: string): RequestPart[] {
  if (typeof content === "string") return [{ type: "text", text: content }];
  if (content === null || content === undefined) return [];
  if (!Array.isArray(content)) throw badField(param, `must be a string or a list of parts; got ${describe(content)}.`);
  if (content.length > MAX_PARTS) throw badField(param, `holds ${content.length} parts; the most is ${MAX_PARTS}.`);
  return content.map((part, j): RequestPart => {
    const p = `${param}[${j}]`;
    if (!isObject(part)) throw badField(p, `must be an object with a "type"; got ${describe(part)}.`);
    switch (part.type) {
      case "text":
        if (typeof part.text !== "string") throw badField(`${p}.text`, `must be a string; got ${describe(part.text)}.`);
        return { type: "text", text: part.text };
      case "image_url": {
        if (role !== "user") throw badField(p, `image parts belong in user messages, not ${role} ones.`);
        const image = part.image_url;
        if (!isObject(image)) throw badField(`${p}.image_url`, `must be an object {"url": ...}; got ${describe(image)}.`);
        return { type: "image", source: imageSource(image.url, `${p}.image_url.url`), param: `${p}.image_url.url` };
      }
      case "input_audio": {
        if (role !== "user") throw badField(p, `audio parts belong in user messages, not ${role} ones.`);
        const audio = part.input_audio;
        if (!isObject(audio)) throw badField(`${p}.input_audio`, `must be an object {"data": base64, "format": "wav"}; got ${describe(audio)}.`);
        if (typeof audio.format !== "string" || !AUDIO_FORMATS.has(audio.format)) throw badField(`${p}.input_audio.format`, `must be one of ${[...AUDIO_FORMATS].join(", ")}.`);
        if (typeof audio.data !== "string") throw badField(`${p}.input_audio.data`, `must be base64 text; got ${describe(audio.data)}.`);
        return { type: "audio", bytes: decodeBase64(audio.data, `${p}.input_audio.data`), format: audio.format, param: `${p}.input_audio.data` };
      }
      default:
        throw badField(`${p}.type`, `"${String(part.type)}" parts are not supported; use "text", "image_url" or "input_audio".`);
    }
  });
}

/** An assistant message's `tool_calls` as calls (their `arguments` are JSON text in OpenAI's shape). */
function assistantToolCalls(raw: unknown, param: string): ToolCall[] {
  if (!Array.isArray(raw)) throw badField(param, `must be a list of calls; got ${describe(raw)}.`);
  return raw.map((call, k) => {
    const p = `${param}[${k}]`;
    const fn = isObject(call) ? call.function : undefined;
    if (!isObject(fn) || typeof fn.name !== "string") throw badField(`${p}.function.name`, "each call needs a function with a string name.");
    let args: unknown;
    try {
      args = typeof fn.arguments === "string" ? JSON.parse(fn.arguments === "" ? "{}" : fn.arguments) : fn.arguments;
    } catch {
      throw badField(`${p}.function.arguments`, "is not valid JSON.");
    }
    if (!isObject(args)) throw badField(`${p}.function.arguments`, "must be a JSON object.");
    return { name: fn.name, arguments: args as Record<string, JsonValue> };
  });
}

function messagesOf(raw: unknown): RequestMessage[] {
  if (!Array.isArray(raw) || raw.length === 0) throw badField("messages", "must be a non-empty list of messages.");
  if (raw.length > MAX_MESSAGES) throw badField("messages", `holds ${raw.length} messages; the most is ${MAX_MESSAGES}.`);
  return raw.map((m, i): RequestMessage => {
    const p = `messages[${i}]`;
    if (!isObject(m)) throw badField(p, `must be an object {"role", "content"}; got ${describe(m)}.`);
    // OpenAI's newer name for the system role.
    const role = m.role === "developer" ? "system" : m.role;
    if (role !== "system" && role !== "user" && role !== "assistant" && role !== "tool") {
      throw badField(`${p}.role`, `must be "system", "developer", "user", "assistant" or "tool"; got ${JSON.stringify(m.role)}.`);
    }
    const parts = contentParts(m.content, `${p}.content`, role);
    const message: RequestMessage = { role, parts };
    if (m.tool_calls !== undefined && m.tool_calls !== null) {
      if (role !== "assistant") throw badField(`${p}.tool_calls`, "only assistant messages hold tool calls.");
      message.toolCalls = assistantToolCalls(m.tool_calls, `${p}.tool_calls`);
    }
    if (m.content === undefined || (m.content === null && !message.toolCalls)) throw badField(`${p}.content`, "is missing.");
    return message;
  });
}

function toolsOf(raw: unknown): ToolDefinition[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw) || raw.length === 0) throw badField("tools", "must be a non-empty list of tools.");
  return raw.map((t, i) => {
    const p = `tools[${i}]`;
    if (!isObject(t) || t.type !== "function" || !isObject(t.function)) throw badField(p, 'must be {"type": "function", "function": {"name", "description", "parameters"}}.');
    if (typeof t.function.name !== "string" || t.function.name === "") throw badField(`${p}.function.name`, "must be a non-empty string.");
    if (t.function.parameters !== undefined && !isObject(t.function.parameters)) throw badField(`${p}.function.parameters`, "must be a JSON schema object.");
    return t as { [key: string]: JsonValue };
  });
}

function toolChoiceOf(raw: unknown, tools: ToolDefinition[] | undefined): ToolChoice | undefined {
  if (raw === undefined || raw === null) return tools ? "auto" : undefined; // OpenAI's default with tools
  if (!tools && raw !== "none") throw badField("tool_choice", "needs tools.");
  if (raw === "none" || raw === "auto" || raw === "required") return raw;
  if (isObject(raw) && raw.type === "function" && isObject(raw.function) && typeof raw.function.name === "string") return { name: raw.function.name };
  throw badField("tool_choice", 'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.');
}

function responseFormatOf(raw: unknown): ResponseFormat | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw badField("response_format", `must be an object with a "type"; got ${describe(raw)}.`);
  switch (raw.type) {
    case "text":
      return undefined;
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const spec = raw.json_schema;
      if (!isObject(spec) || !isObject(spec.schema)) throw badField("response_format.json_schema.schema", 'must be a JSON schema object ({"name": ..., "schema": {...}}).');
      return { type: "json_schema", schema: spec.schema };
    }
    default:
      throw badField("response_format.type", `must be "text", "json_object" or "json_schema"; got ${JSON.stringify(raw.type)}.`);
  }
}

function stopOf(raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  const list = typeof raw === "string" ? [raw] : raw;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string" || s.length === 0 || s.length > MAX_STOP_CHARS) || list.length > MAX_STOP_STRINGS) {
    throw badField("stop", `must be a string or a list of at most ${MAX_STOP_STRINGS} strings of 1 to ${MAX_STOP_CHARS} characters.`);
  }
  return list as string[];
}

/** The request in `body`, checked; a 400 naming the first field that is wrong. */
export function readChatRequest(body: unknown): ChatRequest {
  if (!isObject(body)) throw badField("body", `must be a JSON object; got ${describe(body)}.`);
  for (const key of Object.keys(body)) {
    if (!KNOWN_FIELDS.has(key)) throw badField(key, "is not supported by this server (docs/serve.md lists the fields it takes).");
    const off = OFF_VALUES[key];
    if (off && body[key] !== null && !off.includes(body[key])) throw badField(key, `only ${off.map((v) => JSON.stringify(v)).join(" or ")} is supported; got ${JSON.stringify(body[key])}.`);
  }
  if (typeof body.model !== "string" || body.model === "") throw badField("model", "must be the name of a model (GET /v1/models).");
  const stream = boolean(body, "stream") ?? false;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    const opts = body.stream_options;
    if (!isObject(opts)) throw badField("stream_options", "must be an object.");
    if (!stream) throw badField("stream_options", "applies only with stream: true.");
    for (const key of Object.keys(opts)) if (key !== "include_usage") throw badField(`stream_options.${key}`, "is not supported.");
    includeUsage = boolean(opts, "include_usage") ?? false;
  }
  const maxTokens = numberIn(body, "max_tokens", 0, MAX_COMPLETION_TOKENS, { int: true });
  const maxCompletion = numberIn(body, "max_completion_tokens", 0, MAX_COMPLETION_TOKENS, { int: true });
  if (maxTokens !== undefined && maxCompletion !== undefined && maxTokens !== maxCompletion) {
    throw badField("max_completion_tokens", "and max_tokens disagree; give one of them.");
  }
  const tools = toolsOf(body.tools);
  const toolChoice = toolChoiceOf(body.tool_choice, tools);
  const responseFormat = responseFormatOf(body.response_format);
  if (responseFormat && toolChoice !== undefined && toolChoice !== "none" && toolChoice !== "auto") {
    throw badField("response_format", "cannot constrain a reply that tool_choice already constrains; pick one.");
  }
  const logprobs = boolean(body, "logprobs") ?? false;
  const topLogprobs = numberIn(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, { int: true });
  if (topLogprobs !== undefined && !logprobs) throw badField("top_logprobs", "needs logprobs: true.");
  return {
    model: body.model,
    messages: messagesOf(body.messages),
    stream,
    includeUsage,
    maxTokens: maxCompletion ?? maxTokens,
    temperature: numberIn(body, "temperature", 0, 2),
    topP: numberIn(body, "top_p", 0, 1, { aboveMin: true }),
    topK: numberIn(body, "top_k", 0, 1_000_000, { int: true }),
    minP: numberIn(body, "min_p", 0, 1),
    repetitionPenalty: numberIn(body, "repetition_penalty", 0, 100, { aboveMin: true }),
    seed: numberIn(body, "seed", 0, 2 ** 32 - 1, { int: true }),
    stop: stopOf(body.stop),
    tools,
    // A response format with tools: the format constrains the reply, the tools stay in the prompt.
    toolChoice: responseFormat && toolChoice === "auto" ? undefined : toolChoice,
    responseFormat,
    ...(logprobs ? { logprobs: { top: topLogprobs ?? 0 } } : {}),
  };
}
