/**
 * Runs a built LFM2 graph with onnxruntime-node and owns its decode state (conv state and KV
 * cache per layer). One `DecodeState` per generation; prefill and decode are the same call.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import type { Lfm2Config } from "./config.ts";
import { LfmError } from "./errors.ts";
import {
  type Lfm2GraphIO,
  pastConvName,
  pastKeyName,
  pastValueName,
  presentConvName,
  presentKeyName,
  presentValueName,
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
  };
  try {
    return typeof modelPathOrBytes === "string"
      ? await ort.InferenceSession.create(modelPathOrBytes, options)
      : await ort.InferenceSession.create(modelPathOrBytes, options);
  } catch (e) {
    throw new LfmError("RUNTIME_FAILED", `onnxruntime could not load the built graph: ${(e as Error).message}`, { cause: e });
  }
}

/** Per-sequence decode state: conv windows, KV caches, the padding mask and next positions. */
export class DecodeState {
  /** [B, total] flags: 1 for real tokens, 0 for padding. */
  readonly mask: number[][];
  readonly nextPosition: number[];
  readonly tensors = new Map<string, ort.Tensor>();

  constructor(
    readonly batch: number,
    config: Lfm2Config,
    io: Lfm2GraphIO,
  ) {
    this.mask = Array.from({ length: batch }, () => []);
    this.nextPosition = new Array(batch).fill(0);
    const D = config.hiddenSize;
    const L = config.convLCache;
    for (const i of io.convLayers) {
      this.tensors.set(pastConvName(i), new ort.Tensor("float32", new Float32Array(batch * (L - 1) * D), [batch, L - 1, D]));
    }
    for (const i of io.attentionLayers) {
      const empty = () => new ort.Tensor("float32", new Float32Array(0), [batch, config.numKvHeads, 0, config.headDim]);
      this.tensors.set(pastKeyName(i), empty());
      this.tensors.set(pastValueName(i), empty());
    }
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
  /** Extra graph outputs to return (e.g. `hidden.3`). */
  extraOutputs?: string[];
}

export interface ForwardResult {
  /** [B, keep, V] logits or [B, keep, D] hidden states, row-major. */
  output: Float32Array;
  width: number;
  extra: Record<string, ort.Tensor>;
}

export class Lfm2Runtime {
  constructor(
    readonly session: ort.InferenceSession,
    readonly config: Lfm2Config,
    readonly io: Lfm2GraphIO,
    /** The model.onnx this session runs (for profiling), when it came from a file. */
    readonly graphPath?: string,
  ) {}

  newState(batch = 1): DecodeState {
    return new DecodeState(batch, this.config, this.io);
  }

  /** Runs the next S tokens of every sequence through the model, advancing `state`. */
  async forward(state: DecodeState, req: ForwardRequest): Promise<ForwardResult> {
    const B = state.batch;
    const S = req.ids[0]?.length ?? 0;
    if (req.ids.length !== B || req.ids.some((r) => r.length !== S)) {
      throw new LfmError("INVALID_ARGUMENT", `forward expects ${B} rows of equal length`);
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
    const ids = new BigInt64Array(B * S);
    const positions = new BigInt64Array(B * S);
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        const real = req.mask ? req.mask[b][s] : 1;
        ids[b * S + s] = BigInt(req.ids[b][s]);
        state.mask[b].push(real ? 1 : 0);
        // HF: position = cumsum(mask) - 1, so left padding does not shift real tokens.
        positions[b * S + s] = BigInt(real ? state.nextPosition[b]++ : 0);
      }
    }
    const maskData = new BigInt64Array(B * total);
    for (let b = 0; b < B; b++) for (let t = 0; t < total; t++) maskData[b * total + t] = BigInt(state.mask[b][t]);

    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [B, S]),
      attention_mask: new ort.Tensor("int64", maskData, [B, total]),
      position_ids: new ort.Tensor("int64", positions, [B, S]),
      num_logits_to_keep: new ort.Tensor("int64", BigInt64Array.from([BigInt(keep)]), [1]),
    };
    for (const [name, t] of state.tensors) feeds[name] = t;
    if (this.io.hasEmbedOverrides) {
      const D = this.config.hiddenSize;
      const o = req.overrides ?? { index: [], values: new Float32Array(0) };
      feeds.embeds_override = new ort.Tensor("float32", o.values, [o.index.length, D]);
      feeds.embeds_override_index = new ort.Tensor("int64", BigInt64Array.from(o.index.map(BigInt)), [o.index.length]);
    }

    const fetches = [this.io.output, ...(req.extraOutputs ?? [])];
    for (const i of this.io.convLayers) fetches.push(presentConvName(i));
    for (const i of this.io.attentionLayers) fetches.push(presentKeyName(i), presentValueName(i));
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds, fetches);
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while running the model: ${(e as Error).message}`, { cause: e });
    }
    for (const i of this.io.convLayers) state.tensors.set(pastConvName(i), out[presentConvName(i)]);
    for (const i of this.io.attentionLayers) {
      state.tensors.set(pastKeyName(i), out[presentKeyName(i)]);
      state.tensors.set(pastValueName(i), out[presentValueName(i)]);
    }
    const main = out[this.io.output];
    const extra: Record<string, ort.Tensor> = {};
    for (const name of req.extraOutputs ?? []) extra[name] = out[name];
    return { output: main.data as Float32Array, width: main.dims[2], extra };
  }
}
