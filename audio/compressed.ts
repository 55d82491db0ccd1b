/**
 * Compressed audio in: FLAC, MP3 (MPEG layer I/II/III) and Ogg Opus / Vorbis → the same mono
 * float32 `AudioClip` the WAV reader gives, through eshaz's wasm-audio-decoders (MIT wrappers;
 * the WebAssembly is inlined in the packages — nothing is downloaded or built at install or run
 * time). Resampling to the model's rate happens later, as for WAV.
 *
 * The decoders report few errors themselves (a truncated file simply decodes less), so each
 * container's own length is checked before and after decoding: FLAC STREAMINFO's sample count,
 * the Xing/Info frame count of an MP3, the end-of-stream flag and granule position of the last Ogg
 * page. The declared length is also what AUDIO_TOO_LONG is judged on, before anything is decoded.
 */
import { LfmError } from "../text-core/errors.ts";
import { type AudioClip, DEFAULT_MAX_SECONDS, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, type ReadAudioOptions, sniffContainer } from "./wav.ts";

export type CompressedFormat = "flac" | "mp3" | "ogg-opus" | "ogg-vorbis";

/** What the decoders return (all four packages share the shape). */
interface Decoded {
  channelData: Float32Array[];
  samplesDecoded: number;
  sampleRate: number;
  /** FLAC only: bits per sample of the stream. */
  bitDepth?: number;
  errors: { message: string }[];
}

/** What the container says before decoding: the expected length, when it says. */
interface Declared {
  format: CompressedFormat;
  /** Samples per channel the stream holds (null: the container does not say). */
  frames: number | null;
  sampleRateHz: number | null;
  /** Whether `frames` is the container's count (FLAC, Xing/VBRI MP3), not an estimate. */
  exact: boolean;
  /** Ogg: whether the last page is complete and flagged end-of-stream. */
  complete: boolean;
}

const damaged = (name: string, what: string, detail: string) =>
  new LfmError("AUDIO_INVALID", `${name}: the ${what} data is damaged or truncated (${detail}). Re-copy or re-export the recording.`);

const ascii = (b: Uint8Array, from: number, to: number) => String.fromCharCode(...b.subarray(from, Math.min(to, b.length)));

/** FLAC STREAMINFO (the mandatory first metadata block): rate and total samples (0 = unknown). */
function flacStreamInfo(b: Uint8Array, name: string): Declared {
  if (b.length < 42 || (b[4] & 0x7f) !== 0) throw damaged(name, "FLAC", "no STREAMINFO block");
  const rate = (b[18] << 12) | (b[19] << 4) | (b[20] >> 4);
  const total = (b[21] & 0x0f) * 2 ** 32 + ((b[22] << 24) | (b[23] << 16) | (b[24] << 8) | b[25]) >>> 0;
  return { format: "flac", frames: total > 0 ? total : null, exact: total > 0, sampleRateHz: rate, complete: true };
}

/** Ogg's page CRC-32 (polynomial 0x04c11db7, not reflected), computed with the CRC field as zeros. */
const OGG_CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    t[i] = r >>> 0;
  }
  return t;
})();

function oggPageCrc(page: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < page.length; i++) {
    const byte = i >= 22 && i < 26 ? 0 : page[i];
    crc = ((crc << 8) ^ OGG_CRC_TABLE[((crc >>> 24) ^ byte) & 0xff]) >>> 0;
  }
  return crc;
}

/** The stream's codec and rate from the first Ogg page (its first packet is the codec's header). */
interface OggHead {
  format: CompressedFormat;
  rate: number;
  preSkip: number;
}

function oggHead(b: Uint8Array, name: string): OggHead {
  if (b.length < 28) throw damaged(name, "Ogg", "shorter than one page header");
  const firstPacket = 27 + b[26];
  const head = ascii(b, firstPacket, firstPacket + 8);
  if (head === "OpusHead") {
    // Opus granules count 48 kHz samples whatever the input rate was
    return { format: "ogg-opus", rate: 48000, preSkip: b[firstPacket + 10] | (b[firstPacket + 11] << 8) };
  }
  if (head.startsWith("\x01vorbis")) {
    const at = firstPacket + 12;
    return { format: "ogg-vorbis", rate: (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0, preSkip: 0 };
  }
  throw new LfmError("WAV_UNSUPPORTED", `${name} is an Ogg file but neither Opus nor Vorbis (e.g. Ogg FLAC or Speex); convert it: \`ffmpeg -i ${name} -ar 16000 -ac 1 out.wav\`.`);
}

/** The end-of-stream flag and granule of a page's header (27 bytes). */
function oggPageEnd(header: Uint8Array): { endOfStream: boolean; granule: number } {
  const view = new DataView(header.buffer, header.byteOffset + 6, 8);
  return { endOfStream: (header[5] & 0x04) !== 0, granule: view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32 };
}

/** The length of the Ogg page at `at` in `b`, or null when `b` ends first. */
function oggPageLength(b: Uint8Array, at: number): number | null {
  if (at + 27 > b.length) return null;
  const segments = b[at + 26];
  let size = 27 + segments;
  if (at + size > b.length) return null;
  for (let s = 0; s < segments; s++) size += b[at + 27 + s];
  return at + size > b.length ? null : size;
}

const storedCrc = (b: Uint8Array, at: number) => (b[at + 22] | (b[at + 23] << 8) | (b[at + 24] << 16) | (b[at + 25] << 24)) >>> 0;

/**
 * Walks an Ogg stream's pages as its bytes arrive: each must start where the previous one ended
 * and pass its CRC (the codecs do not check it, and a damaged Opus page decodes to noise without
 * complaint). Only an incomplete page is kept between pushes.
 */
class OggPageWalker {
  private carry = new Uint8Array(0);
  /** Byte offset in the file of `carry[0]`. */
  private carryAt = 0;
  private lastHeader: Uint8Array | null = null;

  constructor(
    private readonly name: string,
    private readonly what: string,
  ) {}

  push(bytes: Uint8Array): void {
    let b = bytes;
    if (this.carry.length > 0) {
      b = new Uint8Array(this.carry.length + bytes.length);
      b.set(this.carry);
      b.set(bytes, this.carry.length);
    }
    let at = 0;
    while (at + 27 <= b.length) {
      if (ascii(b, at, at + 4) !== "OggS") throw damaged(this.name, this.what, `no Ogg page where one should start (byte ${this.carryAt + at})`);
      const size = oggPageLength(b, at);
      if (size === null) break;
      if (oggPageCrc(b.subarray(at, at + size)) !== storedCrc(b, at)) throw damaged(this.name, this.what, `the Ogg page at byte ${this.carryAt + at} fails its checksum`);
      this.lastHeader = b.slice(at, at + 27);
      at += size;
    }
    this.carry = b.slice(at);
    this.carryAt += at;
  }

  /** After the last byte: the last page's flag and granule; a page left incomplete is damage. */
  end(): { endOfStream: boolean; granule: number } {
    if (this.carry.length > 0 || this.lastHeader === null) throw damaged(this.name, this.what, `the Ogg page at byte ${this.carryAt} is cut off`);
    return oggPageEnd(this.lastHeader);
  }
}

/** Where the first Ogg packet starts and the last page's flags and granule. */
function oggStreamInfo(b: Uint8Array, name: string): Declared {
  const { format, rate, preSkip } = oggHead(b, name);
  const walker = new OggPageWalker(name, FORMAT_NAMES[format]);
  walker.push(b);
  const last = walker.end();
  const frames = last.endOfStream && last.granule > preSkip ? last.granule - preSkip : null;
  return { format, frames, exact: false, sampleRateHz: rate, complete: last.endOfStream };
}

/**
 * `oggStreamInfo` for a file read in pieces: the head from its first bytes, the last page found in
 * its `tail` (the last 64 KiB or more: an Ogg page is at most 65,307 bytes). The pages between are
 * checked by an `OggPageWalker` as they are decoded.
 */
function oggStreamInfoFromEnds(head: Uint8Array, tail: Uint8Array, name: string): Declared & { preSkip: number } {
  const { format, rate, preSkip } = oggHead(head, name);
  // The last page is the earliest "OggS" in the tail whose page ends exactly at the end of the file
  // and passes its CRC (payload bytes that happen to read "OggS" fail one or the other).
  for (let at = 0; at + 27 <= tail.length; at++) {
    if (tail[at] !== 0x4f || ascii(tail, at, at + 4) !== "OggS") continue;
    const size = oggPageLength(tail, at);
    if (size === null || at + size !== tail.length || oggPageCrc(tail.subarray(at, at + size)) !== storedCrc(tail, at)) continue;
    const last = oggPageEnd(tail.subarray(at, at + 27));
    const frames = last.endOfStream && last.granule > preSkip ? last.granule - preSkip : null;
    return { format, frames, exact: false, sampleRateHz: rate, complete: last.endOfStream, preSkip };
  }
  return { format, frames: null, exact: false, sampleRateHz: rate, complete: false, preSkip };
}

const MPEG_RATES: Record<number, number[]> = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };
const MPEG_KBPS: Record<string, number[]> = {
  "1-1": [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  "1-2": [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  "1-3": [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  "2-1": [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  "2-2": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};

/** Bytes an ID3v2 tag at the start of `b` takes (0 without one). */
function id3Length(b: Uint8Array): number {
  if (ascii(b, 0, 3) !== "ID3" || b.length < 10) return 0;
  return 10 + ((b[6] << 21) | (b[7] << 14) | (b[8] << 7) | b[9]) + (b[5] & 0x10 ? 10 : 0);
}

/** Bytes from the start of an MP3 that `mp3StreamInfo` reads: the ID3v2 tag and 64 KiB after it. */
export function mp3HeadBytes(head: Uint8Array): number {
  return id3Length(head) + 64 * 1024 + 4;
}

/**
 * The first MPEG frame header (after any ID3v2 tag), and a Xing/Info/VBRI frame count if present.
 * `fileBytes`: the whole file's size, when `b` is only its head (for the length estimate).
 */
function mp3StreamInfo(b: Uint8Array, name: string, fileBytes = b.length): Declared {
  let at = id3Length(b);
  const limit = Math.min(b.length - 4, at + 64 * 1024);
  for (; at < limit; at++) {
    if (b[at] !== 0xff || (b[at + 1] & 0xe0) !== 0xe0) continue;
    const version = (b[at + 1] >> 3) & 3; // 3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5
    const layer = 4 - ((b[at + 1] >> 1) & 3);
    const bitrateIndex = b[at + 2] >> 4;
    const rateIndex = (b[at + 2] >> 2) & 3;
    if (version === 1 || layer === 4 || bitrateIndex === 15 || rateIndex === 3) continue;
    const rate = MPEG_RATES[version][rateIndex];
    const mono = b[at + 3] >> 6 === 3;
    const samplesPerFrame = layer === 1 ? 384 : layer === 3 && version !== 3 ? 576 : 1152;
    const sideInfo = version === 3 ? (mono ? 17 : 32) : mono ? 9 : 17;
    let frames: number | null = null;
    const tag = ascii(b, at + 4 + sideInfo, at + 8 + sideInfo);
    if ((tag === "Xing" || tag === "Info") && b[at + 11 + sideInfo] & 1) {
      const c = at + 12 + sideInfo;
      frames = ((b[c] << 24) | (b[c + 1] << 16) | (b[c + 2] << 8) | b[c + 3]) >>> 0;
    } else if (ascii(b, at + 36, at + 40) === "VBRI") {
      const c = at + 36 + 14;
      frames = ((b[c] << 24) | (b[c + 1] << 16) | (b[c + 2] << 8) | b[c + 3]) >>> 0;
    }
    if (frames !== null) return { format: "mp3", frames: frames * samplesPerFrame, exact: true, sampleRateHz: rate, complete: true };
    // No frame count: estimate the length from the first frame's bit rate (for the length limit only).
    const kbps = MPEG_KBPS[`${version === 3 ? 1 : 2}-${version === 3 ? layer : layer === 1 ? 1 : 2}`][bitrateIndex];
    const estimate = kbps > 0 ? Math.round((((fileBytes - at) * 8) / (kbps * 1000)) * rate) : null;
    return { format: "mp3", frames: estimate, exact: false, sampleRateHz: rate, complete: true };
  }
  throw damaged(name, "MP3", "no MPEG audio frame header in the first 64 KiB");
}

/** The compressed format of `bytes`, or null (WAV, or something not read). */
export function compressedFormatOf(bytes: Uint8Array): "flac" | "mp3" | "ogg" | null {
  const kind = sniffContainer(bytes);
  return kind === "FLAC" ? "flac" : kind === "MP3" ? "mp3" : kind?.startsWith("Ogg") ? "ogg" : null;
}

function declaredInfo(bytes: Uint8Array, name: string): Declared {
  const format = compressedFormatOf(bytes);
  if (format === "flac") return flacStreamInfo(bytes, name);
  if (format === "ogg") return oggStreamInfo(bytes, name);
  if (format === "mp3") return mp3StreamInfo(bytes, name);
  throw new LfmError("WAV_INVALID", `${name} is not a FLAC, MP3 or Ogg file.`);
}

// Each WASM decoder is loaded when its format is first met (40–80 ms apiece, for every CLI start
// otherwise).
async function runDecoder(format: CompressedFormat, bytes: Uint8Array): Promise<Decoded> {
  if (format === "mp3") {
    const { MPEGDecoder } = await import("mpg123-decoder");
    const d = new MPEGDecoder();
    await d.ready;
    try {
      return d.decode(bytes);
    } finally {
      d.free();
    }
  }
  const d =
    format === "flac"
      ? new (await import("@wasm-audio-decoders/flac")).FLACDecoder()
      : format === "ogg-opus"
        ? new (await import("ogg-opus-decoder")).OggOpusDecoder()
        : new (await import("@wasm-audio-decoders/ogg-vorbis")).OggVorbisDecoder();
  await d.ready;
  try {
    return await d.decodeFile(bytes);
  } finally {
    d.free();
  }
}

const FORMAT_NAMES: Record<CompressedFormat, string> = { flac: "FLAC", mp3: "MP3", "ogg-opus": "Ogg Opus", "ogg-vorbis": "Ogg Vorbis" };

/**
 * Decodes FLAC / MP3 / Ogg Opus / Ogg Vorbis bytes to mono float32 at the stream's rate (Opus
 * always decodes at 48 kHz). `encoding` in the result names the format.
 */
export async function decodeCompressed(bytes: Uint8Array, name = "the audio", opts: ReadAudioOptions = {}): Promise<AudioClip> {
  const declared = declaredInfo(bytes, name);
  const what = FORMAT_NAMES[declared.format];
  const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
  if (declared.sampleRateHz !== null) {
    if (declared.sampleRateHz < MIN_SAMPLE_RATE_HZ || declared.sampleRateHz > MAX_SAMPLE_RATE_HZ) {
      throw new LfmError("WAV_UNSUPPORTED", `${name}: a sample rate of ${declared.sampleRateHz} Hz is outside ${MIN_SAMPLE_RATE_HZ}–${MAX_SAMPLE_RATE_HZ} Hz; the header is probably wrong.`);
    }
    if (declared.frames !== null && declared.frames / declared.sampleRateHz > maxSeconds) throw tooLong(name, declared.frames / declared.sampleRateHz, maxSeconds);
  }
  if (declared.format.startsWith("ogg") && !declared.complete) throw damaged(name, what, "the last Ogg page is cut off or not marked end-of-stream");
  let decoded: Decoded;
  try {
    decoded = await runDecoder(declared.format, bytes);
  } catch (e) {
    throw new LfmError("AUDIO_INVALID", `${name}: the ${what} decoder failed (${(e as Error).message}). Re-export the recording.`, { cause: e });
  }
  if (decoded.errors.length > 0) throw damaged(name, what, decoded.errors[0].message);
  const channels = decoded.channelData.length;
  const frames = decoded.samplesDecoded;
  if (frames === 0 || channels === 0) {
    // A stream that says it holds audio but decodes to none is damaged; one that says 0 is empty.
    if (declared.frames === 0) throw new LfmError("AUDIO_EMPTY", `${name} holds no audio samples (zero-length recording).`);
    throw damaged(name, what, "no audio could be decoded");
  }
  // FLAC and Xing/VBRI-tagged MP3 declare their length: less decoded means the file was cut short
  // (an MP3's count includes the encoder's delay and padding: up to two frames plus the decoder's delay).
  if (declared.exact && declared.frames !== null) {
    const slack = declared.format === "mp3" ? 2 * 1152 + 529 : 0;
    if (frames < declared.frames - slack) throw damaged(name, what, `${frames} of the ${declared.frames} samples its header declares were decoded`);
  }
  if (frames / decoded.sampleRate > maxSeconds) throw tooLong(name, frames / decoded.sampleRate, maxSeconds);
  const samples = downmixDecoded(decoded, declared.format, name, 0);
  return { samples, sampleRateHz: decoded.sampleRate, channels, encoding: declared.format };
}

/**
 * A decoded block → mono float32: FLAC rescaled to the WAV reader's scale, channels averaged frame
 * by frame in double precision (as the WAV reader does), non-finite samples refused. `offsetFrames`:
 * where the block starts in the stream (for the message).
 */
function downmixDecoded(decoded: Decoded, format: CompressedFormat, name: string, offsetFrames: number): Float32Array {
  const frames = decoded.samplesDecoded;
  const channels = decoded.channelData.length;
  // The FLAC decoder scales by 2^(b−1) − 1; torchaudio (and the WAV reader) by 2^(b−1). Integer
  // samples are recovered exactly up to 24 bits, so FLAC decodes to exactly the WAV it came from.
  const bits = format === "flac" ? (decoded.bitDepth ?? 0) : 0;
  if (bits >= 2 && bits <= 24) {
    const full = 2 ** (bits - 1);
    for (const ch of decoded.channelData) for (let i = 0; i < frames; i++) ch[i] = Math.round(ch[i] * (full - 1)) / full;
  }
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (const ch of decoded.channelData) sum += ch[i];
    samples[i] = channels === 1 ? sum : sum / channels;
    if (!Number.isFinite(samples[i])) throw damaged(name, FORMAT_NAMES[format], `a non-finite sample at ${((offsetFrames + i) / decoded.sampleRate).toFixed(3)} s`);
  }
  return samples;
}

/** A decoder fed a file's bytes piece by piece (the four packages' streaming calls, one shape). */
interface PieceDecoder {
  decode(bytes: Uint8Array): Promise<Decoded>;
  /** The frames still held once the input has ended. */
  flush(): Promise<Decoded>;
  free(): void;
}

async function pieceDecoder(format: CompressedFormat): Promise<PieceDecoder> {
  if (format === "mp3") {
    const { MPEGDecoder } = await import("mpg123-decoder");
    const d = new MPEGDecoder();
    await d.ready;
    // mpg123 is fed as data comes and holds nothing back worth a flush (the whole-file call is one feed).
    return { decode: async (bytes) => d.decode(bytes), flush: async () => ({ channelData: [], samplesDecoded: 0, sampleRate: 0, errors: [] }), free: () => d.free() };
  }
  const d =
    format === "flac"
      ? new (await import("@wasm-audio-decoders/flac")).FLACDecoder()
      : format === "ogg-opus"
        ? new (await import("ogg-opus-decoder")).OggOpusDecoder()
        : new (await import("@wasm-audio-decoders/ogg-vorbis")).OggVorbisDecoder();
  await d.ready;
  return { decode: async (bytes) => d.decode(bytes), flush: () => d.flush(), free: () => d.free() };
}

/** How a compressed file read in pieces is set up: from its head (and, for Ogg, its tail). */
export interface CompressedStreamInfo {
  format: CompressedFormat;
  sampleRateHz: number;
  /** Samples per channel the container declares (null: it does not say); an estimate unless `exactFrames`. */
  declaredFrames: number | null;
  /** Whether `declaredFrames` is the container's count (FLAC, Xing/VBRI MP3), not an estimate. */
  exactFrames: boolean;
}

/** Bytes of a compressed file's end read before streaming (Ogg's last page, at most 65,307 bytes). */
export const COMPRESSED_TAIL_BYTES = 65_536;

/**
 * Checks a compressed file before it is streamed, as `decodeCompressed` does before decoding:
 * format, rate, the declared length against `maxSeconds`, an Ogg stream's last page. `head`: its
 * first bytes (`mp3HeadBytes` of them for MP3), `tail`: its last `COMPRESSED_TAIL_BYTES`.
 */
export function compressedStreamInfo(head: Uint8Array, tail: Uint8Array, fileBytes: number, name: string, opts: ReadAudioOptions = {}): CompressedStreamInfo {
  const format = compressedFormatOf(head);
  const declared =
    format === "flac" ? flacStreamInfo(head, name) : format === "mp3" ? mp3StreamInfo(head, name, fileBytes) : format === "ogg" ? oggStreamInfoFromEnds(head, tail, name) : null;
  if (declared === null || declared.sampleRateHz === null) throw new LfmError("WAV_INVALID", `${name} is not a FLAC, MP3 or Ogg file.`);
  const what = FORMAT_NAMES[declared.format];
  const rate = declared.sampleRateHz;
  if (rate < MIN_SAMPLE_RATE_HZ || rate > MAX_SAMPLE_RATE_HZ) {
    throw new LfmError("WAV_UNSUPPORTED", `${name}: a sample rate of ${rate} Hz is outside ${MIN_SAMPLE_RATE_HZ}–${MAX_SAMPLE_RATE_HZ} Hz; the header is probably wrong.`);
  }
  const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
  if (declared.frames !== null && declared.frames / rate > maxSeconds) throw tooLong(name, declared.frames / rate, maxSeconds);
  if (declared.format.startsWith("ogg") && !declared.complete) throw damaged(name, what, "the last Ogg page is cut off or not marked end-of-stream");
  return { format: declared.format, sampleRateHz: rate, declaredFrames: declared.frames, exactFrames: declared.exact };
}

/**
 * Decodes a compressed file from its byte pieces (`pieces`: the whole file in order) to mono
 * float32 blocks at `info.sampleRateHz`, with `decodeCompressed`'s checks done as the data passes:
 * decoder errors, Ogg page order and CRCs, non-finite samples, `maxSeconds`, and at the end a
 * FLAC / tagged MP3 that decoded fewer samples than it declares. The concatenated blocks equal
 * `decodeCompressed`'s samples. `onChannels`: told the source's channel count at the first block.
 */
export async function* decodeCompressedPieces(
  pieces: AsyncIterable<Uint8Array>,
  info: CompressedStreamInfo,
  name: string,
  opts: ReadAudioOptions = {},
  onChannels?: (channels: number) => void,
): AsyncGenerator<Float32Array> {
  const { format } = info;
  const what = FORMAT_NAMES[format];
  const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
  const walker = format.startsWith("ogg") ? new OggPageWalker(name, what) : null;
  let decoder: PieceDecoder;
  try {
    decoder = await pieceDecoder(format);
  } catch (e) {
    throw new LfmError("AUDIO_INVALID", `${name}: the ${what} decoder failed (${(e as Error).message}). Re-export the recording.`, { cause: e });
  }
  let frames = 0;
  const take = (decoded: Decoded): Float32Array | null => {
    if (decoded.errors.length > 0) throw damaged(name, what, decoded.errors[0].message);
    if (decoded.samplesDecoded === 0 || decoded.channelData.length === 0) return null;
    if (decoded.sampleRate !== info.sampleRateHz) throw damaged(name, what, `the stream changes its sample rate to ${decoded.sampleRate} Hz at ${(frames / info.sampleRateHz).toFixed(3)} s`);
    if (frames === 0) onChannels?.(decoded.channelData.length);
    const block = downmixDecoded(decoded, format, name, frames);
    frames += block.length;
    if (frames / info.sampleRateHz > maxSeconds) throw tooLong(name, frames / info.sampleRateHz, maxSeconds);
    return block;
  };
  const run = async (step: () => Promise<Decoded>): Promise<Decoded> => {
    try {
      return await step();
    } catch (e) {
      if (e instanceof LfmError) throw e;
      throw new LfmError("AUDIO_INVALID", `${name}: the ${what} decoder failed (${(e as Error).message}). Re-export the recording.`, { cause: e });
    }
  };
  try {
    for await (const piece of pieces) {
      walker?.push(piece);
      const block = take(await run(() => decoder.decode(piece)));
      if (block) yield block;
    }
    walker?.end();
    const rest = take(await run(() => decoder.flush()));
    if (rest) yield rest;
  } finally {
    decoder.free();
  }
  if (frames === 0) {
    if (info.declaredFrames === 0) throw new LfmError("AUDIO_EMPTY", `${name} holds no audio samples (zero-length recording).`);
    throw damaged(name, what, "no audio could be decoded");
  }
  // As `decodeCompressed`: an MP3's count includes the encoder's delay and padding.
  if (info.exactFrames && info.declaredFrames !== null) {
    const slack = format === "mp3" ? 2 * 1152 + 529 : 0;
    if (frames < info.declaredFrames - slack) throw damaged(name, what, `${frames} of the ${info.declaredFrames} samples its header declares were decoded`);
  }
}

function tooLong(name: string, seconds: number, maxSeconds: number): LfmError {
  return new LfmError(
    "AUDIO_TOO_LONG",
    `${name} is ${(seconds / 60).toFixed(1)} minutes long; the limit is ${(maxSeconds / 60).toFixed(0)} minutes (maxSeconds). Split it or raise the limit.`,
  );
}
