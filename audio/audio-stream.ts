/**
 * Recordings read from disk in bounded pieces: `openAudioStream` checks a file's header (format,
 * rate, declared length) and then yields mono float32 blocks, optionally resampled, holding only a
 * piece of the file and a resampler's few taps at a time — memory flat in the recording's length,
 * for files of any size (RF64, and RIFF whose data size says 0xFFFFFFFF, read past 4 GiB).
 *
 * The blocks concatenated equal what `readAudioFile` (and then `resample`) give for the whole
 * file: the WAV data chunk is converted by the same `decodeLinear`, compressed files go through the
 * same decoders fed piece by piece, and `StreamingResampler` applies `resample`'s taps in its order.
 *
 * What does not stream: A-law, µ-law and IMA ADPCM WAVs are decoded whole by wavefile, so they are
 * accepted up to `WHOLE_READ_BYTES` (1 GiB, e.g. 18 h of 16 kHz A-law) and refused beyond with
 * WAV_UNSUPPORTED, before anything is decoded.
 */
import { type FileHandle, open } from "node:fs/promises";
import { LfmError } from "../text-core/errors.ts";
import { COMPRESSED_TAIL_BYTES, type CompressedStreamInfo, compressedFormatOf, compressedStreamInfo, decodeCompressedPieces, mp3HeadBytes } from "./compressed.ts";
import { resampleBlocks } from "./resample.ts";
import {
  type AudioClip,
  DEFAULT_MAX_SECONDS,
  type ReadAudioOptions,
  type WavFmt,
  audioFileSize,
  checkFormat,
  declaredSeconds,
  decodeLinear,
  decodeWav,
  encodingOf,
  isWavContainer,
  notAudio,
  tooLong,
} from "./wav.ts";

/** Files up to this size may be read whole (the companded WAV encodings, `readAudioFile`'s fast path). */
export const WHOLE_READ_BYTES = 1 << 30;
/** WAV data read per piece (whole frames of it). */
const WAV_PIECE_BYTES = 1 << 20;
/** Compressed bytes fed to the decoder per piece: 64 KiB of 8 kbit/s MP3 is ~1 min of audio. */
const COMPRESSED_PIECE_BYTES = 1 << 16;
/** First bytes read to tell the format (an MP3's ID3 tag, cover art included, may need more). */
const HEAD_BYTES = 1 << 16;
const MAX_HEAD_BYTES = 64 << 20;
/** RIFF's "size unknown" (streaming recorders) and RF64's "see the ds64 chunk". */
const SIZE_UNKNOWN = 0xffffffff;

export interface AudioStreamOptions extends ReadAudioOptions {
  /** Rate of the blocks yielded, Hz (default: the recording's own); resampled block by block. */
  targetRateHz?: number;
}

/** A recording being read: one pass of mono float32 blocks (`for await`), then closed. */
export interface AudioStream extends AsyncIterable<Float32Array> {
  /** The file, as messages name it. */
  readonly name: string;
  /** Rate of the blocks yielded. */
  readonly sampleRateHz: number;
  /** The recording's own rate. */
  readonly sourceSampleRateHz: number;
  /** As `AudioClip.encoding`: "pcm16", "float32", …, or "flac", "mp3", "ogg-opus", "ogg-vorbis". */
  readonly encoding: string;
  /** Length the header declares, seconds; null when it does not (an estimate for an MP3 without a frame count). */
  readonly declaredSeconds: number | null;
  /** Source channels: from the header for WAV, from the first decoded block otherwise (null before). */
  readonly channels: number | null;
  /** Releases the file (also done when the blocks run out, fail, or the loop is left early). */
  close(): Promise<void>;
}

/** Where a WAV's samples are and how they are stored, from its chunks. */
interface WavLayout {
  fmt: WavFmt;
  encoding: string;
  bigEndian: boolean;
  dataStart: number;
  dataBytes: number;
}

/** Reads exactly `length` bytes at `position` (fewer only at the end of the file), into `into` when given. */
async function readAt(file: FileHandle, position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
  const out = into && into.length >= length ? into.subarray(0, length) : new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(out, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? out : out.subarray(0, done);
}

const ascii = (b: Uint8Array, from: number, to: number) => String.fromCharCode(...b.subarray(from, Math.min(to, b.length)));

function truncated(name: string, declared: number, held: number): LfmError {
  return new LfmError(
    "WAV_INVALID",
    `${name} is truncated: the header declares ${declared} bytes of audio but the file holds ${held}. ` +
      "Re-copy or re-export it (a recording still being written, or an interrupted download?).",
  );
}

/**
 * Walks a WAV's chunks by their headers (so a 4 GiB data chunk is never read to find them): the
 * "fmt " chunk, RF64's "ds64" sizes, and where the "data" chunk starts and ends.
 */
async function wavLayout(file: FileHandle, fileBytes: number, head: Uint8Array, name: string, opts: ReadAudioOptions): Promise<WavLayout> {
  const container = ascii(head, 0, 4);
  const bigEndian = container === "RIFX";
  const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  let fmt: WavFmt | null = null;
  let ds64DataBytes: number | null = null;
  let data: { start: number; size: number } | null = null;
  // Until both the fmt and the data chunk are found (fmt normally comes first; not always).
  for (let pos = 12; fmt === null || data === null; ) {
    if (pos + 8 > fileBytes) {
      throw new LfmError("WAV_INVALID", `${name}: the WAV has no ${fmt === null ? "fmt" : "data"} chunk (truncated or damaged?). Re-export the recording.`);
    }
    const header = await readAt(file, pos, 8);
    const id = ascii(header, 0, 4);
    const size = view(header).getUint32(4, !bigEndian);
    if (id === "ds64" && container === "RF64") {
      const body = view(await readAt(file, pos + 8, Math.min(size, 16)));
      if (body.byteLength < 16) throw new LfmError("WAV_INVALID", `${name}: the RF64 ds64 chunk is cut off. Re-export the recording.`);
      ds64DataBytes = body.getUint32(8, true) + body.getUint32(12, true) * 2 ** 32;
    } else if (id === "fmt ") {
      const bytes = await readAt(file, pos + 8, Math.min(size, 40));
      if (bytes.length < 16) throw new LfmError("WAV_INVALID", `${name}: the WAV fmt chunk is cut off (${bytes.length} bytes). Re-export the recording.`);
      const b = view(bytes);
      const little = !bigEndian;
      fmt = {
        audioFormat: b.getUint16(0, little),
        numChannels: b.getUint16(2, little),
        sampleRate: b.getUint32(4, little),
        blockAlign: b.getUint16(12, little),
        bitsPerSample: b.getUint16(14, little),
        // As wavefile: the extensible format's sub-format GUID, its first 32 bits the format code.
        subformat: size > 20 && bytes.length >= 28 ? [b.getUint32(24, little)] : [],
      };
    } else if (id === "data") {
      data = { start: pos + 8, size };
      // Its size unknown (RF64's is in ds64, read before it), nothing after it can be found.
      if (size === SIZE_UNKNOWN && fmt === null) throw new LfmError("WAV_INVALID", `${name}: the WAV has no fmt chunk before its data of unknown size. Re-export the recording.`);
    }
    // Chunks are padded to an even length.
    pos += 8 + size + (size & 1);
  }
  checkFormat(fmt, name);
  const encoding = encodingOf(fmt, name);
  const dataStart = data.start;
  const linear = encoding.startsWith("pcm") || encoding.startsWith("float");
  if (linear && fmt.blockAlign !== (fmt.bitsPerSample / 8) * fmt.numChannels) {
    throw new LfmError(
      "WAV_INVALID",
      `${name}: the WAV header is inconsistent (block align ${fmt.blockAlign} for ${fmt.numChannels} channels of ${fmt.bitsPerSample} bits). Re-export the recording.`,
    );
  }
  let dataBytes: number;
  if (data.size === SIZE_UNKNOWN && container === "RF64" && ds64DataBytes !== null) dataBytes = ds64DataBytes;
  // A recorder that never went back to fill the size in: the data runs to the end, in whole frames.
  else if (data.size === SIZE_UNKNOWN) dataBytes = fileBytes - dataStart - (linear ? (fileBytes - dataStart) % fmt.blockAlign : 0);
  else dataBytes = data.size;
  const seconds = declaredSeconds(fmt, dataBytes);
  const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
  if (seconds > maxSeconds) throw tooLong(name, seconds, maxSeconds);
  if (dataStart + dataBytes > fileBytes) throw truncated(name, dataBytes, fileBytes - dataStart);
  if (linear && dataBytes % fmt.blockAlign !== 0) throw truncated(name, dataBytes, dataBytes - (dataBytes % fmt.blockAlign));
  if (dataBytes === 0) throw new LfmError("AUDIO_EMPTY", `${name} holds no audio samples (zero-length recording).`);
  return { fmt, encoding, bigEndian, dataStart, dataBytes };
}

/**
 * Reads a file handle's bytes [from, to) in pieces of `pieceBytes`. `reuse`: each piece is read
 * into the same buffer (for a consumer done with a piece before it asks for the next), so reading
 * leaves no garbage behind.
 */
async function* pieces(file: FileHandle, from: number, to: number, pieceBytes: number, name: string, reuse = false): AsyncGenerator<Uint8Array> {
  const buffer = reuse ? new Uint8Array(Math.min(pieceBytes, to - from)) : undefined;
  for (let at = from; at < to; at += pieceBytes) {
    const want = Math.min(pieceBytes, to - at);
    const piece = await readAt(file, at, want, buffer);
    // The file shrank while it was being read.
    if (piece.length < want) throw truncated(name, to - from, at + piece.length - from);
    yield piece;
  }
}

/** The WAV data chunk → mono blocks, whole frames per piece, each checked for non-finite samples. */
async function* wavBlocks(file: FileHandle, layout: WavLayout, name: string): AsyncGenerator<Float32Array> {
  const { fmt, encoding, bigEndian, dataStart, dataBytes } = layout;
  const pieceBytes = Math.max(1, Math.floor(WAV_PIECE_BYTES / fmt.blockAlign)) * fmt.blockAlign;
  let frames = 0;
  // decodeLinear is done with each piece at once: one buffer serves them all.
  for await (const piece of pieces(file, dataStart, dataStart + dataBytes, pieceBytes, name, true)) {
    const block = decodeLinear(piece, encoding, fmt.numChannels, bigEndian);
    for (let i = 0; i < block.length; i++) {
      if (!Number.isFinite(block[i])) {
        throw new LfmError("WAV_INVALID", `${name} holds a non-finite sample (NaN or infinity) at ${((frames + i) / fmt.sampleRate).toFixed(3)} s: the float data is damaged.`);
      }
    }
    frames += block.length;
    yield block;
  }
}

/** A decoded clip handed out in blocks (the companded WAV encodings, decoded whole). */
async function* clipBlocks(samples: Float32Array): AsyncGenerator<Float32Array> {
  const step = WAV_PIECE_BYTES / 4;
  for (let at = 0; at < samples.length; at += step) yield samples.subarray(at, at + step);
}

class FileAudioStream implements AudioStream {
  private started = false;
  private closed = false;
  /** Set by a compressed source once its decoder has said (see `AudioStream.channels`). */
  channels: number | null;

  constructor(
    private readonly file: FileHandle,
    readonly name: string,
    readonly sampleRateHz: number,
    readonly sourceSampleRateHz: number,
    readonly encoding: string,
    readonly declaredSeconds: number | null,
    channels: number | null,
    private readonly source: (stream: FileAudioStream) => AsyncGenerator<Float32Array>,
  ) {
    this.channels = channels;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Float32Array> {
    if (this.started) throw new LfmError("INVALID_ARGUMENT", `${this.name} is already being read: an audio stream gives its blocks once (open it again).`);
    if (this.closed) throw new LfmError("INVALID_ARGUMENT", `${this.name}: the audio stream is closed.`);
    this.started = true;
    try {
      const blocks = this.source(this);
      yield* this.sampleRateHz === this.sourceSampleRateHz ? blocks : resampleBlocks(blocks, this.sourceSampleRateHz, this.sampleRateHz);
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close();
  }
}

/**
 * Opens a recording — WAV, FLAC, MP3, Ogg Opus or Ogg Vorbis, sniffed from its content — for reading
 * in blocks. Everything `readAudioFile` checks before decoding is checked here, before this returns
 * (FILE_NOT_FOUND, AUDIO_EMPTY, AUDIO_TOO_LONG from the header, WAV_INVALID / WAV_UNSUPPORTED,
 * AUDIO_INVALID for a broken header); damage found later in the data is the same typed errors,
 * thrown by the iteration.
 */
export async function openAudioStream(path: string, opts: AudioStreamOptions = {}): Promise<AudioStream> {
  const target = opts.targetRateHz;
  if (target !== undefined && !(Number.isInteger(target) && target > 0)) {
    throw new LfmError("INVALID_ARGUMENT", `the target sample rate must be a positive integer (got ${target} Hz).`);
  }
  const fileBytes = audioFileSize(path);
  let file: FileHandle;
  try {
    file = await open(path, "r");
  } catch (e) {
    throw new LfmError("FILE_NOT_FOUND", `cannot read the audio file ${path}: ${(e as Error).message}.`, { cause: e });
  }
  try {
    let head = await readAt(file, 0, Math.min(fileBytes, HEAD_BYTES));
    const id = ascii(head, 0, 4);
    if (id === "RIFF" || id === "RIFX" || id === "RF64") {
      if (!isWavContainer(head)) throw new LfmError("WAV_INVALID", `${path} is a RIFF file but not a WAV (no WAVE form type; e.g. an AVI). Accepted: WAV, FLAC, MP3, Ogg Opus/Vorbis.`);
      const layout = await wavLayout(file, fileBytes, head, path, opts);
      const rate = layout.fmt.sampleRate;
      const linear = layout.encoding.startsWith("pcm") || layout.encoding.startsWith("float");
      let source: () => AsyncGenerator<Float32Array>;
      if (linear) {
        source = () => wavBlocks(file, layout, path);
      } else {
        if (fileBytes > WHOLE_READ_BYTES) {
          throw new LfmError(
            "WAV_UNSUPPORTED",
            `${path} is ${(fileBytes / 2 ** 30).toFixed(1)} GiB of ${layout.encoding} WAV; that encoding is decoded whole, up to 1 GiB. ` +
              `Convert it to PCM or FLAC first (e.g. \`ffmpeg -i ${path} -c:a flac out.flac\`).`,
          );
        }
        const clip = decodeWav(await readAt(file, 0, fileBytes), path, opts);
        source = () => clipBlocks(clip.samples);
      }
      return new FileAudioStream(file, path, target ?? rate, rate, layout.encoding, declaredSeconds(layout.fmt, layout.dataBytes), layout.fmt.numChannels, source);
    }
    if (compressedFormatOf(head) === null) throw notAudio(head, path);
    if (compressedFormatOf(head) === "mp3") {
      const wanted = Math.min(fileBytes, mp3HeadBytes(head), MAX_HEAD_BYTES);
      if (wanted > head.length) head = await readAt(file, 0, wanted);
    }
    const tailStart = Math.max(0, fileBytes - COMPRESSED_TAIL_BYTES);
    const tail = await readAt(file, tailStart, fileBytes - tailStart);
    const info: CompressedStreamInfo = compressedStreamInfo(head, tail, fileBytes, path, opts);
    const declared = info.declaredFrames === null ? null : info.declaredFrames / info.sampleRateHz;
    return new FileAudioStream(file, path, target ?? info.sampleRateHz, info.sampleRateHz, info.format, declared, null, (stream) =>
      decodeCompressedPieces(pieces(file, 0, fileBytes, COMPRESSED_PIECE_BYTES, path), info, path, opts, (channels) => {
        stream.channels ??= channels;
      }),
    );
  } catch (e) {
    await file.close();
    throw e;
  }
}

/**
 * A whole stream as one `AudioClip` (at the stream's rate): what `readAudioFile` returns for files
 * too big to read into memory as bytes. Only the samples are held — 4 bytes a frame, whatever the
 * source's channels and encoding. AUDIO_TOO_LONG when even they do not fit in memory.
 */
export async function collectAudioStream(stream: AudioStream): Promise<AudioClip> {
  const expected = stream.declaredSeconds === null ? 0 : Math.round(stream.declaredSeconds * stream.sampleRateHz);
  let samples: Float32Array;
  let length = 0;
  const allocate = (n: number) => {
    try {
      return new Float32Array(n);
    } catch (e) {
      throw new LfmError(
        "AUDIO_TOO_LONG",
        `${stream.name} is too long to hold in memory as one clip (${n} samples); transcribe it with \`lfm transcribe\`, which reads it in pieces, or split it.`,
        { cause: e },
      );
    }
  };
  try {
    samples = allocate(Math.max(expected, 1 << 16));
    for await (const block of stream) {
      if (length + block.length > samples.length) {
        const grown = allocate(Math.max(length + block.length, Math.ceil(samples.length * 1.5)));
        grown.set(samples.subarray(0, length));
        samples = grown;
      }
      samples.set(block, length);
      length += block.length;
    }
  } finally {
    await stream.close();
  }
  return {
    // A copy only when much was over-allocated (an estimated length), not to double the peak.
    samples: length === samples.length ? samples : length > 0.9 * samples.length ? samples.subarray(0, length) : samples.slice(0, length),
    sampleRateHz: stream.sampleRateHz,
    channels: stream.channels ?? 0,
    encoding: stream.encoding,
  };
}
