/**
 * Runs a built LFM2 graph with onnxruntime-node and owns its decode state (conv state and KV
 * cache per layer). One `DecodeState` per generation; prefill and decode are the same call.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import type { Lfm2Config } from "./config.ts";
import type { EmbeddingTable } from "./embeddings.ts";
import { LfmError } from "./errors.ts";
import {
  type Lfm2GraphIO,
  pastConvName,
  pastKeyName,
  pastValueName,
  presentConvName,
  newKeyName,
  newValueName,
} from "./lfm2.ts";

export interface SessionOptions {
  /** Intra-op threads; default: the number of physical cores. */
  threads?: number;
}

/** Physical cores (SMT siblings share one core's FMA units, so extra threads only add contention). */
export function defaultThreads(): number {
  try {
    const cores = new Set<string>();
    let physical = "0";
    for (const line of readFileSync("/proc/cpuinfo", "utf8").split("\n")) {
      const [key, value] = line.split(":").map((s) => s?.trim());
      if (key === "physical id") physical = value;
      else if (key === "core id") cores.add(`${physical}/${value}`);
    }
    if (cores.size > 0) return Math.min(cores.size, availableParallelism());
  } catch {
    // not Linux: fall through
  }
  return availableParallelism();
}

export async function createSession(modelPathOrBytes: string | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: opts.threads ?? defaultThreads(),
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // Memory patterns are planned per input shape, and a decode step's shapes change every token:
    // with them on, LFM2-1.2B q4 peaked 60–90 MB higher over a 512 + 128 token run (350M: 30 MB)
    // at the same speed.
    enableMemPattern: false,
  };
  try {
    return typeof modelPathOrBytes === "string"
      ? await ort.InferenceSession.create(modelPathOrBytes, options)
      : await ort.InferenceSession.create(modelPathOrBytes, options);
  } catch (e) {
    throw new LfmError("RUNTIME_FAILED", `onnxruntime could not load the built graph: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * One attention layer's K or V cache, [B, kvHeads, P, hd], kept by the runtime. The graph reads
 * it in place as an input and returns only each call's new rows, which are merged in here: the
 * (b, h) blocks move up in place (last first, so nothing is overwritten before it moves) to make
 * room for S more rows each. Capacity grows by half when outgrown.
 */
export class KvCache {
  private buffer: Float32Array;
  length = 0;

  constructor(
    private readonly batch: number,
    private readonly heads: number,
    private readonly headDim: number,
    capacity: number,
  ) {
    this.buffer = new Float32Array(batch * heads * Math.max(1, capacity) * headDim);
  }

  /** The cache as a graph input (a view, no copy). */
  tensor(): ort.Tensor {
    const n = this.batch * this.heads * this.length * this.headDim;
    return new ort.Tensor("float32", this.buffer.subarray(0, n), [this.batch, this.heads, this.length, this.headDim]);
  }

  /** Appends rows given as [B, S, heads·hd]. */
  append(rows: Float32Array, S: number): void {
    const { batch, heads, headDim: hd } = this;
    const P = this.length;
    const T = P + S;
    const needed = batch * heads * T * hd;
    if (this.buffer.length < needed) {
      const grown = new Float32Array(Math.max(needed, Math.ceil(this.buffer.length * 1.5)));
      grown.set(this.buffer.subarray(0, batch * heads * P * hd));
      this.buffer = grown;
    }
    const buf = this.buffer;
    for (let block = batch * heads - 1; block >= 0; block--) {
      const b = Math.floor(block / heads);
      const h = block % heads;
      if (P > 0 && block > 0) buf.copyWithin(block * T * hd, block * P * hd, (block + 1) * P * hd);
      for (let s = 0; s < S; s++) {
        const from = ((b * S + s) * heads + h) * hd;
        buf.set(rows.subarray(from, from + hd), (block * T + P + s) * hd);
      }
    }
    this.length = T;
  }
}

/** Per-sequence decode state: conv windows, KV caches, the padding mask and next positions. */
export class DecodeState {
  /** [B, total] flags: 1 for real tokens, 0 for padding. */
  readonly mask: number[][];
  readonly nextPosition: number[];
  /** Conv windows by input name (`past_conv.i`). */
  readonly convState = new Map<string, ort.Tensor>();
  readonly keys = new Map<number, KvCache>();
  readonly values = new Map<number, KvCache>();

  constructor(
    readonly batch: number,
    private readonly config: Lfm2Config,
    private readonly io: Lfm2GraphIO,
    /** KV positions to allocate up front; the caches grow by half beyond it. */
    capacity = 256,
  ) {
    this.mask = Array.from({ length: batch }, () => []);
    this.nextPosition = new Array(batch).fill(0);
    for (const i of io.attentionLayers) {
      this.keys.set(i, new KvCache(batch, config.numKvHeads, config.headDim, capacity));
      this.values.set(i, new KvCache(batch, config.numKvHeads, config.headDim, capacity));
    }
    this.reset();
  }

  /** Empties the state for a new sequence, keeping the KV buffers (no reallocation). */
  reset(): void {
    const { batch } = this;
    const D = this.config.hiddenSize;
    const L = this.config.convLCache;
    for (const row of this.mask) row.length = 0;
    this.nextPosition.fill(0);
    for (const i of this.io.convLayers) {
      this.convState.set(pastConvName(i), new ort.Tensor("float32", new Float32Array(batch * (L - 1) * D), [batch, L - 1, D]));
    }
    for (const cache of [...this.keys.values(), ...this.values.values()]) cache.length = 0;
  }

  get length(): number {
    return this.mask[0].length;
  }
}

export interface ForwardRequest {
  /** [B][S] token ids for this call (padding included, left-aligned). */
  ids: number[][];
  /** [B][S] 1 for real tokens, 0 for padding; default all ones. */
  mask?: number[][];
  /** How many trailing positions to produce logits/hidden states for (default 1). */
  keep?: number;
  /** Rows of the flattened [B·S, D] input embeddings to replace (vision / audio features). */
  overrides?: { index: number[]; values: Float32Array };
  /** Extra graph outputs to return (e.g. `hidden.3`); such a call runs in one piece. */
  extraOutputs?: string[];
}

export interface ForwardResult {
  /**
   * [B, keep, V] logits or [B, keep, D] hidden states, row-major; a fresh array each call.
   */
  output: Float32Array;
  width: number;
  extra: Record<string, ort.Tensor>;
}

export interface RuntimeOptions {
  /**
   * Longest piece a prompt is run in (default 128). Attention's working memory grows with the
   * square of a call's length, so a long prompt runs as consecutive pieces through the same
   * decode state — the same result, a bounded peak. (Single sequences only; see forward.)
   */
  prefillChunk?: number;
}

export const DEFAULT_PREFILL_CHUNK = 128;

export class Lfm2Runtime {
  readonly prefillChunk: number;

  constructor(
    readonly session: ort.InferenceSession,
    readonly config: Lfm2Config,
    readonly io: Lfm2GraphIO,
    /** The token-embedding rows (read per call; see embeddings.ts). */
    readonly embeddings: EmbeddingTable,
    /** The model.onnx this session runs (for profiling), when it came from a file. */
    readonly graphPath?: string,
    options: RuntimeOptions = {},
  ) {
    const chunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 1) throw new LfmError("INVALID_ARGUMENT", `prefillChunk must be a positive integer (got ${chunk}).`);
    this.prefillChunk = chunk;
  }

  /** `capacity`: KV positions to allocate up front (prompt + new tokens avoids any regrowth). */
  newState(batch = 1, capacity?: number): DecodeState {
    return new DecodeState(batch, this.config, this.io, capacity);
  }

  /** Runs the next S tokens of every sequence through the model, advancing `state`. */
  async forward(state: DecodeState, req: ForwardRequest): Promise<ForwardResult> {
    const B = state.batch;
    const S = req.ids[0]?.length ?? 0;
    const D = this.config.hiddenSize;
    if (req.ids.length !== B || req.ids.some((r) => r.length !== S) || (req.mask && (req.mask.length !== B || req.mask.some((r) => r.length !== S)))) {
      throw new LfmError("INVALID_ARGUMENT", `forward expects ${B} rows of equal length (ids and mask)`);
    }
    if (S === 0) throw new LfmError("EMPTY_PROMPT", "nothing to run: the token list is empty.");
    const total = state.length + S;
    if (total > this.config.maxPositionEmbeddings) {
      throw new LfmError(
        "PROMPT_TOO_LONG",
        `${total} tokens exceed the model's context of ${this.config.maxPositionEmbeddings}; shorten the prompt or lower maxTokens.`,
      );
    }
    const keep = Math.min(req.keep ?? 1, S);
    const embeds = new Float32Array(B * S * D);
    for (let b = 0; b < B; b++) this.embeddings.lookup(req.ids[b], embeds, b * S * D);
    if (req.overrides) {
      const { index, values } = req.overrides;
      if (values.length !== index.length * D) throw new LfmError("INVALID_ARGUMENT", `overrides: ${index.length} rows need ${index.length * D} values, got ${values.length}.`);
      for (let r = 0; r < index.length; r++) {
        const row = index[r];
        if (!Number.isInteger(row) || row < 0 || row >= B * S) throw new LfmError("INVALID_ARGUMENT", `overrides: row ${row} is outside the ${B}×${S} input.`);
        embeds.set(values.subarray(r * D, (r + 1) * D), row * D);
      }
    }
    const mask = req.mask ?? req.ids.map((r) => r.map(() => 1));
    // onnxruntime's GroupQueryAttention takes several new positions after a past only for one
    // sequence, so batches (and calls asking for per-layer outputs) run in one piece.
    if (req.extraOutputs?.length || S <= this.prefillChunk || B > 1) return this.run(state, embeds, mask, S, keep, req.extraOutputs ?? []);

    // A long prompt in pieces; each piece keeps the positions it holds of the last `keep`.
    const width = this.io.output === "logits" ? this.config.vocabSize : D;
    const output = new Float32Array(B * keep * width);
    for (let s0 = 0; s0 < S; s0 += this.prefillChunk) {
      const s1 = Math.min(S, s0 + this.prefillChunk);
      const Sc = s1 - s0;
      const kept = Math.max(0, s1 - Math.max(s0, S - keep));
      const piece = embeds.subarray(s0 * D, s1 * D); // one sequence (B = 1): a view, no copy
      const out = await this.run(state, piece, mask.map((r) => r.slice(s0, s1)), Sc, Math.max(1, kept), []);
      if (kept === 0) continue;
      const at = keep - (S - s1) - kept; // first kept position of this piece within the output
      for (let b = 0; b < B; b++) output.set(out.output.subarray(b * kept * width, (b + 1) * kept * width), (b * keep + at) * width);
    }
    return { output, width, extra: {} };
  }

  /** One session call over `S` positions whose input embeddings are `embeds` [B, S, D]. */
  private async run(state: DecodeState, embeds: Float32Array, mask: number[][], S: number, keep: number, extraOutputs: string[]): Promise<ForwardResult> {
    const B = state.batch;
    const total = state.length + S;
    const positions = new BigInt64Array(B * S);
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        const real = mask[b][s];
        state.mask[b].push(real ? 1 : 0);
        // HF: position = cumsum(mask) - 1, so left padding does not shift real tokens.
        positions[b * S + s] = BigInt(real ? state.nextPosition[b]++ : 0);
      }
    }
    const maskData = new BigInt64Array(B * total);
    for (let b = 0; b < B; b++) for (let t = 0; t < total; t++) maskData[b * total + t] = BigInt(state.mask[b][t]);

    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor("float32", embeds, [B, S, this.config.hiddenSize]),
      attention_mask: new ort.Tensor("int64", maskData, [B, total]),
      position_ids: new ort.Tensor("int64", positions, [B, S]),
      num_logits_to_keep: new ort.Tensor("int64", BigInt64Array.from([BigInt(keep)]), [1]),
    };
    for (const [name, t] of state.convState) feeds[name] = t;
    for (const i of this.io.attentionLayers) {
      feeds[pastKeyName(i)] = (state.keys.get(i) as KvCache).tensor();
      feeds[pastValueName(i)] = (state.values.get(i) as KvCache).tensor();
    }

    const fetches = [this.io.output, ...extraOutputs];
    for (const i of this.io.convLayers) fetches.push(presentConvName(i));
    for (const i of this.io.attentionLayers) fetches.push(newKeyName(i), newValueName(i));
    // (No preallocated output tensors: onnxruntime-node 1.30 writes into them and then copies each
    // into a fresh ArrayBuffer all the same, so they only added a copy and ~8 MB of peak RSS.)
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds, fetches);
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while running the model: ${(e as Error).message}`, { cause: e });
    }
    for (const i of this.io.convLayers) state.convState.set(pastConvName(i), out[presentConvName(i)]);
    for (const i of this.io.attentionLayers) {
      (state.keys.get(i) as KvCache).append(out[newKeyName(i)].data as Float32Array, S);
      (state.values.get(i) as KvCache).append(out[newValueName(i)].data as Float32Array, S);
    }
    const main = out[this.io.output];
    const extra: Record<string, ort.Tensor> = {};
    for (const name of extraOutputs) extra[name] = out[name];
    return { output: main.data as Float32Array, width: main.dims[2], extra };
  }

  async release(): Promise<void> {
    this.embeddings.close();
    await this.session.release();
  }
}
