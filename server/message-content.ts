/**
 * A request's messages in the shape each kind of model takes: plain chat messages (LFM2), chat
 * messages with image bytes (LFM2-VL), an assembled prompt with audio rows (LFM2-Audio). Images
 * named by `file://` URLs are read here, only from inside the folder given with --allow-files
 * (after resolving links, so neither `..` nor a symlink leads out of it); nothing is fetched.
 */
import { open, realpath, stat } from "node:fs/promises";
import { isAbsolute, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { AssembledPrompt } from "../audio/prompt.ts";
import type { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { decodeAudio } from "../audio/audio-file.ts";
import type { ChatMessage } from "../text-core/chat.ts";
import { formatToolCalls } from "../text-core/tool-calls.ts";
import type { VlChatMessage, VlContentPart } from "../vision/vl-model.ts";
import { ApiError, badField } from "./errors.ts";
import type { RequestMessage, RequestPart } from "./chat-request.ts";
import type { ModelEntry } from "./model-registry.ts";

/** Largest image file a file:// URL may name (a data URL is bounded by the body limit). */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 ** 2;
/** Longest recording one audio part may hold, in seconds: a chat turn, not a transcription job. */
export const MAX_AUDIO_PART_SECONDS = 60;

/** The text of a message: its text parts joined, after its earlier tool calls in LFM2's syntax. */
function messageText(m: RequestMessage): string {
  const text = m.parts.map((p) => (p.type === "text" ? p.text : "")).join("");
  return m.toolCalls && m.toolCalls.length > 0 ? formatToolCalls(m.toolCalls) + text : text;
}

/** A 400 for a part the model cannot take, naming the part and the model's input modalities. */
function refusePart(entry: ModelEntry, part: Exclude<RequestPart, { type: "text" }>): ApiError {
  const what = part.type === "image" ? "images" : "audio";
  return badField(part.param, `model ${entry.id} does not take ${what} (its input modalities: ${entry.input.join(", ")}).`);
}

/** Messages for an LFM2 text model: text only. */
export function textMessages(entry: ModelEntry, messages: readonly RequestMessage[]): ChatMessage[] {
  return messages.map((m) => {
    const media = m.parts.find((p) => p.type !== "text");
    if (media) throw refusePart(entry, media);
    return { role: m.role, content: messageText(m) };
  });
}

/** Messages for LFM2-VL: text and images (their bytes read now), in the order given. */
export async function visionMessages(entry: ModelEntry, messages: readonly RequestMessage[], allowFiles: string | undefined): Promise<VlChatMessage[]> {
  const out: VlChatMessage[] = [];
  for (const m of messages) {
    if (!m.parts.some((p) => p.type === "image")) {
      const audio = m.parts.find((p) => p.type === "audio");
      if (audio) throw refusePart(entry, audio);
      out.push({ role: m.role, content: messageText(m) });
      continue;
    }
    const content: VlContentPart[] = [];
    for (const p of m.parts) {
      if (p.type === "text") content.push(p);
      else if (p.type === "image") content.push({ type: "image", image: p.source.kind === "data" ? p.source.bytes : await readAllowedFile(p.source.url, allowFiles, p.param) });
      else throw refusePart(entry, p);
    }
    out.push({ role: m.role, content });
  }
  return out;
}

/**
 * The LFM2-Audio prompt of a conversation: each message a turn of text and audio rows, then the
 * assistant's turn opened (liquid-audio's chat layout; a tool turn has no place in it).
 */
export async function audioPrompt(entry: ModelEntry, model: Lfm2AudioModel, messages: readonly RequestMessage[]): Promise<AssembledPrompt> {
  const prompt = model.newPrompt();
  for (const [i, m] of messages.entries()) {
    if (m.role === "tool" || m.toolCalls) throw badField(`messages[${i}]`, `model ${entry.id} (LFM2-Audio) takes no tool turns.`);
    prompt.newTurn(m.role);
    for (const p of m.parts) {
      if (p.type === "text") prompt.addText(p.text);
      else if (p.type === "audio") {
        const clip = await decodeAudio(p.bytes, p.param, { maxSeconds: MAX_AUDIO_PART_SECONDS });
        const audio = await model.embedAudio(clip);
        prompt.addAudio(audio.rows, audio.count);
      } else throw refusePart(entry, p);
    }
    prompt.endTurn();
  }
  return prompt.newTurn("assistant").build();
}

/**
 * The bytes of the file a `file://` URL names, when it lies inside `allowFiles` (both resolved
 * to real paths first). Without --allow-files, or outside it, a 400 naming the field.
 */
export async function readAllowedFile(url: string, allowFiles: string | undefined, param: string): Promise<Uint8Array> {
  if (allowFiles === undefined) throw badField(param, "file:// URLs are refused: the server was started without --allow-files DIR.");
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch {
    throw badField(param, "is not a valid local file:// URL (file:///absolute/path, no host).");
  }
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw new ApiError("FILE_NOT_FOUND", `${param}: no file at ${url} inside the allowed folder.`, param);
  }
  const inside = relative(await realpath(allowFiles), real);
  if (inside === "" || inside.split(sep)[0] === ".." || isAbsolute(inside)) throw badField(param, "names a file outside the folder given with --allow-files.");
  // Checked before opening: opening a FIFO or a device could block or never end.
  if (!(await stat(real)).isFile()) throw new ApiError("NOT_A_REGULAR_FILE", `${param}: ${url} is not a regular file.`, param);
  const handle = await open(real, "r");
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ApiError("NOT_A_REGULAR_FILE", `${param}: ${url} is not a regular file.`, param);
    if (info.size > MAX_IMAGE_FILE_BYTES) throw new ApiError("FILE_TOO_LARGE", `${param}: ${url} is ${info.size} bytes; the most is ${MAX_IMAGE_FILE_BYTES}.`, param);
    return new Uint8Array(await handle.readFile());
  } finally {
    await handle.close();
  }
}
