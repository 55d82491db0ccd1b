/**
 * The one way recordings come in: a file (or its bytes) in any supported format — WAV
 * (RIFF/RIFX/RF64), FLAC, MP3, Ogg Opus, Ogg Vorbis — to a mono float32 `AudioClip` at the
 * recording's own rate. The format is sniffed from the content, never the file name, so a FLAC
 * saved as `.wav` reads as FLAC, and a `.mp3` that is text is called text.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { LfmError } from "../text-core/errors.ts";
import { collectAudioStream, openAudioStream, WHOLE_READ_BYTES } from "./audio-stream.ts";
import { compressedFormatOf, decodeCompressed } from "./compressed.ts";
import { type AudioClip, type ReadAudioOptions, audioFileSize, decodeWav, notAudio, readWavFile } from "./wav.ts";

/** A RIFF-family header: read as WAV, whose reader names what is wrong with it. */
function riffFamily(bytes: Uint8Array): boolean {
  const id = String.fromCharCode(...bytes.subarray(0, 4));
  return id === "RIFF" || id === "RIFX" || id === "RF64";
}

/**
 * Decodes a recording's bytes, whatever the format; `name` is what errors call it. Bytes in none of
 * the formats are WAV_UNSUPPORTED (another audio container: MP4/M4A, AIFF, WebM) or WAV_INVALID,
 * with a message saying what they look like and which formats are accepted.
 */
export async function decodeAudio(bytes: Uint8Array, name = "the audio", opts: ReadAudioOptions = {}): Promise<AudioClip> {
  if (riffFamily(bytes)) return decodeWav(bytes, name, opts);
  if (compressedFormatOf(bytes) !== null) return decodeCompressed(bytes, name, opts);
  throw notAudio(bytes, name);
}

/**
 * Reads a recording file: WAV, FLAC, MP3, Ogg Opus or Ogg Vorbis. FILE_NOT_FOUND when it cannot be
 * read, AUDIO_EMPTY when empty, AUDIO_TOO_LONG beyond `maxSeconds` (judged from the header first,
 * where it says), AUDIO_INVALID for damaged compressed data, WAV_INVALID / WAV_UNSUPPORTED otherwise.
 * Files over 1 GiB are read in pieces (`openAudioStream`), so only the decoded samples are held;
 * to keep memory flat whatever the length, read blocks from `openAudioStream` instead.
 */
export async function readAudioFile(path: string, opts: ReadAudioOptions = {}): Promise<AudioClip> {
  const size = audioFileSize(path);
  if (size > WHOLE_READ_BYTES) return collectAudioStream(await openAudioStream(path, opts));
  try {
    const head = new Uint8Array(16);
    const fd = openSync(path, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    // A WAV's length is judged from its header before it is read whole.
    if (riffFamily(head)) return readWavFile(path, opts);
    return await decodeAudio(readFileSync(path), path, opts);
  } catch (e) {
    if (e instanceof LfmError) throw e;
    throw new LfmError("FILE_NOT_FOUND", `cannot read the audio file ${path}: ${(e as Error).message}.`, { cause: e });
  }
}
