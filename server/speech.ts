/**
 * `POST /v1/audio/speech`: text → LFM2-Audio speech (the library's `Speaker`: sequential
 * generation, each Mimi frame decoded as it is sampled), streamed to the client as it is made —
 * a WAV whose header says "size unknown" (0xFFFFFFFF, as streaming servers write it) or raw PCM,
 * both 16-bit mono little-endian at the codec's rate (24 kHz).
 */
import type { ServerResponse } from "node:http";
import { DEFAULT_MAX_FRAMES, type Speaker } from "../pipelines/speak.ts";
import { LfmError } from "../text-core/errors.ts";
import { badField } from "./errors.ts";

export type SpeechFormat = "wav" | "pcm";

export interface SpeechRequest {
  model: string;
  input: string;
  format: SpeechFormat;
  /** The system prompt: "Perform TTS." and the request's `instructions` (LFM2.5-Audio picks its voice from them). */
  system: string;
  /** Audio frames at most (12.5 per second; an extension, as `lfm speak --max-frames`). */
  maxFrames: number;
}

/** Most frames one request may ask for: 10 minutes of speech. */
export const MAX_SPEECH_FRAMES = 7500;

/** OpenAI's limit on `input`. */
export const MAX_SPEECH_INPUT_CHARS = 4096;

/** Accepted and without effect: LFM2-Audio speaks in its default voice unless `instructions` say otherwise. */
const IGNORED = new Set(["voice"]);
const KNOWN = new Set(["model", "input", "response_format", "instructions", "speed", "stream_format", "max_frames", ...IGNORED]);

type Json = Record<string, unknown>;

export function readSpeechRequest(body: unknown): SpeechRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badField("body", "must be a JSON object.");
  const b = body as Json;
  for (const key of Object.keys(b)) if (!KNOWN.has(key)) throw badField(key, "is not supported by this server (docs/serve.md lists the fields it takes).");
  if (typeof b.model !== "string" || b.model === "") throw badField("model", "must be the name of an audio model (GET /v1/models).");
  if (typeof b.input !== "string" || b.input.trim() === "") throw badField("input", "must be the text to speak.");
  if (b.input.length > MAX_SPEECH_INPUT_CHARS) throw badField("input", `is ${b.input.length} characters; the most is ${MAX_SPEECH_INPUT_CHARS}.`);
  const format = b.response_format ?? "wav";
  if (format !== "wav" && format !== "pcm") throw badField("response_format", `must be "wav" or "pcm" (mp3, opus, aac and flac are not made here); got ${JSON.stringify(format)}.`);
  if (b.speed !== undefined && b.speed !== 1) throw badField("speed", "only 1 is supported.");
  if (b.stream_format !== undefined && b.stream_format !== "audio") throw badField("stream_format", 'only "audio" is supported (the audio streams as it is made).');
  if (b.instructions !== undefined && typeof b.instructions !== "string") throw badField("instructions", "must be a string.");
  const maxFrames = b.max_frames ?? DEFAULT_MAX_FRAMES;
  if (typeof maxFrames !== "number" || !Number.isInteger(maxFrames) || maxFrames < 1 || maxFrames > MAX_SPEECH_FRAMES) {
    throw badField("max_frames", `must be a whole number from 1 to ${MAX_SPEECH_FRAMES} (12.5 frames a second); got ${JSON.stringify(maxFrames)}.`);
  }
  const instructions = typeof b.instructions === "string" ? b.instructions.trim() : "";
  return { model: b.model, input: b.input, format, system: instructions === "" ? "Perform TTS." : `Perform TTS. ${instructions}`, maxFrames };
}

/** A 44-byte PCM WAV header whose sizes say "unknown": the data runs to the end of the stream. */
function streamingWavHeader(sampleRateHz: number): Buffer {
  const h = Buffer.alloc(44);
  h.write("RIFF", 0, "ascii");
  h.writeUInt32LE(0xffffffff, 4);
  h.write("WAVEfmt ", 8, "ascii");
  h.writeUInt32LE(16, 16); // fmt chunk size
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(sampleRateHz, 24);
  h.writeUInt32LE(sampleRateHz * 2, 28); // bytes per second
  h.writeUInt16LE(2, 32); // bytes per frame
  h.writeUInt16LE(16, 34); // bits per sample
  h.write("data", 36, "ascii");
  h.writeUInt32LE(0xffffffff, 40);
  return h;
}

function pcm16(samples: Float32Array): Buffer {
  const out = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(Math.round(Math.max(-1, Math.min(1, samples[i])) * 32767), i * 2);
  return out;
}

/**
 * Speaks `req.input` onto `res`: the headers go out with the first frame, so a failure before it is
 * still a JSON error (thrown to the caller); one after it ends the connection abruptly, which a
 * client sees as a cut download rather than a complete-looking file.
 */
export async function streamSpeech(speaker: Speaker, req: SpeechRequest, signal: AbortSignal, res: ServerResponse): Promise<{ frames: number; seconds: number }> {
  const rate = speaker.mimi.config.sampleRateHz;
  let frames = 0;
  let samples = 0;
  const write = async (chunk: Buffer) => {
    if (res.destroyed || res.write(chunk)) return;
    // Back-pressure: a slow reader slows generation instead of filling memory.
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  };
  try {
    // Forced audio start: this endpoint is for speech; a reply that opened with text would be lost here.
    for await (const event of speaker.speak(req.input, { system: req.system, maxFrames: req.maxFrames, forceAudioStart: true, signal })) {
      if (event.kind !== "audio") continue;
      if (frames === 0) {
        res.writeHead(200, { "content-type": req.format === "wav" ? "audio/wav" : "audio/pcm", "x-sample-rate": String(rate), "cache-control": "no-cache" });
        if (req.format === "wav") await write(streamingWavHeader(rate));
      }
      frames++;
      samples += event.samples.length;
      await write(pcm16(event.samples));
    }
  } catch (e) {
    if (frames > 0) {
      res.destroy();
      return { frames, seconds: samples / rate };
    }
    throw e;
  }
  if (frames === 0) throw new LfmError("AUDIO_NOT_GENERATED", "the model ended its reply without speaking; try other wording or instructions.");
  res.end();
  return { frames, seconds: samples / rate };
}
