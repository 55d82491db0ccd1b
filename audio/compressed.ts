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

/** Where the first Ogg packet starts and the last page's flags and granule. */
function oggStreamInfo(b: Uint8Array, name: string): Declared {
  if (b.length < 28) throw damaged(name, "Ogg", "shorter than one page header");
  const firstPacket = 27 + b[26];
  const head = ascii(b, firstPacket, firstPacket + 8);
  let format: CompressedFormat;
  let rate: number;
  let preSkip = 0;
  if (head === "OpusHead") {
    format = "ogg-opus";
    rate = 48000; // Opus granules count 48 kHz samples whatever the input rate was
    preSkip = b[firstPacket + 10] | (b[firstPacket + 11] << 8);
  } else if (head.startsWith("\x01vorbis")) {
    format = "ogg-vorbis";
    const at = firstPacket + 12;
    rate = (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
  } else {
    throw new LfmError("WAV_UNSUPPORTED", `${name} is an Ogg file but neither Opus nor Vorbis (e.g. Ogg FLAC or Speex); convert it: \`ffmpeg -i ${name} -ar 16000 -ac 1 out.wav\`.`);
  }
  // Walk every page: each must start where the previous one ended and pass its CRC (the codecs
  // do not check it, and a damaged Opus page decodes to noise without complaint).
  let at = 0;
  let last = -1;
  while (at < b.length) {
    if (at + 27 > b.length) throw damaged(name, FORMAT_NAMES[format], `the Ogg page at byte ${at} is cut off`);
    if (ascii(b, at, at + 4) !== "OggS") throw damaged(name, FORMAT_NAMES[format], `no Ogg page where one should start (byte ${at})`);
    const segments = b[at + 26];
    let size = 27 + segments;
    if (at + size > b.length) throw damaged(name, FORMAT_NAMES[format], `the Ogg page at byte ${at} is cut off`);
    for (let s = 0; s < segments; s++) size += b[at + 27 + s];
    if (at + size > b.length) throw damaged(name, FORMAT_NAMES[format], `the Ogg page at byte ${at} is cut off`);
    const stored = (b[at + 22] | (b[at + 23] << 8) | (b[at + 24] << 16) | (b[at + 25] << 24)) >>> 0;
    if (oggPageCrc(b.subarray(at, at + size)) !== stored) throw damaged(name, FORMAT_NAMES[format], `the Ogg page at byte ${at} fails its checksum`);
    last = at;
    at += size;
  }
  const complete = (b[last + 5] & 0x04) !== 0;
  const view = new DataView(b.buffer, b.byteOffset + last + 6, 8);
  const granule = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  const frames = complete && granule > preSkip ? granule - preSkip : null;
  return { format, frames, exact: false, sampleRateHz: rate, complete };
}

const MPEG_RATES: Record<number, number[]> = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };
const MPEG_KBPS: Record<string, number[]> = {
  "1-1": [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  "1-2": [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  "1-3": [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
  "2-1": [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  "2-2": [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
};

/** The first MPEG frame header (after any ID3v2 tag), and a Xing/Info/VBRI frame count if present. */
function mp3StreamInfo(b: Uint8Array, name: string): Declared {
  let at = 0;
  if (ascii(b, 0, 3) === "ID3" && b.length >= 10) {
    at = 10 + ((b[6] << 21) | (b[7] << 14) | (b[8] << 7) | b[9]) + (b[5] & 0x10 ? 10 : 0);
  }
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
    const estimate = kbps > 0 ? Math.round((((b.length - at) * 8) / (kbps * 1000)) * rate) : null;
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
  // The FLAC decoder scales by 2^(b−1) − 1; torchaudio (and the WAV reader) by 2^(b−1). Integer
  // samples are recovered exactly up to 24 bits, so FLAC decodes to exactly the WAV it came from.
  const bits = declared.format === "flac" ? (decoded.bitDepth ?? 0) : 0;
  if (bits >= 2 && bits <= 24) {
    const full = 2 ** (bits - 1);
    for (const ch of decoded.channelData) for (let i = 0; i < frames; i++) ch[i] = Math.round(ch[i] * (full - 1)) / full;
  }
  // Channels averaged frame by frame in double precision, as the WAV reader does.
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (const ch of decoded.channelData) sum += ch[i];
    samples[i] = channels === 1 ? sum : sum / channels;
    if (!Number.isFinite(samples[i])) throw damaged(name, what, `a non-finite sample at ${(i / decoded.sampleRate).toFixed(3)} s`);
  }
  return { samples, sampleRateHz: decoded.sampleRate, channels, encoding: declared.format };
}

function tooLong(name: string, seconds: number, maxSeconds: number): LfmError {
  return new LfmError(
    "AUDIO_TOO_LONG",
    `${name} is ${(seconds / 60).toFixed(1)} minutes long; the limit is ${(maxSeconds / 60).toFixed(0)} minutes (maxSeconds) so that it fits in memory. Split it or raise the limit.`,
  );
}
