/**
 * `POST /v1/audio/transcriptions`: OpenAI's multipart upload (`file`, `model`, `response_format`)
 * → the library's `transcribe` (any length: 30 s windows joined on their overlap) → the transcript
 * as JSON, text, SRT, WebVTT or verbose JSON with timed segments.
 */
import { decodeAudio } from "../audio/audio-file.ts";
import type { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { transcribe } from "../pipelines/transcribe.ts";
import { toSrt, toVtt, transcriptSegments } from "../pipelines/transcript-segments.ts";
import { badField } from "./errors.ts";

export type TranscriptFormat = "json" | "text" | "srt" | "vtt" | "verbose_json";
const FORMATS: readonly TranscriptFormat[] = ["json", "text", "srt", "vtt", "verbose_json"];

export interface TranscriptionRequest {
  model: string;
  audio: Uint8Array;
  /** The uploaded file's name, as errors call it. */
  fileName: string;
  format: TranscriptFormat;
}

/** Accepted and without effect: LFM2-Audio finds the language itself. */
const IGNORED = new Set(["language"]);
/** Accepted only at the value that changes nothing (transcription is greedy, whole, segment-timed). */
const ONLY: Record<string, string> = { temperature: "0", stream: "false", "timestamp_granularities[]": "segment" };
const KNOWN = new Set(["file", "model", "response_format", ...IGNORED, ...Object.keys(ONLY)]);

/** The form's fields, checked; a 400 naming the first that is wrong. */
export async function readTranscriptionForm(form: FormData): Promise<TranscriptionRequest> {
  for (const [key, value] of form.entries()) {
    if (!KNOWN.has(key)) throw badField(key, "is not supported by this server (docs/serve.md lists the fields it takes).");
    const only = ONLY[key];
    // "0", "0.0": a number is compared as one.
    if (only !== undefined && !(typeof value === "string" && (value === only || (only === "0" && value.trim() !== "" && Number(value) === 0)))) {
      throw badField(key, `only ${only} is supported; got ${typeof value === "string" ? JSON.stringify(value) : "a file"}.`);
    }
  }
  const file = form.get("file");
  if (file === null || typeof file === "string") throw badField("file", "must be the recording, uploaded as a file part.");
  const model = form.get("model");
  if (typeof model !== "string" || model === "") throw badField("model", "must be the name of an audio model (GET /v1/models).");
  const format = form.get("response_format") ?? "json";
  if (typeof format !== "string" || !FORMATS.includes(format as TranscriptFormat)) throw badField("response_format", `must be one of ${FORMATS.join(", ")}.`);
  return { model, audio: new Uint8Array(await file.arrayBuffer()), fileName: file.name || "the upload", format: format as TranscriptFormat };
}

/** The transcript of the upload in the asked format, with its content type. */
export async function runTranscription(model: Lfm2AudioModel, req: TranscriptionRequest, signal: AbortSignal): Promise<{ contentType: string; body: string | Record<string, unknown> }> {
  const clip = await decodeAudio(req.audio, req.fileName);
  const transcript = await transcribe(model, clip, { signal });
  const text = transcript.text;
  const usage = { type: "duration", seconds: Math.ceil(transcript.durationSeconds) };
  switch (req.format) {
    case "json":
      return { contentType: "application/json", body: { text, usage } };
    case "text":
      return { contentType: "text/plain; charset=utf-8", body: `${text}\n` };
    case "srt":
      return { contentType: "application/x-subrip; charset=utf-8", body: toSrt(transcriptSegments(transcript)) };
    case "vtt":
      return { contentType: "text/vtt; charset=utf-8", body: toVtt(transcriptSegments(transcript)) };
    case "verbose_json":
      return {
        contentType: "application/json",
        body: {
          task: "transcribe",
          duration: transcript.durationSeconds,
          text,
          segments: transcriptSegments(transcript).map((s, id) => ({ id, start: s.startSeconds, end: s.endSeconds, text: s.text })),
          usage,
        },
      };
  }
}
