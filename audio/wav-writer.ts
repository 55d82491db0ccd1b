/**
 * A WAV file written as audio arrives: 16-bit PCM (mono by default), samples appended to a
 * temporary file beside the target, the header's sizes filled in and the file renamed into place
 * only by `finish()`. An interrupted run therefore leaves either a complete WAV of what was
 * finished or no file at all — never a truncated one under the target name.
 *
 * The header is the canonical 44-byte RIFF/WAVE PCM header, written here rather than with
 * `wavefile` because `wavefile` builds whole files in memory, and streaming is the point.
 */
import { closeSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { LfmError } from "../text-core/errors.ts";

const HEADER_BYTES = 44;
const BYTES_PER_SAMPLE = 2;
/** RIFF sizes are 32-bit: the data chunk ends below 4 GiB. */
const MAX_DATA_BYTES = 0xffffffff - (HEADER_BYTES - 8);

export interface WavWriterOptions {
  sampleRateHz: number;
  channels?: number;
}

/** OUTPUT_UNWRITABLE when `path` names a folder (existing, or written with a trailing separator). */
function checkDestination(path: string): void {
  const folder = (why: string) =>
    new LfmError("OUTPUT_UNWRITABLE", `cannot write ${path}: ${why}. Give a file name for the WAV, e.g. --out ${join(path, "speech.wav")}.`);
  if (path.endsWith("/") || path.endsWith(sep)) throw folder("it names a folder (it ends with a path separator)");
  let isDirectory = false;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch {
    return; // nothing there yet (the usual case); the folder's own problems show when the file is opened
  }
  if (isDirectory) throw folder("it is a folder");
}

export class WavStreamWriter {
  private fd: number | null;
  private dataBytes = 0;
  private clipped = 0;
  /** Removes the temporary file if the process exits first (e.g. a second Ctrl-C). */
  private readonly onExit = () => {
    try {
      rmSync(this.tempPath, { force: true });
    } catch {
      // best effort at exit
    }
  };

  private constructor(
    readonly path: string,
    readonly tempPath: string,
    fd: number,
    readonly sampleRateHz: number,
    readonly channels: number,
  ) {
    this.fd = fd;
    process.once("exit", this.onExit);
  }

  /**
   * Starts `path` (created or replaced by `finish()`). Fails here, before any audio is made, with
   * OUTPUT_UNWRITABLE when `path` names a folder or its folder is missing or not writable — what
   * would otherwise surface only at `finish()`, after the work.
   */
  static create(path: string, opts: WavWriterOptions): WavStreamWriter {
    checkDestination(path);
    const channels = opts.channels ?? 1;
    if (!Number.isInteger(opts.sampleRateHz) || opts.sampleRateHz <= 0) throw new LfmError("INVALID_ARGUMENT", `a WAV sample rate must be a positive integer (got ${opts.sampleRateHz}).`);
    if (!Number.isInteger(channels) || channels < 1 || channels > 16) throw new LfmError("INVALID_ARGUMENT", `a WAV needs 1 to 16 channels (got ${channels}).`);
    const tempPath = join(dirname(path), `.${basename(path)}.partial-${process.pid}`);
    let fd: number;
    try {
      fd = openSync(tempPath, "w");
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why =
        err.code === "ENOENT" ? `its folder ${dirname(path)} does not exist` : err.code === "ENOTDIR" ? `${dirname(path)} is not a folder` : err.code === "EACCES" || err.code === "EPERM" ? `its folder ${dirname(path)} is not writable` : err.message;
      throw new LfmError("OUTPUT_UNWRITABLE", `cannot write ${path}: ${why}. Pass --out in a writable folder.`, { cause: e });
    }
    const writer = new WavStreamWriter(path, tempPath, fd, opts.sampleRateHz, channels);
    writer.writeBytes(writer.header(), 0);
    return writer;
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
    this.writeBytes(new Uint8Array(pcm.buffer), HEADER_BYTES + this.dataBytes);
    this.dataBytes += pcm.byteLength;
  }

  /** Completes the header and moves the file to `path`. Returns the path. */
  finish(): string {
    this.writeBytes(this.header(), 0);
    this.close();
    try {
      renameSync(this.tempPath, this.path);
    } catch (e) {
      rmSync(this.tempPath, { force: true });
      throw new LfmError("OUTPUT_UNWRITABLE", `cannot write ${this.path}: ${(e as Error).message}.`, { cause: e });
    }
    return this.path;
  }

  /** Drops everything written; `path` is left as it was. */
  discard(): void {
    this.close();
    rmSync(this.tempPath, { force: true });
  }

  private close(): void {
    process.off("exit", this.onExit);
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private writeBytes(bytes: Uint8Array, position: number): void {
    if (this.fd === null) throw new LfmError("INVALID_ARGUMENT", `${this.path} is already finished.`);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, position + done);
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
