/**
 * The one way recordings come in: a file (or its bytes) in any supported format — WAV
 * (RIFF/RIFX/RF64), FLAC, MP3, Ogg Opus, Ogg Vorbis — to a mono float32 `AudioClip` at the
 * recording's own rate. The format is sniffed from the content, never the file name, so a FLAC
 * saved as `.wav` reads as FLAC.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { LfmError } from "../text-core/errors.ts";
import { compressedFormatOf, decodeCompressed } from "./compressed.ts";
import { type AudioClip, type ReadAudioOptions, audioFileSize, decodeWav, isWavContainer, readWavFile } from "./wav.ts";

/** Compressed files are decoded in memory: larger ones are refused (3 h of 320 kbit/s MP3 is ~430 MB). */
const MAX_COMPRESSED_BYTES = 1 << 30;

/**
 * Decodes a recording's bytes, whatever the format; `name` is what errors call it. Anything not
 * FLAC/MP3/Ogg is read as WAV, so text or an unknown container is WAV_INVALID / WAV_UNSUPPORTED
 * with a message naming what it looks like.
 */
export async function decodeAudio(bytes: Uint8Array, name = "the audio", opts: ReadAudioOptions = {}): Promise<AudioClip> {
  if (isWavContainer(bytes) || compressedFormatOf(bytes) === null) return decodeWav(bytes, name, opts);
  return decodeCompressed(bytes, name, opts);
}

/**
 * Reads a recording file: WAV, FLAC, MP3, Ogg Opus or Ogg Vorbis. FILE_NOT_FOUND when it cannot be
 * read, AUDIO_EMPTY when empty, AUDIO_TOO_LONG beyond `maxSeconds` (judged from the header first,
 * where it says), AUDIO_INVALID for damaged compressed data, WAV_INVALID / WAV_UNSUPPORTED otherwise.
 */
export async function readAudioFile(path: string, opts: ReadAudioOptions = {}): Promise<AudioClip> {
  const size = audioFileSize(path);
  if (size > MAX_COMPRESSED_BYTES) {
    const head = new Uint8Array(16);
    const fd = openSync(path, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    // A WAV is checked from its header and read as it is; a compressed file that big is refused.
    if (compressedFormatOf(head) === null) return readWavFile(path, opts);
    throw new LfmError("AUDIO_TOO_LONG", `${path} is ${(size / 2 ** 30).toFixed(1)} GiB of compressed audio; files over 1 GiB are not decoded in memory. Split it (e.g. \`ffmpeg -i ${path} -f segment -segment_time 3600 part%02d.flac\`).`);
  }
  return decodeAudio(readFileSync(path), path, opts);
}
