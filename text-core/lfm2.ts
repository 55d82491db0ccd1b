/**
 * LFM2 hybrid language model as an ONNX graph — matches HF transformers `Lfm2ForCausalLM`.
 *
 *   h = inputs_embeds                           (rows of embed_tokens, read by the runtime from
 *                                                EMBEDDINGS_FILE; image/audio features replace rows)
 *   for each layer i:
 *     h = h + (conv(i) ? gatedShortConv : gqaAttention)(rmsNorm(h, operator_norm))
 *     h = h + swiglu(rmsNorm(h, ffn_norm))
 *   h = rmsNorm(h, embedding_norm)              (the final norm, despite its name)
 *   logits = h · embed_tokensᵀ                  (tied head) — or h itself for ColBERT
 *
 * Decode state is explicit graph I/O: `past_conv.{i}` [B, L-1, D] in, `present_conv.{i}` out for
 * conv layers; `past_key_values.{i}.key|value` [B, kvHeads, P, hd] in and only this call's rows
 * `new_keys.{i}` / `new_values.{i}` [B, S, kvHeads·hd] out for attention layers (the runtime
 * appends them to its cache). Prefill and decode are the same graph.
 */
import type { Lfm2Config } from "./config.ts";
import { LfmError } from "./errors.ts";
import { type EmbeddingSource, writeEmbeddingTable } from "./embeddings.ts";
import { ElemType, GraphBuilder } from "./graph/builder.ts";
import { attentionInputs, dim, gatedShortConv, gqaAttention, rmsNorm, ropeTables, swiglu } from "./graph/blocks.ts";
import { linear } from "./graph/linear.ts";
import type { Precision } from "./graph/precision.ts";
import { type BuildContext, type WeightSource, expectShape } from "./graph/weights.ts";

export interface Lfm2GraphOptions {
  precision: Precision;
  /** "logits": the LM head; "hidden": the final-normed hidden states (ColBERT backbone). */
  head: "logits" | "hidden";
  /** Adds outputs `hidden.0` … `hidden.L` (embeddings, each layer, final norm) for parity tests. */
  exposeHidden: boolean;
}

/** Names of the graph's inputs and outputs, for the runtime that feeds it. */
export interface Lfm2GraphIO {
  convLayers: number[];
  attentionLayers: number[];
  output: "logits" | "last_hidden_state";
  hiddenOutputs: string[];
}

/** The graph's I/O layout: a pure function of the config and the options. */
export function lfm2GraphIO(config: Lfm2Config, options: Lfm2GraphOptions): Lfm2GraphIO {
  const layersOf = (type: string) => config.layerTypes.flatMap((t, i) => (t === type ? [i] : []));
  return {
    convLayers: layersOf("conv"),
    attentionLayers: layersOf("full_attention"),
    output: options.head === "logits" ? "logits" : "last_hidden_state",
    hiddenOutputs: options.exposeHidden ? Array.from({ length: config.numLayers + 1 }, (_, k) => `hidden.${k}`) : [],
  };
}

/** The token-embedding table saved beside the graph (see embeddings.ts). */
export const EMBEDDINGS_FILE = "embed_tokens.bin";

export const pastConvName = (i: number) => `past_conv.${i}`;
export const presentConvName = (i: number) => `present_conv.${i}`;
export const pastKeyName = (i: number) => `past_key_values.${i}.key`;
export const pastValueName = (i: number) => `past_key_values.${i}.value`;
export const newKeyName = (i: number) => `new_keys.${i}`;
export const newValueName = (i: number) => `new_values.${i}`;

/** Checkpoint prefix of the text model: `model.` (LFM2), `` (ColBERT backbone), `model.language_model.` (LFM2-VL), ... */
export function findTextPrefix(weights: { names(): string[] }): string {
  const embed = weights.names().filter((n) => n.endsWith("embed_tokens.weight"));
  if (embed.length === 0) {
    throw new LfmError("TENSOR_MISSING", "no `embed_tokens.weight` tensor in the checkpoint: this is not an LFM2 language-model checkpoint.");
  }
  // Shortest wins: a VL checkpoint may also hold a vision tower's embeddings.
  embed.sort((a, b) => a.length - b.length);
  return embed[0].slice(0, -"embed_tokens.weight".length);
}

export function buildLfm2Graph(config: Lfm2Config, weights: WeightSource, prefix: string, options: Lfm2GraphOptions): { builder: GraphBuilder; io: Lfm2GraphIO } {
  const b = new GraphBuilder("lfm2");
  b.useDomain("com.microsoft", 1);
  const ctx: BuildContext = { b, weights, precision: options.precision, activationRank: 3 };
  const D = config.hiddenSize;
  const { headDim, numHeads: heads, numKvHeads: kvHeads } = config;
  const L = config.convLCache;
  const io = lfm2GraphIO(config, options);
  checkShapes(config, weights, prefix);

  const embedName = `${prefix}embed_tokens.weight`;
  const bf16 = weights.dtype?.(embedName) === "BF16";
  b.sideFile(EMBEDDINGS_FILE, (fd) => writeEmbeddingTable(fd, rowReader(weights, D), embedName, config.vocabSize, D, bf16));
  let h = b.input("inputs_embeds", ElemType.FLOAT, ["batch", "seq", D]);
  const attentionMask = b.input("attention_mask", ElemType.INT64, ["batch", "total"]);
  const positionIds = b.input("position_ids", ElemType.INT64, ["batch", "seq"]);
  const keep = b.input("num_logits_to_keep", ElemType.INT64, [1]);

  const hidden = (k: number, value: string) => {
    if (!options.exposeHidden) return;
    b.output(value, `hidden.${k}`, ElemType.FLOAT, ["batch", "seq", D]);
  };
  hidden(0, h);

  const seqLen = dim(ctx, h, 1, "seq_len");
  const maskSlice = b.op("Slice", [attentionMask, b.op("Neg", [seqLen], "neg_seq_len"), b.constInt64([Number.MAX_SAFE_INTEGER]), b.constInt64([1])], "token_mask2d");
  const tokenMask = b.op("Unsqueeze", [b.op("Cast", [maskSlice], "token_mask_f", { to: ElemType.FLOAT }), b.constInt64([-1])], "token_mask"); // [B, S, 1]
  const hasAttention = config.layerTypes.includes("full_attention");
  const attention = hasAttention ? attentionInputs(ctx, attentionMask, seqLen) : undefined;
  const rope = hasAttention ? ropeTables(ctx, positionIds, headDim, config.ropeTheta, config.storageDtype === "bfloat16" ? "bf16" : "f32") : { cos: "", sin: "" };

  for (let i = 0; i < config.numLayers; i++) {
    const p = `${prefix}layers.${i}`;
    const normed = rmsNorm(ctx, h, `${p}.operator_norm.weight`, config.normEps, `${p}.operator_norm`);
    let mixed: string;
    if (config.layerTypes[i] === "conv") {
      const pastConv = b.input(pastConvName(i), ElemType.FLOAT, ["batch", L - 1, D]);
      mixed = gatedShortConv(ctx, normed, `${p}.conv`, { pastConv, presentConv: presentConvName(i) }, tokenMask, D, L, config.convBias);
      b.output(presentConvName(i), presentConvName(i), ElemType.FLOAT, ["batch", L - 1, D]);
    } else {
      const pastKey = b.input(pastKeyName(i), ElemType.FLOAT, ["batch", kvHeads, "past", headDim]);
      const pastValue = b.input(pastValueName(i), ElemType.FLOAT, ["batch", kvHeads, "past", headDim]);
      mixed = gqaAttention(ctx, normed, `${p}.self_attn`, { heads, kvHeads, headDim, normEps: config.normEps }, rope, attention as NonNullable<typeof attention>, {
        pastKey,
        pastValue,
        newKey: newKeyName(i),
        newValue: newValueName(i),
      });
      b.output(newKeyName(i), newKeyName(i), ElemType.FLOAT, ["batch", "seq", kvHeads * headDim]);
      b.output(newValueName(i), newValueName(i), ElemType.FLOAT, ["batch", "seq", kvHeads * headDim]);
    }
    h = b.op("Add", [h, mixed], `${p}.residual_op`);
    const ffIn = rmsNorm(ctx, h, `${p}.ffn_norm.weight`, config.normEps, `${p}.ffn_norm`);
    h = b.op("Add", [h, swiglu(ctx, ffIn, `${p}.feed_forward`)], `${p}.out`);
    if (i < config.numLayers - 1) hidden(i + 1, h);
  }

  // Only the last `num_logits_to_keep` positions go through the final norm and head.
  const tail = b.op("Slice", [h, b.op("Neg", [keep], "neg_keep"), b.constInt64([Number.MAX_SAFE_INTEGER]), b.constInt64([1])], "kept_positions");
  const normed = rmsNorm(ctx, tail, `${prefix}embedding_norm.weight`, config.normEps, `${prefix}embedding_norm`);
  hidden(config.numLayers, normed);
  if (options.head === "hidden") {
    b.output(normed, "last_hidden_state", ElemType.FLOAT, ["batch", "kept", D]);
  } else {
    const headName = !config.tieEmbeddings && weights.has("lm_head.weight") ? "lm_head.weight" : `${prefix}embed_tokens.weight`;
    b.output(linear(ctx, normed, headName, "lm_head"), "logits", ElemType.FLOAT, ["batch", "kept", config.vocabSize]);
  }
  return { builder: b, io };
}

/** Row slices of a matrix, from a source that may only read whole tensors. */
function rowReader(weights: WeightSource, cols: number): EmbeddingSource {
  if (weights.readFloat32Rows) return { readFloat32Rows: (name, start, count) => (weights.readFloat32Rows as NonNullable<WeightSource["readFloat32Rows"]>)(name, start, count) };
  return { readFloat32Rows: (name, start, count) => weights.readFloat32(name).slice(start * cols, (start + count) * cols) };
}

/** Every tensor the config implies, with its shape, before anything is built. */
function checkShapes(config: Lfm2Config, weights: WeightSource, prefix: string): void {
  const D = config.hiddenSize;
  const { headDim, numHeads, numKvHeads, ffDim, vocabSize } = config;
  const L = config.convLCache;
  expectShape(weights, `${prefix}embed_tokens.weight`, [vocabSize, D], "vocab_size × hidden_size");
  expectShape(weights, `${prefix}embedding_norm.weight`, [D]);
  if (!config.tieEmbeddings) {
    if (!weights.has("lm_head.weight")) {
      throw new LfmError("TENSOR_MISSING", "config says the embeddings are not tied, but there is no lm_head.weight in the checkpoint.");
    }
    expectShape(weights, "lm_head.weight", [vocabSize, D]);
  }
  for (let i = 0; i < config.numLayers; i++) {
    const p = `${prefix}layers.${i}`;
    expectShape(weights, `${p}.operator_norm.weight`, [D]);
    expectShape(weights, `${p}.ffn_norm.weight`, [D]);
    expectShape(weights, `${p}.feed_forward.w1.weight`, [ffDim, D], "effective feed-forward width × hidden");
    expectShape(weights, `${p}.feed_forward.w3.weight`, [ffDim, D]);
    expectShape(weights, `${p}.feed_forward.w2.weight`, [D, ffDim]);
    if (config.layerTypes[i] === "conv") {
      expectShape(weights, `${p}.conv.in_proj.weight`, [3 * D, D]);
      expectShape(weights, `${p}.conv.conv.weight`, [D, 1, L], "conv_L_cache taps");
      expectShape(weights, `${p}.conv.out_proj.weight`, [D, D]);
    } else {
      expectShape(weights, `${p}.self_attn.q_proj.weight`, [numHeads * headDim, D]);
      expectShape(weights, `${p}.self_attn.k_proj.weight`, [numKvHeads * headDim, D]);
      expectShape(weights, `${p}.self_attn.v_proj.weight`, [numKvHeads * headDim, D]);
      expectShape(weights, `${p}.self_attn.out_proj.weight`, [D, numHeads * headDim]);
      expectShape(weights, `${p}.self_attn.q_layernorm.weight`, [headDim]);
      expectShape(weights, `${p}.self_attn.k_layernorm.weight`, [headDim]);
    }
  }
}
