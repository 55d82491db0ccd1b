/**
 * Shared graph blocks. Each takes the build context, an input value name and a checkpoint weight
 * prefix, and returns its output value name. Architectures (`lfm2.ts`, the vision and audio
 * towers) are short loops over these; nothing here knows about a particular model.
 *
 * Layout convention for sequences: [batch, seq, channels] (`[B, S, D]`).
 */
import { LfmError } from "../errors.ts";
import { ElemType, type GraphBuilder } from "./builder.ts";
import { QUANT_BLOCK, type QuantizedMatrix, canQuantize, quantizeBlocks } from "./quantize.ts";

/** Where weights come from: a checkpoint, or a synthetic source in tests and benchmarks. */
export interface WeightSource {
  has(name: string): boolean;
  /** Shape as stored (PyTorch layout: Linear weights are [out, in]). Throws TENSOR_MISSING. */
  shape(name: string): number[];
  readFloat32(name: string): Float32Array;
}

export type Precision = "fp32" | "q8" | "q4";

export interface BuildContext {
  b: GraphBuilder;
  weights: WeightSource;
  precision: Precision;
}

const INT64_MAX = Number.MAX_SAFE_INTEGER;

export function expectShape(weights: WeightSource, name: string, expected: number[], hint = ""): void {
  const found = weights.shape(name);
  if (found.length !== expected.length || found.some((d, i) => d !== expected[i])) {
    throw new LfmError(
      "TENSOR_SHAPE_MISMATCH",
      `tensor ${name} has shape [${found.join(", ")}] but the config implies [${expected.join(", ")}]` +
        `${hint ? ` (${hint})` : ""}; the config.json probably does not belong to these weights.`,
    );
  }
}

/** A float tensor from the checkpoint, as an initializer named after its checkpoint path. */
export function weight(ctx: BuildContext, name: string, transform?: (w: Float32Array) => Float32Array, dims?: number[]): string {
  const shape = dims ?? ctx.weights.shape(name);
  const initName = transform ? `${name}.T` : name;
  if (ctx.b.hasInitializer(initName)) return initName;
  return ctx.b.floatInitializer(initName, shape, () => {
    const w = ctx.weights.readFloat32(name);
    return transform ? transform(w) : w;
  });
}

/** [rows, cols] → [cols, rows]. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const tile = 64;
  for (let r0 = 0; r0 < rows; r0 += tile) {
    for (let c0 = 0; c0 < cols; c0 += tile) {
      const rEnd = Math.min(r0 + tile, rows);
      const cEnd = Math.min(c0 + tile, cols);
      for (let r = r0; r < rEnd; r++) {
        for (let c = c0; c < cEnd; c++) out[c * rows + r] = w[r * cols + c];
      }
    }
  }
  return out;
}

/** T5/Llama RMSNorm over the last axis: `weight * x / sqrt(mean(x²) + eps)`. */
export function rmsNorm(ctx: BuildContext, x: string, weightName: string, eps: number, outName: string): string {
  return ctx.b.op("SimplifiedLayerNormalization", [x, weight(ctx, weightName)], outName, {
    axis: -1,
    epsilon: { f: eps },
    stash_type: 1,
  });
}

/** LayerNorm over the last axis with weight and bias. */
export function layerNorm(ctx: BuildContext, x: string, prefix: string, eps: number, outName: string): string {
  return ctx.b.op("LayerNormalization", [x, weight(ctx, `${prefix}.weight`), weight(ctx, `${prefix}.bias`)], outName, {
    axis: -1,
    epsilon: { f: eps },
  });
}

/**
 * `x · Wᵀ (+ b)` for a PyTorch Linear weight [out, in]. fp32 stores Wᵀ for MatMul; the quantised
 * precisions are added here (and only here), so every architecture gets them for free.
 */
export function linear(ctx: BuildContext, x: string, weightName: string, outName: string, biasName?: string): string {
  const [outDim, inDim] = ctx.weights.shape(weightName);
  const bias = biasName ? weight(ctx, biasName) : undefined;
  if (ctx.precision !== "fp32" && canQuantize(inDim)) {
    const { codes, scales } = quantizedWeight(ctx, weightName, ctx.precision === "q4" ? 4 : 8);
    const inputs = bias ? [x, codes, scales, "", "", bias] : [x, codes, scales];
    return ctx.b.op("MatMulNBits", inputs, outName, { K: inDim, N: outDim, bits: ctx.precision === "q4" ? 4 : 8, block_size: QUANT_BLOCK, accuracy_level: ACCURACY_LEVEL }, "com.microsoft");
  }
  const wT = weight(ctx, weightName, (w) => transpose2d(w, outDim, inDim), [inDim, outDim]);
  const y = ctx.b.op("MatMul", [x, wT], bias ? `${outName}.matmul` : outName);
  return bias ? ctx.b.op("Add", [y, bias], outName) : y;
}

/**
 * MatMulNBits' accuracy level 4 quantises activations to int8 per block and runs integer dot
 * products: ~4× faster than float compute on AVX2 for decode (DESIGN.md, measured).
 */
const ACCURACY_LEVEL = 4;

/** Quantisations shared by several initializers of one graph, released after their last use. */
const pendingQuantizations = new WeakMap<GraphBuilder, Map<string, { matrix?: QuantizedMatrix; users: number }>>();

/**
 * A checkpoint weight [N, K] quantised to `bits`: codes (`layout` "matmul": [N, K/32, blob] for
 * MatMulNBits; "gather": [N, K·bits/8] for GatherBlockQuantized) and scales [N, K/32]. Each
 * weight is quantised once, when its first initializer is written, and dropped after its last,
 * so memory holds a tensor's worth at a time.
 */
export function quantizedWeight(ctx: BuildContext, name: string, bits: 4 | 8, layout: "matmul" | "gather" = "matmul"): { codes: string; scales: string } {
  const [rows, cols] = ctx.weights.shape(name);
  const codesName = `${name}.q${bits}${layout === "gather" ? ".rows" : ""}`;
  const scalesName = `${name}.q${bits}.scales`;
  let pending = pendingQuantizations.get(ctx.b);
  if (!pending) pendingQuantizations.set(ctx.b, (pending = new Map()));
  const key = `${name}/${bits}`;
  const use = (pick: (q: QuantizedMatrix) => Uint8Array) => {
    const entry = pending.get(key) ?? { users: 0 };
    pending.set(key, entry);
    entry.users++;
    return () => {
      entry.matrix ??= quantizeBlocks(ctx.weights.readFloat32(name), rows, cols, bits);
      const bytes = pick(entry.matrix);
      if (--entry.users === 0) pending.delete(key);
      return bytes;
    };
  };
  const blocks = cols / QUANT_BLOCK;
  if (!ctx.b.hasInitializer(codesName)) {
    const dims = layout === "matmul" ? [rows, blocks, (QUANT_BLOCK * bits) / 8] : [rows, (cols * bits) / 8];
    ctx.b.initializer(codesName, ElemType.UINT8, dims, use((q) => q.codes));
  }
  if (!ctx.b.hasInitializer(scalesName)) {
    ctx.b.initializer(scalesName, ElemType.FLOAT, [rows, blocks], use((q) => new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength)));
  }
  return { codes: codesName, scales: scalesName };
}

/**
 * Token embedding lookup. Quantised precisions store the table with the same block codes as the
 * tied head (GatherBlockQuantized), instead of a float table that would outweigh the whole
 * quantised model.
 */
export function embedding(ctx: BuildContext, ids: string, weightName: string, outName: string): string {
  const [, dimension] = ctx.weights.shape(weightName);
  if (ctx.precision !== "fp32" && canQuantize(dimension)) {
    const bits = ctx.precision === "q4" ? 4 : 8;
    const { codes, scales } = quantizedWeight(ctx, weightName, bits, "gather");
    return ctx.b.op("GatherBlockQuantized", [codes, ids, scales], outName, { gather_axis: 0, quantize_axis: 1, block_size: QUANT_BLOCK, bits }, "com.microsoft");
  }
  return ctx.b.op("Gather", [weight(ctx, weightName), ids], outName);
}

/** SwiGLU feed-forward: `w2(silu(w1·x) ⊙ w3·x)` (Shazeer 2020, eq. 6). */
export function swiglu(ctx: BuildContext, x: string, prefix: string): string {
  const gate = linear(ctx, x, `${prefix}.w1.weight`, `${prefix}.w1`);
  const up = linear(ctx, x, `${prefix}.w3.weight`, `${prefix}.w3`);
  const silu = ctx.b.op("Mul", [gate, ctx.b.op("Sigmoid", [gate], `${prefix}.sigmoid`)], `${prefix}.silu`);
  return linear(ctx, ctx.b.op("Mul", [silu, up], `${prefix}.gated`), `${prefix}.w2.weight`, `${prefix}.w2`);
}

/** Dynamic dimension `axis` of `x` as a 1-element int64 tensor. */
export function dim(ctx: BuildContext, x: string, axis: number, name: string): string {
  return ctx.b.op("Shape", [x], name, { start: axis, end: axis + 1 });
}

export interface ConvStateIO {
  /** [B, L-1, D]: the last L-1 values of B⊙x before this call. */
  pastConv: string;
  /** Output name for the updated state. */
  presentConv: string;
}

/**
 * LFM2's double-gated short convolution (HF `Lfm2ShortConv`):
 * `[B|C|x] = in_proj(h)`, `u = B⊙x` (zeroed at padding), causal depthwise conv of width L over
 * time, `y = C⊙conv(u)`, `out_proj(y)`. The conv state is the last L-1 columns of `u`, prepended
 * to this call's `u`, so prefill and decode are the same graph (llama.cpp's `ssm_conv` view).
 * The conv is written as L shifted multiply-adds in [B, S, D] layout: no transposes, and at decode
 * (S = 1) it is a 3-tap FIR.
 */
export function gatedShortConv(
  ctx: BuildContext,
  x: string,
  prefix: string,
  io: ConvStateIO,
  tokenMask: string,
  hidden: number,
  kernel: number,
  bias: boolean,
): string {
  const { b } = ctx;
  const bcx = linear(ctx, x, `${prefix}.in_proj.weight`, `${prefix}.in_proj`, bias ? `${prefix}.in_proj.bias` : undefined);
  const [gateB, gateC, xv] = b.opMulti("Split", [bcx, b.constInt64([hidden, hidden, hidden])], [`${prefix}.B`, `${prefix}.C`, `${prefix}.x`], { axis: -1 });
  // [B, S, D]; padded positions contribute nothing, like HF's apply_mask_to_padding_states.
  const bx = b.op("Mul", [b.op("Mul", [gateB, xv], `${prefix}.Bx_raw`), tokenMask], `${prefix}.Bx`);
  const window = b.op("Concat", [io.pastConv, bx], `${prefix}.window`, { axis: 1 }); // [B, L-1+S, D]
  b.op("Slice", [window, b.constInt64([-(kernel - 1)]), b.constInt64([INT64_MAX]), b.constInt64([1])], io.presentConv);

  // conv[t] = Σ_k w[:, k] ⊙ window[t + k]; tap L-1 multiplies the current token.
  const taps = ctx.weights.readFloat32(`${prefix}.conv.weight`); // [D, 1, L]
  let acc = "";
  for (let k = 0; k < kernel; k++) {
    const end = k === kernel - 1 ? INT64_MAX : -(kernel - 1 - k);
    const shifted = b.op("Slice", [window, b.constInt64([k]), b.constInt64([end]), b.constInt64([1])], `${prefix}.window.tap${k}`);
    const tap = b.floatInitializer(`${prefix}.conv.weight.tap${k}`, [hidden], () => {
      const w = new Float32Array(hidden);
      for (let c = 0; c < hidden; c++) w[c] = taps[c * kernel + k];
      return w;
    });
    const term = b.op("Mul", [shifted, tap], `${prefix}.conv.tap${k}`);
    acc = acc ? b.op("Add", [acc, term], `${prefix}.conv.sum${k}`) : term;
  }
  if (bias) acc = b.op("Add", [acc, weight(ctx, `${prefix}.conv.bias`)], `${prefix}.conv.biased`);
  const y = b.op("Mul", [gateC, acc], `${prefix}.Cy`);
  return linear(ctx, y, `${prefix}.out_proj.weight`, `${prefix}.out_proj`, bias ? `${prefix}.out_proj.bias` : undefined);
}

export interface RopeTables {
  /** [B, S, 1, headDim], broadcast over heads. */
  cos: string;
  sin: string;
}

/** Rounds a float to the nearest bfloat16 (ties to even), returned as a float. */
export function roundToBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) << 16;
  return f[0];
}

/**
 * NeoX (rotate-half) rotary tables from absolute positions: `inv_freq[i] = θ^(-2i/hd)`.
 * `invFreqDtype`: HF keeps `inv_freq` as a module buffer, so a model loaded in its checkpoint dtype
 * (bf16 for every LFM2 release) carries bf16-rounded frequencies even when run in fp32; the
 * reference outputs differ by up to 2e-3 without this.
 */
export function ropeTables(ctx: BuildContext, positionIds: string, headDim: number, theta: number, invFreqDtype: "bf16" | "f32" = "f32"): RopeTables {
  const { b } = ctx;
  const invFreq: number[] = [];
  for (let i = 0; i < headDim / 2; i++) {
    const f = Math.fround(1 / Math.fround(theta ** ((2 * i) / headDim)));
    invFreq.push(invFreqDtype === "bf16" ? roundToBf16(f) : f);
  }
  const pos = b.op("Unsqueeze", [b.op("Cast", [positionIds], "rope.positions", { to: ElemType.FLOAT }), b.constInt64([-1])], "rope.positions3d");
  const freqs = b.op("Mul", [pos, b.constFloat(invFreq)], "rope.freqs"); // [B, S, hd/2]
  const emb = b.op("Concat", [freqs, freqs], "rope.emb", { axis: -1 }); // [B, S, hd]
  const cos = b.op("Unsqueeze", [b.op("Cos", [emb], "rope.cos3d"), b.constInt64([2])], "rope.cos");
  const sin = b.op("Unsqueeze", [b.op("Sin", [emb], "rope.sin3d"), b.constInt64([2])], "rope.sin");
  return { cos, sin };
}

/** `x·cos + rotate_half(x)·sin` for x [B, S, heads, hd]. */
export function applyRope(ctx: BuildContext, x: string, rope: RopeTables, headDim: number, name: string): string {
  const { b } = ctx;
  const half = headDim / 2;
  const [x1, x2] = b.opMulti("Split", [x, b.constInt64([half, half])], [`${name}.x1`, `${name}.x2`], { axis: -1 });
  const rotated = b.op("Concat", [b.op("Neg", [x2], `${name}.neg_x2`), x1], `${name}.rotate_half`, { axis: -1 });
  return b.op("Add", [b.op("Mul", [x, rope.cos], `${name}.xcos`), b.op("Mul", [rotated, rope.sin], `${name}.rsin`)], name);
}

/**
 * Additive attention mask [B, 1, 1, S, T] from the [B, T] padding mask: query i (absolute position
 * T-S+i) sees key j when j ≤ T-S+i and key j is not padding. Fully masked rows (left padding) get a
 * uniform distribution instead of NaN, so nothing non-finite ever reaches the real tokens.
 */
export function causalPaddingMask(ctx: BuildContext, attentionMask: string, seqLen: string): string {
  const { b } = ctx;
  const total = dim(ctx, attentionMask, 1, "mask.total"); // [1]
  const past = b.op("Sub", [total, seqLen], "mask.past");
  const scalar = (v: string, n: string) => b.op("Squeeze", [v, b.constInt64([0])], n);
  const keyPos = b.op("Range", [b.constInt64(0), scalar(total, "mask.total_s"), b.constInt64(1)], "mask.key_pos"); // [T]
  const queryPos = b.op(
    "Unsqueeze",
    [b.op("Range", [scalar(past, "mask.past_s"), scalar(total, "mask.total_s2"), b.constInt64(1)], "mask.query_pos1d"), b.constInt64([1])],
    "mask.query_pos",
  ); // [S, 1]
  const causal = b.op("LessOrEqual", [keyPos, queryPos], "mask.causal"); // [S, T]
  const notPad = b.op("Unsqueeze", [b.op("Cast", [attentionMask], "mask.not_pad2d", { to: ElemType.BOOL }), b.constInt64([1])], "mask.not_pad"); // [B, 1, T]
  const allowed = b.op("And", [causal, notPad], "mask.allowed"); // [B, S, T]
  const additive = b.op("Where", [allowed, b.constFloat(0), b.constFloat(-3.4028234663852886e38)], "mask.additive");
  return b.op("Unsqueeze", [additive, b.constInt64([1, 2])], "mask.bias"); // [B, 1, 1, S, T]
}

export interface KvIO {
  pastKey: string;
  pastValue: string;
  presentKey: string;
  presentValue: string;
}

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  normEps: number;
}

/**
 * Grouped-query attention with per-head RMSNorm on q and k (LFM2's `q_layernorm`/`k_layernorm`)
 * before NeoX RoPE, and a KV cache [B, kvHeads, T, hd]. Query head h reads kv head ⌊h / G⌋,
 * G = heads / kvHeads, done by viewing q as [B, kvHeads, G, S, hd] instead of repeating K/V.
 */
export function gqaAttention(
  ctx: BuildContext,
  x: string,
  prefix: string,
  shape: AttentionShape,
  rope: RopeTables,
  maskBias: string,
  kv: KvIO,
): string {
  const { b } = ctx;
  const { heads, kvHeads, headDim, normEps } = shape;
  const group = heads / kvHeads;
  const q = b.op("Reshape", [linear(ctx, x, `${prefix}.q_proj.weight`, `${prefix}.q_proj`), b.constInt64([0, 0, heads, headDim])], `${prefix}.q_heads`); // [B, S, H, hd]
  const k = b.op("Reshape", [linear(ctx, x, `${prefix}.k_proj.weight`, `${prefix}.k_proj`), b.constInt64([0, 0, kvHeads, headDim])], `${prefix}.k_heads`); // [B, S, Hkv, hd]
  const v = b.op("Reshape", [linear(ctx, x, `${prefix}.v_proj.weight`, `${prefix}.v_proj`), b.constInt64([0, 0, kvHeads, headDim])], `${prefix}.v_heads`); // [B, S, Hkv, hd]
  const qRot = applyRope(ctx, rmsNorm(ctx, q, `${prefix}.q_layernorm.weight`, normEps, `${prefix}.q_layernorm`), rope, headDim, `${prefix}.q_rope`);
  const kRot = applyRope(ctx, rmsNorm(ctx, k, `${prefix}.k_layernorm.weight`, normEps, `${prefix}.k_layernorm`), rope, headDim, `${prefix}.k_rope`);

  const kNew = b.op("Transpose", [kRot], `${prefix}.k_new`, { perm: [0, 2, 1, 3] }); // [B, Hkv, S, hd]
  const vNew = b.op("Transpose", [v], `${prefix}.v_new`, { perm: [0, 2, 1, 3] });
  const keys = b.op("Concat", [kv.pastKey, kNew], kv.presentKey, { axis: 2 }); // [B, Hkv, T, hd]
  const values = b.op("Concat", [kv.pastValue, vNew], kv.presentValue, { axis: 2 });

  const qScaled = b.op("Mul", [qRot, b.constFloat(1 / Math.sqrt(headDim))], `${prefix}.q_scaled`);
  const qGroups = b.op(
    "Reshape",
    [b.op("Transpose", [qScaled], `${prefix}.q_t`, { perm: [0, 2, 1, 3] }), b.constInt64([0, kvHeads, group, -1, headDim])],
    `${prefix}.q_groups`,
  ); // [B, Hkv, G, S, hd]
  const keysT = b.op("Unsqueeze", [b.op("Transpose", [keys], `${prefix}.k_t`, { perm: [0, 1, 3, 2] }), b.constInt64([2])], `${prefix}.k_t5`); // [B, Hkv, 1, hd, T]
  const scores = b.op("Add", [b.op("MatMul", [qGroups, keysT], `${prefix}.scores_raw`), maskBias], `${prefix}.scores`); // [B, Hkv, G, S, T]
  const probs = b.op("Softmax", [scores], `${prefix}.probs`, { axis: -1 });
  const ctxGroups = b.op("MatMul", [probs, b.op("Unsqueeze", [values, b.constInt64([2])], `${prefix}.v5`)], `${prefix}.context5`); // [B, Hkv, G, S, hd]
  const context = b.op(
    "Reshape",
    [b.op("Transpose", [b.op("Reshape", [ctxGroups, b.constInt64([0, heads, -1, headDim])], `${prefix}.context4`)], `${prefix}.context_t`, { perm: [0, 2, 1, 3] }), b.constInt64([0, 0, heads * headDim])],
    `${prefix}.context`,
  ); // [B, S, H·hd]
  return linear(ctx, context, `${prefix}.out_proj.weight`, `${prefix}.out_proj`);
}
