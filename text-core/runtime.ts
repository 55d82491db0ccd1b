/**
 * Runs a built LFM2 graph with onnxruntime-node and owns its decode state (conv state and KV
 * cache per layer). One `DecodeState` per generation; prefill and decode are the same call.
 */
import { readFileSync, statSync, unlinkSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
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
  /** Turns on onnxruntime's profiler, which writes `<prefix>_<timestamp>.json` (lfm profile). */
  profileFilePrefix?: string;
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

/**
 * onnxruntime-node 1.30's Linux build starts Microsoft's telemetry client with its first session:
 * it reads /proc/self/cmdline (our prompts, when given as arguments) into a queue of events in
 * ~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db, tries HTTPS uploads, and parses
 * that command line recursively, so one argument of ~30 KB overflows the stack (SIGSEGV).
 * `ORT_DISABLE_TELEMETRY` stops all of it; it is read when the runtime's environment starts, so it
 * is set before the first session (a value the user set is left alone). docs/onnxruntime-telemetry.md.
 */
function disableRuntimeTelemetry(): void {
  process.env.ORT_DISABLE_TELEMETRY ??= "1";
}

/**
 * The most intra-op threads a session may have. onnxruntime starts every one of them (each with
 * its own stack and arena): `threads: 1000` took minutes and gigabytes before the first call.
 */
export function maxThreads(): number {
  return Math.max(16, 4 * availableParallelism());
}

/** `threads` as given by a caller, checked; the physical cores when absent. */
export function threadCount(threads: unknown): number {
  if (threads === undefined) return defaultThreads();
  const max = maxThreads();
  if (typeof threads !== "number" || !Number.isInteger(threads) || threads < 1 || threads > max) {
    throw new LfmError("INVALID_ARGUMENT", `threads (--threads) must be a whole number from 1 to ${max} (this machine has ${availableParallelism()} logical cores); got ${String(threads)}.`);
  }
  return threads;
}

export async function createSession(modelPathOrBytes: string | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  disableRuntimeTelemetry();
  const options: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threadCount(opts.threads),
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // Memory patterns are planned per input shape, and a decode step's shapes change every token:
    // with them on, LFM2-1.2B q4 peaked 60–90 MB higher over a 512 + 128 token run (350M: 30 MB)
    // at the same speed.
    enableMemPattern: false,
    ...(opts.profileFilePrefix === undefined ? {} : { enableProfiling: true, profileFilePrefix: opts.profileFilePrefix }),
  };
  try {
    return typeof modelPathOrBytes === "string"
      ? await ort.InferenceSession.create(modelPathOrBytes, options)
      : await ort.InferenceSession.create(modelPathOrBytes, options);
  } catch (e) {
    throw new LfmError("RUNTIME_FAILED", `onnxruntime could not load the built graph: ${(e as Error).message}`, { cause: e });
  } finally {
    removeStrayDebugLog();
  }
}

/**
 * With its telemetry on (the user's own ORT_DISABLE_TELEMETRY setting), onnxruntime-node 1.30
 * (Linux) opens an empty `mat-debug-<pid>.log` in the temporary folder when a session is created
 * and never removes it: one file per process, thousands after a script has
 * run `lfm search` in a loop. It stays open, so unlinking the name is safe (the descriptor lives
 * on); only an empty file of this process is touched.
 */
function removeStrayDebugLog(): void {
  const path = join(tmpdir(), `mat-debug-${process.pid}.log`);
  try {
    if (statSync(path).size === 0) unlinkSync(path);
  } catch {
    // absent (other platforms, other versions) or already gone
  }
}

/**
 * One attention layer's K or V cache, kept by the runtime and read by the graph in place (a view,
 * no copy). Each call's new rows come back from the graph and are written in here.
 *
 * Layout [B, heads, stride, hd]: every (b, h) block has room for `stride` ≥ `length` rows, and the
 * graph is given all of them — onnxruntime's GroupQueryAttention reads only the first
 * seqlens_k + 1 - S rows of each block ("right-padded" past), so appending S rows writes S rows
 * and moves nothing. When `length` outgrows `stride`, the stride grows to the next multiple of
 * `strideStep` and the blocks move up once (last first, in place). Padding rows cost attention a
 * zero-fill per call, so the step trades that against how often the blocks move: at 64, the
 * decode loop moves the cache once per 64 tokens instead of every token.
 * `strideStep` 1 keeps the cache packed (stride = length), for graphs that concatenate the past
 * themselves. The buffer holds `capacity` positions up front and grows by half when outgrown.
 */
export class KvCache {
  private buffer: Float32Array;
  private stride = 0;
  length = 0;

  constructor(
    private readonly batch: number,
    private readonly heads: number,
    private readonly headDim: number,
    capacity: number,
    private readonly strideStep = 1,
  ) {
    this.buffer = new Float32Array(batch * heads * Math.max(1, capacity) * headDim);
  }

  /** The cache as a graph input [B, heads, stride, hd] (a view, no copy). */
  tensor(): ort.Tensor {
    const n = this.batch * this.heads * this.stride * this.headDim;
    return new ort.Tensor("float32", this.buffer.subarray(0, n), [this.batch, this.heads, this.stride, this.headDim]);
  }

  /** Empties the cache for a new sequence, keeping its buffer. */
  reset(): void {
    this.length = 0;
    this.stride = 0;
  }

  /** An independent copy holding the same rows (only the used part of the buffer is copied). */
  clone(): KvCache {
    const copy = new KvCache(this.batch, this.heads, this.headDim, 0, this.strideStep);
    copy.buffer = this.buffer.slice(0, Math.max(this.batch * this.heads * this.stride * this.headDim, 1));
    copy.stride = this.stride;
    copy.length = this.length;
    return copy;
  }

  /** Bytes this cache holds in memory: its whole buffer (rows in use, padding rows and room to grow). */
  get bytes(): number {
    return this.buffer.byteLength;
  }

  /**
   * A cache of `rows.length` sequences: row i holds positions `from` … `length - 1` of row `row` of
   * `cache`, right-aligned to `length` positions; the columns before them are zeros (left padding,
   * which the attention mask hides). Room for `capacity` positions is allocated up front.
   */
  static gather(rows: readonly { cache: KvCache; row: number; from: number }[], length: number, capacity: number, strideStep: number): KvCache {
    const { heads, headDim: hd } = rows[0].cache;
    const stride = Math.max(1, Math.ceil(length / strideStep) * strideStep);
    const out = new KvCache(rows.length, heads, hd, Math.max(capacity, stride), strideStep);
    out.stride = stride;
    out.length = length;
    rows.forEach(({ cache, row, from }, i) => {
      const n = cache.length - from;
      if (n > length || n < 0) throw new LfmError("INVALID_ARGUMENT", `KvCache.gather: row ${row} holds ${n} positions, more than ${length}.`);
      for (let h = 0; h < heads; h++) {
        const src = ((row * heads + h) * cache.stride + from) * hd;
        out.buffer.set(cache.buffer.subarray(src, src + n * hd), ((i * heads + h) * stride + length - n) * hd);
      }
    });
    return out;
  }

  /** Appends rows given as [B, S, heads·hd]. */
  append(rows: Float32Array, S: number): void {
    const { batch, heads, headDim: hd } = this;
    const P = this.length;
    const T = P + S;
    if (T > this.stride) {
      const roomy = Math.ceil(T / this.strideStep) * this.strideStep;
      const capacity = Math.floor(this.buffer.length / (batch * heads * hd));
      // Padding never makes a buffer that holds the sequence regrow: then the stride stops at its capacity.
      this.restride(T <= capacity ? Math.min(roomy, capacity) : roomy);
    }
    const { buffer, stride } = this;
    for (let block = 0; block < batch * heads; block++) {
      const b = Math.floor(block / heads);
      const h = block % heads;
      for (let s = 0; s < S; s++) {
        const from = ((b * S + s) * heads + h) * hd;
        buffer.set(rows.subarray(from, from + hd), (block * stride + P + s) * hd);
      }
    }
    this.length = T;
  }

  /** Gives every block `stride` rows, keeping the first `length` of each. */
  private restride(stride: number): void {
    const { batch, heads, headDim: hd, length: P } = this;
    const old = this.buffer;
    const from = this.stride;
    const needed = batch * heads * stride * hd;
    if (old.length < needed) this.buffer = new Float32Array(Math.max(needed, Math.ceil(old.length * 1.5)));
    const buf = this.buffer;
    if (P > 0 && buf === old) {
      // In place, last block first: block k moves up by k·(stride - from) rows, onto rows of
      // blocks that have already moved; block 0 stays.
      for (let block = batch * heads - 1; block > 0; block--) buf.copyWithin(block * stride * hd, block * from * hd, (block * from + P) * hd);
    } else if (P > 0) {
      for (let block = 0; block < batch * heads; block++) buf.set(old.subarray(block * from * hd, (block * from + P) * hd), block * stride * hd);
    }
    this.stride = stride;
  }
}

/** Padding rows per KV block for GroupQueryAttention (see KvCache). */
const KV_STRIDE_STEP = 64;

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
    readonly config: Lfm2Config,
    readonly io: Lfm2GraphIO,
    /** KV positions to allocate up front; the caches grow by half beyond it. */
    capacity = 256,
    /** Padding rows per KV block (KvCache); other values only for measuring the trade-off. */
    strideStep = KV_STRIDE_STEP,
  ) {
    this.mask = Array.from({ length: batch }, () => []);
    this.nextPosition = new Array(batch).fill(0);
    for (const i of io.attentionLayers) {
      this.keys.set(i, new KvCache(batch, config.numKvHeads, config.headDim, capacity, strideStep));
      this.values.set(i, new KvCache(batch, config.numKvHeads, config.headDim, capacity, strideStep));
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
    for (const cache of [...this.keys.values(), ...this.values.values()]) cache.reset();
  }

  get length(): number {
    return this.mask[0].length;
  }

  /**
   * Bytes this state holds: the KV caches' buffers, the conv windows, and the mask and positions
   * (numbers in JS arrays, 8 bytes each). What a cache of states bounds its memory by.
   */
  get bytes(): number {
    let sum = 0;
    for (const cache of [...this.keys.values(), ...this.values.values()]) sum += cache.bytes;
    for (const t of this.convState.values()) sum += (t.data as Float32Array).byteLength;
    for (const row of this.mask) sum += row.length * 8;
    return sum + this.nextPosition.length * 8;
  }

  /**
   * An independent copy of this state: the same conv windows, KV rows, mask and positions, so
   * running tokens through the copy gives exactly what running them through this state would,
   * and this state stays as it is. What a fixed prompt prefix is computed once for (see
   * `prefillPrefix` in generate.ts).
   */
  clone(): DecodeState {
    const copy = new DecodeState(this.batch, this.config, this.io, 0, 1);
    this.mask.forEach((row, b) => copy.mask[b].push(...row));
    copy.nextPosition.splice(0, this.batch, ...this.nextPosition);
    // onnxruntime returns a fresh tensor for every conv window, and the runtime replaces (never
    // writes into) them, but a copy keeps the clone safe from any caller that does.
    for (const [name, t] of this.convState) copy.convState.set(name, new ort.Tensor("float32", (t.data as Float32Array).slice(), t.dims));
    for (const [i, cache] of this.keys) copy.keys.set(i, cache.clone());
    for (const [i, cache] of this.values) copy.values.set(i, cache.clone());
    return copy;
  }

  /**
   * A new state whose row i is row `parts[i].row` of `parts[i].state` (independent copies): each
   * row without its leading padding, then all right-aligned to the longest, shorter rows
   * left-padded (mask 0, zero KV rows). Left padding is neutral: attention masks it, a pad's conv
   * input is zero as is an empty conv window, and positions are per row (`nextPosition`). So
   * running tokens through row i gives what running them through its source row alone would. How
   * the decode batcher (decode-batcher.ts) moves sequences in and out of one batched state.
   * `headroom`: KV positions to allocate beyond the longest row.
   */
  static gather(parts: readonly { state: DecodeState; row: number }[], headroom = 0): DecodeState {
    if (parts.length === 0) throw new LfmError("INVALID_ARGUMENT", "DecodeState.gather needs at least one row.");
    const { config, io } = parts[0].state;
    const lead = parts.map(({ state, row }) => leadingPadding(state.mask[row]));
    const lengths = parts.map(({ state }, i) => state.length - lead[i]);
    const total = Math.max(...lengths);
    const out = new DecodeState(parts.length, config, io, 0);
    parts.forEach(({ state, row }, i) => {
      if (state.config !== config || state.io !== io) throw new LfmError("INVALID_ARGUMENT", "DecodeState.gather: the states belong to different models.");
      out.mask[i].push(...new Array<number>(total - lengths[i]).fill(0), ...state.mask[row].slice(lead[i]));
      out.nextPosition[i] = state.nextPosition[row];
    });
    const width = (config.convLCache - 1) * config.hiddenSize;
    for (const name of out.convState.keys()) {
      const data = new Float32Array(parts.length * width);
      parts.forEach(({ state, row }, i) => data.set((state.convState.get(name)!.data as Float32Array).subarray(row * width, (row + 1) * width), i * width));
      out.convState.set(name, new ort.Tensor("float32", data, [parts.length, config.convLCache - 1, config.hiddenSize]));
    }
    for (const [caches, pick] of [
      [out.keys, (s: DecodeState) => s.keys],
      [out.values, (s: DecodeState) => s.values],
    ] as const) {
      for (const layer of caches.keys()) {
        const rows = parts.map(({ state, row }, i) => ({ cache: pick(state).get(layer) as KvCache, row, from: lead[i] }));
        caches.set(layer, KvCache.gather(rows, total, total + headroom, KV_STRIDE_STEP));
      }
    }
    return out;
  }
}

/** Leading padding columns of one row's mask (all of them for a row with no real token). */
function leadingPadding(mask: readonly number[]): number {
  const first = mask.indexOf(1);
  return first < 0 ? mask.length : first;
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
