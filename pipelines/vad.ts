/**
 * Turns cut from a live stream: an energy voice-activity detector with a hangover, the simple kind
 * that works for one speaker close to the microphone.
 *
 *   30 ms frames → RMS in dBFS → voiced when above max(thresholdDb, noise floor + marginDb) →
 *   speech starts after minSpeechMs of voiced frames (with preRollMs of audio before it, so the
 *   first syllable is kept) → ends after hangoverMs of unvoiced frames, or at maxTurnSeconds
 *
 * The noise floor follows the quietest frames (at once down, over seconds up), so a steady hum
 * raises the threshold instead of reading as endless speech, while the gaps between words keep
 * it low during speech. `readPcmS16le` turns a byte stream of 16-bit
 * little-endian mono PCM (what `arecord -f S16_LE -c 1 -t raw` writes) into float blocks.
 */
import { LfmError } from "../text-core/errors.ts";

export interface VadOptions {
  /** Frames quieter than this are never speech (default -45 dBFS). */
  thresholdDb?: number;
  /** Speech must be this far above the tracked noise floor (default 10 dB). */
  marginDb?: number;
  /** Voiced time that starts a turn (default 90 ms): clicks and taps are shorter. */
  minSpeechMs?: number;
  /** Unvoiced time that ends a turn (default 700 ms): pauses between words are shorter. */
  hangoverMs?: number;
  /** Audio kept before the start of speech (default 300 ms). */
  preRollMs?: number;
  /** A turn is cut at this length even without a pause (default 30 s: one transcription window). */
  maxTurnSeconds?: number;
}

const FRAME_MS = 30;

export class VoiceActivityDetector {
  readonly frameSamples: number;
  private readonly thresholdDb: number;
  private readonly marginDb: number;
  private readonly startFrames: number;
  private readonly endFrames: number;
  private readonly preRollFrames: number;
  private readonly maxTurnFrames: number;
  /** Samples not yet a whole frame. */
  private partial: Float32Array;
  private partialLength = 0;
  /** Recent frames while no turn is open (the pre-roll and the voiced run that may start one). */
  private recent: Float32Array[] = [];
  private voicedRun = 0;
  private turn: Float32Array[] | null = null;
  private silentRun = 0;
  /** Starts low: speech at the very start of a stream is speech. */
  private noiseDb = -90;

  constructor(
    readonly sampleRateHz: number,
    opts: VadOptions = {},
  ) {
    if (!Number.isInteger(sampleRateHz) || sampleRateHz < 8000) throw new LfmError("INVALID_ARGUMENT", `the voice detector needs a sample rate of at least 8000 Hz (got ${sampleRateHz}).`);
    this.frameSamples = Math.round((sampleRateHz * FRAME_MS) / 1000);
    const frames = (ms: number) => Math.max(1, Math.round(ms / FRAME_MS));
    this.thresholdDb = opts.thresholdDb ?? -45;
    this.marginDb = opts.marginDb ?? 10;
    this.startFrames = frames(opts.minSpeechMs ?? 90);
    this.endFrames = frames(opts.hangoverMs ?? 700);
    this.preRollFrames = Math.round((opts.preRollMs ?? 300) / FRAME_MS);
    this.maxTurnFrames = frames((opts.maxTurnSeconds ?? 30) * 1000);
    this.partial = new Float32Array(this.frameSamples);
  }

  /** Whether a turn is open (speech started and not yet ended). */
  get speaking(): boolean {
    return this.turn !== null;
  }

  /** Feeds samples; returns the turns they completed (usually none), each one recording. */
  push(samples: Float32Array): Float32Array[] {
    const done: Float32Array[] = [];
    let at = 0;
    while (at < samples.length) {
      const take = Math.min(this.frameSamples - this.partialLength, samples.length - at);
      this.partial.set(samples.subarray(at, at + take), this.partialLength);
      this.partialLength += take;
      at += take;
      if (this.partialLength < this.frameSamples) break;
      const frame = this.partial.slice();
      this.partialLength = 0;
      const turn = this.frame(frame);
      if (turn) done.push(turn);
    }
    return done;
  }

  /** The end of the stream: an open turn is complete as it is (a stream that stopped mid-turn); else null. */
  flush(): Float32Array | null {
    if (this.partialLength > 0 && this.turn) this.turn.push(this.partial.slice(0, this.partialLength));
    this.partialLength = 0;
    return this.close();
  }

  private frame(frame: Float32Array): Float32Array | null {
    const db = levelDb(frame);
    const voiced = db > Math.max(this.thresholdDb, this.noiseDb + this.marginDb);
    this.trackNoise(db);
    if (this.turn) {
      this.turn.push(frame);
      this.silentRun = voiced ? 0 : this.silentRun + 1;
      if (this.silentRun >= this.endFrames || this.turn.length >= this.maxTurnFrames) return this.close();
      return null;
    }
    this.recent.push(frame);
    this.voicedRun = voiced ? this.voicedRun + 1 : 0;
    if (this.voicedRun >= this.startFrames) {
      this.turn = this.recent.slice(-(this.voicedRun + this.preRollFrames));
      this.recent = [];
      this.silentRun = 0;
    } else if (this.recent.length > this.preRollFrames + this.startFrames) {
      this.recent.shift();
    }
    return null;
  }

  private trackNoise(db: number): void {
    if (!Number.isFinite(db)) return;
    // Down at once; up by 2% of the difference per frame (a steady sound is floor within ~2 s),
    // while the gaps between words pull it back down during speech.
    if (db < this.noiseDb) this.noiseDb = db;
    else this.noiseDb += 0.02 * (db - this.noiseDb);
  }

  private close(): Float32Array | null {
    const frames = this.turn;
    this.turn = null;
    this.voicedRun = 0;
    this.silentRun = 0;
    if (!frames) return null;
    const out = new Float32Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      out.set(f, at);
      at += f.length;
    }
    return out;
  }
}

/** A frame's RMS level in dBFS (-Infinity for digital silence). */
export function levelDb(frame: Float32Array): number {
  let sum = 0;
  for (const x of frame) sum += x * x;
  return 10 * Math.log10(sum / Math.max(1, frame.length));
}

/** 16-bit little-endian mono PCM bytes → float blocks in [-1, 1); an odd byte waits for the next chunk. */
export async function* readPcmS16le(bytes: AsyncIterable<Uint8Array>): AsyncGenerator<Float32Array> {
  let carry: number | null = null;
  for await (const chunk of bytes) {
    let data = chunk;
    if (carry !== null) {
      const joined = new Uint8Array(chunk.length + 1);
      joined[0] = carry;
      joined.set(chunk, 1);
      data = joined;
      carry = null;
    }
    const whole = data.length & ~1;
    if (whole < data.length) carry = data[data.length - 1];
    if (whole === 0) continue;
    const view = new DataView(data.buffer, data.byteOffset, whole);
    const out = new Float32Array(whole / 2);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 32768;
    yield out;
  }
}
