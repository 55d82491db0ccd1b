/**
 * A WAV file written as audio arrives: 16-bit PCM (mono by default), samples appended to a
 * temporary file beside the target, the header's sizes filled in and the file renamed into place
 * only by `finish()`. An interrupted run therefore leaves either a complete WAV of what was
 * finished or no file at all — never a truncated one under the target name.
 *
 * The header is the canonical 44-byte RIFF/WAVE PCM header, written here rather than with
 * `wavefile` because `wavefile` builds whole files in memory, and streaming is the point.
 */
import { join } from "node:path";
import { LfmError } from "../text-core/errors.ts";
import { PendingFile } from "../text-core/pending-file.ts";

const HEADER_BYTES = 44;
const BYTES_PER_SAMPLE = 2;
/** RIFF sizes are 32-bit: the data chunk ends below 4 GiB. */
const MAX_DATA_BYTES = 0xffffffff - (HEADER_BYTES - 8);

export interface WavWriterOptions {
  sampleRateHz: number;
  channels?: number;
}

export class WavStreamWriter {
  private dataBytes = 0;
  private clipped = 0;

  private constructor(
    private readonly file: PendingFile,
    readonly sampleRateHz: number,
    readonly channels: number,
  ) {}

  /**
   * Starts `path` (created or replaced by `finish()`). Fails here, before any audio is made, with
   * OUTPUT_UNWRITABLE when `path` names a folder or its folder is missing or not writable — what
   * would otherwise surface only at `finish()`, after the work.
   */
  static create(path: string, opts: WavWriterOptions): WavStreamWriter {
    const file = PendingFile.open(path, {
      folder: `Give a file name for the WAV, e.g. --out ${join(path, "speech.wav")}.`,
      unwritable: "Pass --out in a writable folder.",
    });
    const channels = opts.channels ?? 1;
    const bad = (message: string) => {
      file.discard();
      return new LfmError("INVALID_ARGUMENT", message);
    };
    if (!Number.isInteger(opts.sampleRateHz) || opts.sampleRateHz <= 0) throw bad(`a WAV sample rate must be a positive integer (got ${opts.sampleRateHz}).`);
    if (!Number.isInteger(channels) || channels < 1 || channels > 16) throw bad(`a WAV needs 1 to 16 channels (got ${channels}).`);
    const writer = new WavStreamWriter(file, opts.sampleRateHz, channels);
    file.write(writer.header(), 0);
    return writer;
  }

  get path(): string {
    return this.file.path;
  }

  /** Samples written so far (per channel). */
  get frames(): number {
    return this.dataBytes / (BYTES_PER_SAMPLE * this.channels);
  }

  get seconds(): number {
    return this.frames / this.sampleRateHz;
  }

  /** Samples beyond [-1, 1] that were clipped so far. */
  get clippedSamples(): number {
    return this.clipped;
  }

  /** Appends interleaved float samples in [-1, 1] (clipped beyond), converted to 16-bit PCM. */
  write(samples: Float32Array): void {
    if (samples.length % this.channels !== 0) throw new LfmError("INVALID_ARGUMENT", `${samples.length} samples do not divide into ${this.channels} channels.`);
    if (this.dataBytes + samples.length * BYTES_PER_SAMPLE > MAX_DATA_BYTES) throw new LfmError("INVALID_ARGUMENT", "the WAV would exceed the format's 4 GiB limit; write shorter files.");
    const pcm = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      let s = samples[i];
      if (!(s >= -1 && s <= 1)) {
        this.clipped++;
        s = s > 1 ? 1 : s < -1 ? -1 : 0; // NaN → silence
      }
      pcm[i] = Math.round(s < 0 ? s * 0x8000 : s * 0x7fff);
    }
    this.file.write(new Uint8Array(pcm.buffer), HEADER_BYTES + this.dataBytes);
    this.dataBytes += pcm.byteLength;
  }

  /** Completes the header and moves the file to `path`. Returns the path. */
  finish(): string {
    this.file.write(this.header(), 0);
    this.file.commit();
    return this.path;
  }

  /** Drops everything written; `path` is left as it was. */
  discard(): void {
    this.file.discard();
  }

  /** RIFF/WAVE header: "fmt " chunk (PCM, 16-bit) then the "data" chunk's size. */
  private header(): Uint8Array {
    const h = Buffer.alloc(HEADER_BYTES);
    const blockAlign = this.channels * BYTES_PER_SAMPLE;
    h.write("RIFF", 0, "ascii");
    h.writeUInt32LE(HEADER_BYTES - 8 + this.dataBytes, 4);
    h.write("WAVE", 8, "ascii");
    h.write("fmt ", 12, "ascii");
    h.writeUInt32LE(16, 16);
    h.writeUInt16LE(1, 20); // PCM
    h.writeUInt16LE(this.channels, 22);
    h.writeUInt32LE(this.sampleRateHz, 24);
    h.writeUInt32LE(this.sampleRateHz * blockAlign, 28);
    h.writeUInt16LE(blockAlign, 32);
    h.writeUInt16LE(8 * BYTES_PER_SAMPLE, 34);
    h.write("data", 36, "ascii");
    h.writeUInt32LE(this.dataBytes, 40);
    return h;
  }
}
