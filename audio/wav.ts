/**
 * WAV in: a file or bytes → mono float32 samples at the file's own rate. `wavefile` parses the
 * container (RIFF / RIFX / RF64, the fmt and data chunks) and decodes the companded encodings
 * (A-law, µ-law, IMA ADPCM); linear PCM and float samples are converted here, averaging the
 * channels as they are read, so a long multi-channel file never exists in memory as float64.
 *
 * Scaling is torchaudio's (`torchaudio.load(normalize=True)`): unsigned 8-bit (v − 128) / 128,
 * signed n-bit v / 2^(n−1), float as stored. Everything a user can get wrong — not a WAV, a
 * truncated or damaged file, an encoding or sample rate we do not read, no samples, a recording
 * too long for memory — is an `LfmError` (WAV_INVALID, WAV_UNSUPPORTED, AUDIO_EMPTY, AUDIO_TOO_LONG).
 */
import { closeSync, openSync, readSync, readFileSync, statSync } from "node:fs";
import wavefile from "wavefile";
import { LfmError } from "../text-core/errors.ts";

export interface AudioClip {
  /** Mono samples (channels averaged), nominally in [-1, 1]. */
  samples: Float32Array;
  sampleRateHz: number;
  /** Channels of the source before the downmix. */
  channels: number;
  /** Source encoding: "pcm8", "pcm16", "pcm24", "pcm32", "float32", "float64", "alaw", "mulaw", "ima-adpcm". */
  encoding: string;
}

export interface ReadAudioOptions {
  /** Longest recording accepted, in seconds (default 3 hours): beyond it, AUDIO_TOO_LONG. */
  maxSeconds?: number;
}

/** Sample rates accepted: telephone-band 4 kHz up to 768 kHz studio rates. */
export const MIN_SAMPLE_RATE_HZ = 4000;
export const MAX_SAMPLE_RATE_HZ = 768_000;
export const DEFAULT_MAX_SECONDS = 3 * 3600;

/** A data size of 0xFFFFFFFF: not known (a streaming recorder), or in RF64's ds64 chunk. */
const SIZE_UNKNOWN = 0xffffffff;
const WAVE_FORMAT = { PCM: 1, IEEE_FLOAT: 3, ALAW: 6, MULAW: 7, IMA_ADPCM: 17, EXTENSIBLE: 0xfffe } as const;

/** The parts of wavefile's parsed header used here (its typings declare them as `object`). */
export interface WavFmt {
  audioFormat: number;
  numChannels: number;
  sampleRate: number;
  blockAlign: number;
  bitsPerSample: number;
  subformat: number[];
}
interface WavData {
  chunkSize: number;
  samples: Uint8Array;
}

const ACCEPTED_FORMATS = "WAV (RIFF/RIFX/RF64), FLAC, MP3, Ogg Opus, Ogg Vorbis";
const CONVERT_HINT = "Convert it to 16-bit PCM WAV, e.g. `ffmpeg -i INPUT -ar 16000 -ac 1 -c:a pcm_s16le out.wav`.";

/** What a file that is not a WAV is, from its first bytes (for the message). */
export function sniffContainer(head: Uint8Array): string | null {
  const ascii = (from: number, to: number) => String.fromCharCode(...head.subarray(from, to));
  if (ascii(0, 4) === "fLaC") return "FLAC";
  if (ascii(0, 4) === "OggS") return "Ogg (Vorbis/Opus)";
  if (ascii(0, 3) === "ID3" || (head[0] === 0xff && (head[1] & 0xe0) === 0xe0)) return "MP3";
  if (ascii(4, 8) === "ftyp") return "MP4/M4A";
  if (ascii(0, 4) === "FORM") return "AIFF";
  if (head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return "WebM/Matroska";
  return null;
}

/** What a file that is no audio at all looks like, from its first bytes (for the message). */
function lookalike(head: Uint8Array): string {
  if (head.length === 0) return "nothing (no bytes)";
  const ascii = String.fromCharCode(...head.subarray(0, 16));
  if (ascii.startsWith("%PDF")) return "a PDF document";
  if (ascii.startsWith("\x89PNG")) return "a PNG image";
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "a JPEG image";
  if (ascii.startsWith("GIF8")) return "a GIF image";
  if (ascii.startsWith("PK\x03\x04")) return "a ZIP archive (or an Office document)";
  // `stream`: a character cut at byte 512 is held back, not decoded as U+FFFD.
  const text = new TextDecoder("utf-8").decode(head.subarray(0, 512), { stream: true });
  if (/^\s*<(!doctype html|html|\?xml)/i.test(text)) return "an HTML or XML page (a download that saved an error page?)";
  // Text: no control characters but tab/newline/CR, and no invalid UTF-8 (U+FFFD).
  if (!/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text)) return "text";
  return "binary data of an unknown kind";
}

/**
 * The error for a file in no format read here, whatever its name says: WAV_UNSUPPORTED naming the
 * audio container (MP4/M4A, AIFF, WebM) when it is one, else WAV_INVALID naming what it looks like.
 * Both list the formats accepted.
 */
export function notAudio(head: Uint8Array, name: string): LfmError {
  const kind = sniffContainer(head);
  if (kind) return new LfmError("WAV_UNSUPPORTED", `${name} is ${kind} audio, which is not read; accepted: ${ACCEPTED_FORMATS}. ${CONVERT_HINT}`);
  return new LfmError("WAV_INVALID", `${name} is not an audio file: it looks like ${lookalike(head)}, with no WAV, FLAC, MP3 or Ogg header. Accepted: ${ACCEPTED_FORMATS}.`);
}

export function isWavContainer(head: Uint8Array): boolean {
  const id = String.fromCharCode(...head.subarray(0, 4));
  return (id === "RIFF" || id === "RIFX" || id === "RF64") && String.fromCharCode(...head.subarray(8, 12)) === "WAVE";
}

function notWav(bytes: Uint8Array, name: string): LfmError {
  const kind = sniffContainer(bytes);
  if (kind) {
    return new LfmError("WAV_UNSUPPORTED", `${name} is ${kind} audio; decodeWav reads only WAV (readAudioFile, decodeAudio and the lfm commands also decode FLAC, MP3 and Ogg Opus/Vorbis). ${CONVERT_HINT}`);
  }
  return new LfmError("WAV_INVALID", `${name} is not a WAV file (no RIFF/WAVE header). Give a .wav recording. ${CONVERT_HINT}`);
}

/** wavefile's parse of `bytes`, as WAV_INVALID when the header is damaged. */
function parseHeader(bytes: Uint8Array, name: string): { wav: InstanceType<typeof wavefile.WaveFile>; fmt: WavFmt; data: WavData } {
  if (bytes.length < 12 || !isWavContainer(bytes)) throw notWav(bytes, name);
  let wav: InstanceType<typeof wavefile.WaveFile>;
  try {
    wav = new wavefile.WaveFile(bytes);
  } catch (e) {
    const reason = (e as Error).message;
    const hint = bytes.length < 44 ? " (the file is shorter than a WAV header: truncated?)" : "";
    throw new LfmError("WAV_INVALID", `${name}: the WAV header is damaged or truncated (${reason})${hint}. Re-export the recording.`, { cause: e });
  }
  return { wav, fmt: wav.fmt as unknown as WavFmt, data: wav.data as unknown as WavData };
}

/** The encoding of a parsed header, or WAV_UNSUPPORTED naming it. */
export function encodingOf(fmt: WavFmt, name: string): string {
  const format = fmt.audioFormat === WAVE_FORMAT.EXTENSIBLE && fmt.subformat.length > 0 ? fmt.subformat[0] : fmt.audioFormat;
  const bits = fmt.bitsPerSample;
  if (format === WAVE_FORMAT.PCM && [8, 16, 24, 32].includes(bits)) return `pcm${bits}`;
  if (format === WAVE_FORMAT.IEEE_FLOAT && (bits === 32 || bits === 64)) return `float${bits}`;
  if (format === WAVE_FORMAT.ALAW && bits === 8) return "alaw";
  if (format === WAVE_FORMAT.MULAW && bits === 8) return "mulaw";
  if (format === WAVE_FORMAT.IMA_ADPCM && bits === 4) return "ima-adpcm";
  const what = format === WAVE_FORMAT.PCM ? `${bits}-bit PCM` : format === WAVE_FORMAT.IEEE_FLOAT ? `${bits}-bit float` : `format code 0x${format.toString(16)}, ${bits} bits`;
  throw new LfmError(
    "WAV_UNSUPPORTED",
    `${name} uses an encoding that is not read (${what}); supported: 8/16/24/32-bit PCM, 32/64-bit float, A-law, µ-law, IMA ADPCM. ${CONVERT_HINT}`,
  );
}

export function checkFormat(fmt: WavFmt, name: string): void {
  if (!Number.isInteger(fmt.numChannels) || fmt.numChannels < 1) {
    throw new LfmError("WAV_INVALID", `${name}: the WAV header declares ${fmt.numChannels} channels. Re-export the recording.`);
  }
  if (!Number.isFinite(fmt.sampleRate) || fmt.sampleRate < MIN_SAMPLE_RATE_HZ || fmt.sampleRate > MAX_SAMPLE_RATE_HZ) {
    throw new LfmError(
      "WAV_UNSUPPORTED",
      `${name}: a sample rate of ${fmt.sampleRate} Hz is outside ${MIN_SAMPLE_RATE_HZ}–${MAX_SAMPLE_RATE_HZ} Hz; the header is probably wrong. ${CONVERT_HINT}`,
    );
  }
}

/** Seconds the declared data chunk holds, for the length check before a big file is read. */
export function declaredSeconds(fmt: WavFmt, dataBytes: number): number {
  const bytesPerSecond = fmt.audioFormat === WAVE_FORMAT.IMA_ADPCM ? (fmt.sampleRate * fmt.numChannels) / 2 : fmt.sampleRate * fmt.blockAlign;
  return bytesPerSecond > 0 ? dataBytes / bytesPerSecond : 0;
}

export function tooLong(name: string, seconds: number, maxSeconds: number): LfmError {
  return new LfmError(
    "AUDIO_TOO_LONG",
    `${name} is ${(seconds / 60).toFixed(1)} minutes long; the limit is ${(maxSeconds / 60).toFixed(0)} minutes (maxSeconds). ` +
      `Split it (e.g. \`ffmpeg -i ${name} -f segment -segment_time 3600 part%02d.wav\`) or raise the limit.`,
  );
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// One averaging loop per sample type, each seeing one typed-array kind (a shared loop over several
// kinds runs several times slower). Each value is the DataView path's (v / scale), summed in order.
function averageInt16(src: Int16Array, out: Float32Array, at: number, channels: number): void {
  for (let f = 0, i = 0; i < src.length; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += src[i++] / 32768;
    out[at + f] = channels === 1 ? sum : sum / channels;
  }
}
function averageInt32(src: Int32Array, out: Float32Array, at: number, channels: number): void {
  for (let f = 0, i = 0; i < src.length; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += src[i++] / 2147483648;
    out[at + f] = channels === 1 ? sum : sum / channels;
  }
}
function averageFloat32(src: Float32Array, out: Float32Array, at: number, channels: number): void {
  for (let f = 0, i = 0; i < src.length; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += src[i++];
    out[at + f] = channels === 1 ? sum : sum / channels;
  }
}
function averageFloat64(src: Float64Array, out: Float32Array, at: number, channels: number): void {
  for (let f = 0, i = 0; i < src.length; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += src[i++];
    out[at + f] = channels === 1 ? sum : sum / channels;
  }
}

const TYPED_BYTES: Record<string, number> = { pcm16: 2, pcm32: 4, float32: 4, float64: 8 };

/**
 * `decodeLinear` through typed arrays (several times faster than a DataView read per sample), for
 * 16/32-bit PCM and float in the host's byte order. Bytes not aligned to the sample size are
 * copied, a slice at a time, into an aligned buffer.
 */
function decodeLinearTyped(bytes: Uint8Array, encoding: string, channels: number): Float32Array {
  const sampleBytes = TYPED_BYTES[encoding];
  const frameBytes = sampleBytes * channels;
  const frames = Math.floor(bytes.byteLength / frameBytes);
  const out = new Float32Array(frames);
  const aligned = bytes.byteOffset % sampleBytes === 0;
  const sliceFrames = aligned ? frames : Math.max(1, Math.floor((1 << 20) / frameBytes));
  const scratch = aligned ? null : new Uint8Array(sliceFrames * frameBytes);
  for (let first = 0; first < frames; first += sliceFrames) {
    const count = Math.min(sliceFrames, frames - first);
    let buffer = bytes.buffer;
    let offset = bytes.byteOffset + first * frameBytes;
    if (scratch) {
      scratch.set(bytes.subarray(first * frameBytes, (first + count) * frameBytes));
      buffer = scratch.buffer;
      offset = 0;
    }
    const n = count * channels;
    if (encoding === "pcm16") averageInt16(new Int16Array(buffer, offset, n), out, first, channels);
    else if (encoding === "pcm32") averageInt32(new Int32Array(buffer, offset, n), out, first, channels);
    else if (encoding === "float32") averageFloat32(new Float32Array(buffer, offset, n), out, first, channels);
    else averageFloat64(new Float64Array(buffer, offset, n), out, first, channels);
  }
  return out;
}

/** Linear PCM / float bytes (whole frames) → mono float32, channels averaged frame by frame. */
export function decodeLinear(bytes: Uint8Array, encoding: string, channels: number, bigEndian: boolean): Float32Array {
  if (encoding in TYPED_BYTES && bigEndian !== HOST_LITTLE_ENDIAN) return decodeLinearTyped(bytes, encoding, channels);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const little = !bigEndian;
  const bytesPerSample = encoding === "pcm8" ? 1 : encoding === "pcm16" ? 2 : encoding === "pcm24" ? 3 : encoding === "float64" ? 8 : 4;
  const frames = Math.floor(bytes.byteLength / (bytesPerSample * channels));
  const read: (at: number) => number =
    encoding === "pcm8"
      ? (at) => (view.getUint8(at) - 128) / 128
      : encoding === "pcm16"
        ? (at) => view.getInt16(at, little) / 32768
        : encoding === "pcm24"
          ? (at) => {
              const b0 = view.getUint8(at);
              const b1 = view.getUint8(at + 1);
              const b2 = view.getUint8(at + 2);
              const u = little ? b0 | (b1 << 8) | (b2 << 16) : b2 | (b1 << 8) | (b0 << 16);
              return ((u << 8) >> 8) / 8388608; // sign-extend 24 → 32 bits
            }
          : encoding === "pcm32"
            ? (at) => view.getInt32(at, little) / 2147483648
            : encoding === "float32"
              ? (at) => view.getFloat32(at, little)
              : (at) => view.getFloat64(at, little);
  const out = new Float32Array(frames);
  const frameBytes = bytesPerSample * channels;
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(f * frameBytes + c * bytesPerSample);
    out[f] = channels === 1 ? sum : sum / channels;
  }
  return out;
}

/** A-law / µ-law / IMA ADPCM through wavefile's decoders (to 16-bit), then averaged. */
function decodeCompanded(wav: InstanceType<typeof wavefile.WaveFile>, encoding: string, channels: number, name: string): Float32Array {
  try {
    if (encoding === "alaw") wav.fromALaw("16");
    else if (encoding === "mulaw") wav.fromMuLaw("16");
    else wav.fromIMAADPCM("16");
  } catch (e) {
    throw new LfmError("WAV_INVALID", `${name}: the ${encoding} data could not be decoded (${(e as Error).message}). Re-export the recording.`, { cause: e });
  }
  const decoded = wav.getSamples(false, Float64Array) as unknown as Float64Array | Float64Array[];
  const perChannel = channels === 1 ? [decoded as Float64Array] : (decoded as Float64Array[]);
  // ADPCM decodes whole blocks; the fact chunk holds the true length.
  const declared = (wav.fact as unknown as { dwSampleLength?: number }).dwSampleLength ?? 0;
  const frames = declared > 0 ? Math.min(declared, perChannel[0].length) : perChannel[0].length;
  const out = new Float32Array(frames);
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (const ch of perChannel) sum += ch[f];
    out[f] = sum / channels / 32768;
  }
  return out;
}

/** Decodes WAV bytes. `name` names the source in messages. */
export function decodeWav(bytes: Uint8Array, name = "the audio", opts: ReadAudioOptions = {}): AudioClip {
  const { wav, fmt, data } = parseHeader(bytes, name);
  checkFormat(fmt, name);
  const encoding = encodingOf(fmt, name);
  const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
  // 0xFFFFFFFF: a recorder that never filled the size in (or RF64's "see ds64"): the data runs to the end.
  const sizeUnknown = data.chunkSize === SIZE_UNKNOWN;
  const seconds = declaredSeconds(fmt, sizeUnknown ? data.samples.length : data.chunkSize);
  if (seconds > maxSeconds) throw tooLong(name, seconds, maxSeconds);
  const linear = encoding.startsWith("pcm") || encoding.startsWith("float");
  if (linear && fmt.blockAlign !== (fmt.bitsPerSample / 8) * fmt.numChannels) {
    throw new LfmError(
      "WAV_INVALID",
      `${name}: the WAV header is inconsistent (block align ${fmt.blockAlign} for ${fmt.numChannels} channels of ${fmt.bitsPerSample} bits). Re-export the recording.`,
    );
  }
  // wavefile reads what is there; a data chunk shorter than its header says is a truncated file.
  if (!sizeUnknown && (data.samples.length < data.chunkSize || (linear && data.samples.length % fmt.blockAlign !== 0))) {
    throw new LfmError(
      "WAV_INVALID",
      `${name} is truncated: the header declares ${data.chunkSize} bytes of audio but the file holds ${data.samples.length}. ` +
        "Re-copy or re-export it (a recording still being written, or an interrupted download?).",
    );
  }
  const samples = linear ? decodeLinear(data.samples, encoding, fmt.numChannels, wav.container === "RIFX") : decodeCompanded(wav, encoding, fmt.numChannels, name);
  if (samples.length === 0) throw new LfmError("AUDIO_EMPTY", `${name} holds no audio samples (zero-length recording).`);
  for (let i = 0; i < samples.length; i++) {
    if (!Number.isFinite(samples[i])) {
      throw new LfmError("WAV_INVALID", `${name} holds a non-finite sample (NaN or infinity) at ${(i / fmt.sampleRate).toFixed(3)} s: the float data is damaged.`);
    }
  }
  return { samples, sampleRateHz: fmt.sampleRate, channels: fmt.numChannels, encoding };
}

/** Header bytes read first, so that an over-long file is refused before it is read whole. */
const HEADER_PROBE_BYTES = 1 << 20;

/** The size of a recording file: FILE_NOT_FOUND when it cannot be read, AUDIO_EMPTY when it is empty. */
export function audioFileSize(path: string): number {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error("not a regular file");
    size = st.size;
  } catch (e) {
    throw new LfmError("FILE_NOT_FOUND", `cannot read the audio file ${path}: ${(e as Error).message}.`, { cause: e });
  }
  if (size === 0) throw new LfmError("AUDIO_EMPTY", `${path} is an empty file.`);
  return size;
}

/**
 * Reads a WAV file; FILE_NOT_FOUND when it cannot be read, then as `decodeWav`. Internal: every
 * caller reads recordings through `readAudioFile` (audio/audio-file.ts), which takes any format.
 */
export function readWavFile(path: string, opts: ReadAudioOptions = {}): AudioClip {
  const size = audioFileSize(path);
  if (size > HEADER_PROBE_BYTES) {
    const head = new Uint8Array(HEADER_PROBE_BYTES);
    const fd = openSync(path, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    if (!isWavContainer(head)) throw notWav(head, path);
    let seconds = 0;
    try {
      const { fmt, data } = parseHeader(head, path);
      seconds = declaredSeconds(fmt, data.chunkSize === SIZE_UNKNOWN ? size : data.chunkSize);
    } catch {
      // e.g. the data chunk starts beyond the probe: the full read below decides
    }
    const maxSeconds = opts.maxSeconds ?? DEFAULT_MAX_SECONDS;
    if (seconds > maxSeconds) throw tooLong(path, seconds, maxSeconds);
  }
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    // Over 2 GiB Node cannot read a file into one buffer (ERR_FS_FILE_TOO_LARGE).
    const big = (e as NodeJS.ErrnoException).code === "ERR_FS_FILE_TOO_LARGE";
    throw new LfmError(
      big ? "AUDIO_TOO_LONG" : "FILE_NOT_FOUND",
      big ? `${path} is ${(size / 2 ** 30).toFixed(1)} GiB, too big to read whole: read it with readAudioFile or openAudioStream, which read it in pieces.` : `cannot read the audio file ${path}: ${(e as Error).message}.`,
      { cause: e },
    );
  }
  return decodeWav(bytes, path, opts);
}
