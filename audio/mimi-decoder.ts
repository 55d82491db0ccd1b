/**
 * Loads the Mimi decoder graph (built once, cached on disk) and runs it: a whole clip at once
 * (`decode`) or frame by frame (`stream().push`), with the streaming state of `mimi.ts` carried
 * between calls. Both paths run the same graph; `decode` is a stream fed in chunks, so memory stays
 * bounded on long clips.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { LfmError } from "../text-core/errors.ts";
import { builderFingerprint, openCachedGraph } from "../text-core/graph-cache.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { createSession } from "../text-core/runtime.ts";
import { type MimiGraphIO, buildMimiDecoderGraph, newKeyName, newValueName, nextStateName, pastKeyName, pastValueName } from "./mimi.ts";
import { type MimiConfig, locateMimi } from "./mimi-config.ts";
import { openMimiWeights } from "./mimi-weights.ts";

export interface MimiLoadOptions {
  /** Transformer MatMuls: "fp32" (default; the decoder is small and quality-critical), "q8" or "q4". */
  precision?: Precision;
  threads?: number;
  /** Where built graphs are cached; `false` builds in a temporary folder removed after loading. */
  cacheDir?: string | false;
  onProgress?: (stage: string) => void;
}

/** Frames per graph call when decoding a whole clip (bounds the attention matrix and buffers). */
const DECODE_CHUNK_FRAMES = 32;

/** The sources that decide the graph: part of the cache key, so an edited builder never runs a stale graph. */
const BUILDER_SOURCES = ["mimi", "mimi-weights", "mimi-config"];

export class MimiDecoder {
  private constructor(
    readonly config: MimiConfig,
    private readonly session: ort.InferenceSession,
    private readonly io: MimiGraphIO,
  ) {}

  /** `path`: a Mimi folder or file (see `locateMimi`), e.g. the LFM2-Audio checkpoint folder. */
  static async load(path: string, opts: MimiLoadOptions = {}): Promise<MimiDecoder> {
    const progress = opts.onProgress ?? (() => {});
    const { weights: file, config } = locateMimi(path);
    const precision = opts.precision ?? "fp32";
    const weights = openMimiWeights(file, { numHeads: config.transformer.numHeads });
    try {
      const session = await openCachedGraph({
        kind: "mimi",
        files: [file, ...(existsSync(config.source) ? [config.source] : [])],
        options: { precision, config: { ...config, source: undefined }, builder: builderFingerprint(import.meta.dirname, BUILDER_SOURCES) },
        build: () => buildMimiDecoderGraph(config, weights, precision).builder,
        open: (graphDir) => createSession(join(graphDir, "model.onnx"), { threads: opts.threads }),
        cacheDir: opts.cacheDir,
        progress,
        stages: { build: "building the Mimi decoder graph", rebuild: "the cached Mimi graph is unreadable; rebuilding it" },
      });
      return new MimiDecoder(config, session, graphIO(session, config));
    } finally {
      weights.close();
    }
  }

  /** A fresh stream: zero conv states, empty attention caches, position 0. */
  stream(): MimiStream {
    return new MimiStream(this.config, this.session, this.io);
  }

  /** Decodes whole frames (`frames[t]` = the codebook codes of frame t) to 24 kHz samples, 1920 per frame. */
  async decode(frames: readonly (readonly number[])[], signal?: AbortSignal): Promise<Float32Array> {
    const out = new Float32Array(frames.length * this.config.samplesPerFrame);
    const s = this.stream();
    for (let t = 0; t < frames.length; t += DECODE_CHUNK_FRAMES) {
      if (signal?.aborted) throw new LfmError("ABORTED", "Mimi decoding was cancelled.");
      out.set(await s.push(frames.slice(t, t + DECODE_CHUNK_FRAMES)), t * this.config.samplesPerFrame);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** The graph's state layout, read back from the session (a cache hit has no builder to ask). */
function graphIO(session: ort.InferenceSession, config: MimiConfig): MimiGraphIO {
  const states: MimiGraphIO["states"] = [];
  for (const meta of session.inputMetadata) {
    if (!meta.name.startsWith("state.") || !meta.isTensor) continue;
    const [, channels, length] = meta.shape;
    if (typeof channels !== "number" || typeof length !== "number") throw new LfmError("RUNTIME_FAILED", `the cached Mimi graph declares ${meta.name} without a fixed shape; clear the graph cache.`);
    states.push({ name: meta.name, channels, length });
  }
  const t = config.transformer;
  return { states, layers: t.numLayers, dModel: t.dModel, keptSteps: t.context - 1 };
}

/**
 * The last `rows` rows of a growing [steps, width] matrix, always contiguous (so onnxruntime reads
 * it in place): rows are written into a buffer twice the window and slid back to its start when it
 * fills, so each row moves at most once per window.
 */
class SlidingRows {
  private buffer: Float32Array;
  private end = 0;
  length = 0;

  constructor(
    private readonly rows: number,
    private readonly width: number,
  ) {
    this.buffer = new Float32Array(2 * Math.max(rows, 1) * width);
  }

  append(data: Float32Array): void {
    const n = data.length / this.width;
    if (this.rows === 0) return;
    if (n >= this.rows) {
      this.buffer.set(data.subarray(data.length - this.rows * this.width), 0);
      this.end = this.rows;
      this.length = this.rows;
      return;
    }
    if (this.end + n > this.buffer.length / this.width) {
      const keep = Math.min(this.length, this.rows - n);
      this.buffer.copyWithin(0, (this.end - keep) * this.width, this.end * this.width);
      this.end = keep;
      this.length = keep;
    }
    this.buffer.set(data, this.end * this.width);
    this.end += n;
    this.length = Math.min(this.length + n, this.rows);
  }

  tensor(): ort.Tensor {
    const start = (this.end - this.length) * this.width;
    return new ort.Tensor("float32", this.buffer.subarray(start, this.end * this.width), [1, this.length, this.width]);
  }
}

/** One decoding stream (batch 1): feed frames in order, get their samples. */
export class MimiStream {
  private readonly states = new Map<string, ort.Tensor>();
  private readonly keys: SlidingRows[] = [];
  private readonly values: SlidingRows[] = [];
  private position = 0;
  /** Frames decoded so far. */
  frames = 0;

  constructor(
    private readonly config: MimiConfig,
    private readonly session: ort.InferenceSession,
    private readonly io: MimiGraphIO,
  ) {
    for (const st of io.states) this.states.set(st.name, new ort.Tensor("float32", new Float32Array(st.channels * st.length), [1, st.channels, st.length]));
    for (let l = 0; l < io.layers; l++) {
      this.keys.push(new SlidingRows(io.keptSteps, io.dModel));
      this.values.push(new SlidingRows(io.keptSteps, io.dModel));
    }
  }

  /** Decodes the next frames (each `numCodebooks` codes in [0, bins)); returns `samplesPerFrame` samples per frame. */
  async push(frames: readonly (readonly number[])[]): Promise<Float32Array> {
    const K = this.config.numCodebooks;
    const T = frames.length;
    if (T === 0) return new Float32Array(0);
    const codes = new BigInt64Array(K * T);
    frames.forEach((frame, t) => {
      checkFrame(frame, this.frames + t, this.config);
      for (let k = 0; k < K; k++) codes[k * T + t] = BigInt(frame[k]);
    });
    const feeds: Record<string, ort.Tensor> = { codes: new ort.Tensor("int64", codes, [1, K, T]) };
    for (const [name, tensor] of this.states) feeds[name] = tensor;
    if (this.io.layers > 0) feeds.position_offset = new ort.Tensor("int64", BigInt64Array.from([BigInt(this.position)]), [1]);
    for (let l = 0; l < this.io.layers; l++) {
      feeds[pastKeyName(l)] = this.keys[l].tensor();
      feeds[pastValueName(l)] = this.values[l].tensor();
    }
    const fetches = ["audio", ...[...this.states.keys()].map(nextStateName)];
    for (let l = 0; l < this.io.layers; l++) fetches.push(newKeyName(l), newValueName(l));
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds, fetches);
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while decoding Mimi frames: ${(e as Error).message}`, { cause: e });
    }
    for (const name of this.states.keys()) this.states.set(name, out[nextStateName(name)]);
    for (let l = 0; l < this.io.layers; l++) {
      this.keys[l].append(out[newKeyName(l)].data as Float32Array);
      this.values[l].append(out[newValueName(l)].data as Float32Array);
    }
    this.position += T * this.config.upsampleStride;
    this.frames += T;
    return out.audio.data as Float32Array;
  }
}

/** A frame the decoder can take: `numCodebooks` integer codes in [0, bins). */
export function checkFrame(frame: readonly number[], index: number, config: MimiConfig): void {
  const K = config.numCodebooks;
  if (!Array.isArray(frame) || frame.length !== K) {
    throw new LfmError("INVALID_ARGUMENT", `audio frame ${index} has ${Array.isArray(frame) ? frame.length : "no"} codes; Mimi decodes ${K} codebooks per frame.`);
  }
  for (let k = 0; k < K; k++) {
    const c = frame[k];
    if (!Number.isInteger(c) || c < 0 || c >= config.quantizer.bins) {
      const eoa = c === config.quantizer.bins ? ` (${c} is LFM2-Audio's end-of-audio code: drop that frame before decoding)` : "";
      throw new LfmError("INVALID_ARGUMENT", `audio frame ${index}, codebook ${k}: code ${c} is outside [0, ${config.quantizer.bins})${eoa}.`);
    }
  }
}
