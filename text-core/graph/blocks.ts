/**
 * Shared graph blocks. Each takes the build context, an input value name and a checkpoint weight
 * prefix, and returns its output value name. Architectures (`lfm2.ts`, the vision and audio
 * towers) are short loops over these; nothing here knows about a particular model.
 *
 * Layout convention for sequences: [batch, seq, channels] (`[B, S, D]`).
 */
import { ElemType } from "./builder.ts";
import { linear } from "./linear.ts";
import { type BuildContext, weight } from "./weights.ts";

const INT64_MAX = Number.MAX_SAFE_INTEGER;

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

/** Exact GELU (torch's `F.gelu` default): `x·Φ(x) = 0.5·x·(1 + erf(x/√2))`; ONNX's Gelu needs opset 20. */
export function geluExact(ctx: BuildContext, x: string, name: string): string {
  const { b } = ctx;
  const erf = b.op("Erf", [b.op("Mul", [x, b.constFloat(Math.SQRT1_2)], `${name}.scaled`)], `${name}.erf`);
  return b.op("Mul", [b.op("Mul", [x, b.constFloat(0.5)], `${name}.half`), b.op("Add", [erf, b.constFloat(1)], `${name}.one_plus`)], name);
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
 * Rows of a q/k projection (or a per-head norm) from the interleaved-pair RoPE layout (features
 * 2i, 2i+1 rotate together: moshi, liquid-audio) to the rotate-half one `applyRope` uses (i and
 * i + hd/2): within each of the first `heads` heads, row j takes row 2j (j < hd/2) or
 * 2(j - hd/2) + 1. Rows after those heads are copied as they are. `m` is [rows, cols].
 */
export function interleavedToRotateHalf(m: Float32Array, cols: number, heads: number, headDim: number): Float32Array {
  const out = m.slice();
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < headDim; j++) {
      const from = h * headDim + (j < headDim / 2 ? 2 * j : 2 * (j - headDim / 2) + 1);
      out.set(m.subarray(from * cols, (from + 1) * cols), (h * headDim + j) * cols);
    }
  }
  return out;
}

/**
 * What the attention layers share: the padding bias [B, 1, S, T] (0 where key j is a real token,
 * a large negative number at left padding; causality is GroupQueryAttention's own), the current
 * total length T and each row's last index T-1, as GroupQueryAttention wants them (int32).
 * A fully padded query row gets a uniform distribution instead of NaN, so nothing non-finite
 * ever reaches the real tokens.
 */
export interface AttentionInputs {
  paddingBias: string;
  totalLength: string;
  seqlensK: string;
}

export function attentionInputs(ctx: BuildContext, attentionMask: string, seqLen: string): AttentionInputs {
  const { b } = ctx;
  const total = dim(ctx, attentionMask, 1, "attn.total"); // [1] int64
  const batch = dim(ctx, attentionMask, 0, "attn.batch");
  const totalLength = b.op("Cast", [total], "attn.total_i32", { to: ElemType.INT32 });
  const seqlensK = b.op("Expand", [b.op("Sub", [totalLength, b.constInt32([1])], "attn.last_index"), batch], "attn.seqlens_k"); // [B]
  const notPad = b.op("Cast", [attentionMask], "attn.not_pad", { to: ElemType.BOOL }); // [B, T]
  const bias2d = b.op("Where", [notPad, b.constFloat(0), b.constFloat(-3.4028234663852886e38)], "attn.bias2d");
  const bias4d = b.op("Unsqueeze", [bias2d, b.constInt64([1, 2])], "attn.bias4d"); // [B, 1, 1, T]
  const shape = b.op("Concat", [batch, b.constInt64([1]), seqLen, total], "attn.bias_shape", { axis: 0 });
  const paddingBias = b.op("Expand", [bias4d, shape], "attn.padding_bias"); // [B, 1, S, T]
  return { paddingBias, totalLength, seqlensK };
}

export interface KvIO {
  /** [B, kvHeads, P, hd]: the cache before this call (read only). */
  pastKey: string;
  pastValue: string;
  /** Outputs for this call's rows only, [B, S, kvHeads·hd] (keys after norm and RoPE). */
  newKey: string;
  newValue: string;
}

export interface AttentionShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  normEps: number;
}

/**
 * Grouped-query attention with per-head RMSNorm on q and k (LFM2's `q_layernorm`/`k_layernorm`)
 * before NeoX RoPE. The attention itself is onnxruntime's `GroupQueryAttention` (query head h
 * reads kv head ⌊h / (heads/kvHeads)⌋, causal mask implicit, past + new keys in one kernel).
 * Only this call's K/V rows leave the graph: the runtime appends them to its own cache, so the
 * cache never crosses the JavaScript boundary as an output (onnxruntime-node copies every output
 * into a fresh buffer — for a full cache that copy dominated decode).
 * RoPE stays outside the op because left-padded rows need positions cumsum(mask) - 1.
 * Head widths the op rejects (not a multiple of 8) take `plainGroupedAttention`, same I/O; the
 * graph for every other width is the op's, unchanged.
 */
export function gqaAttention(
  ctx: BuildContext,
  x: string,
  prefix: string,
  shape: AttentionShape,
  rope: RopeTables,
  attention: AttentionInputs,
  kv: KvIO,
): string {
  const { b } = ctx;
  const { heads, kvHeads, headDim, normEps } = shape;
  const headsView = (value: string, n: number, name: string) => b.op("Reshape", [value, b.constInt64([0, 0, n, headDim])], name); // [B, S, n, hd]
  const flat = (value: string, name: string) => b.op("Reshape", [value, b.constInt64([0, 0, -1])], name); // [B, S, n·hd]
  const q = headsView(linear(ctx, x, `${prefix}.q_proj.weight`, `${prefix}.q_proj`), heads, `${prefix}.q_heads`);
  const k = headsView(linear(ctx, x, `${prefix}.k_proj.weight`, `${prefix}.k_proj`), kvHeads, `${prefix}.k_heads`);
  const v = linear(ctx, x, `${prefix}.v_proj.weight`, kv.newValue); // [B, S, Hkv·hd]
  const qRot = applyRope(ctx, rmsNorm(ctx, q, `${prefix}.q_layernorm.weight`, normEps, `${prefix}.q_layernorm`), rope, headDim, `${prefix}.q_rope`);
  const kRot = applyRope(ctx, rmsNorm(ctx, k, `${prefix}.k_layernorm.weight`, normEps, `${prefix}.k_layernorm`), rope, headDim, `${prefix}.k_rope`);
  const kFlat = flat(kRot, kv.newKey);
  if (headDim % GQA_HEAD_MULTIPLE !== 0) {
    const context = plainGroupedAttention(ctx, prefix, shape, qRot, kFlat, v, attention, kv);
    return linear(ctx, context, `${prefix}.out_proj.weight`, `${prefix}.out_proj`);
  }
  const [context] = b.opMulti(
    "GroupQueryAttention",
    [
      flat(qRot, `${prefix}.q`),
      kFlat,
      v,
      kv.pastKey,
      kv.pastValue,
      attention.seqlensK,
      attention.totalLength,
      "", // cos_cache
      "", // sin_cache
      "", // position_ids
      attention.paddingBias,
    ],
    [`${prefix}.context`, `${prefix}.present_key`, `${prefix}.present_value`],
    { num_heads: heads, kv_num_heads: kvHeads, scale: { f: 1 / Math.sqrt(headDim) } },
    "com.microsoft",
  ); // [B, S, H·hd]
  return linear(ctx, context, `${prefix}.out_proj.weight`, `${prefix}.out_proj`);
}

/** onnxruntime's GroupQueryAttention rejects head widths that are not a multiple of this. */
const GQA_HEAD_MULTIPLE = 8;

/**
 * What GroupQueryAttention computes, in plain MatMul/Softmax, for head widths it rejects
 * (`hd % 8 ≠ 0`): the same inputs (the runtime's cache blocks with their padding rows, the padding
 * bias) and the same outputs, so the runtime and its cache need not know which path a graph took.
 * Query heads are grouped under their KV head ([B, Hkv, G, S, hd]) so the KV heads broadcast
 * instead of being repeated.
 */
function plainGroupedAttention(
  ctx: BuildContext,
  prefix: string,
  shape: AttentionShape,
  qRot: string,
  kFlat: string,
  v: string,
  attention: AttentionInputs,
  kv: KvIO,
): string {
  const { b } = ctx;
  const { heads, kvHeads, headDim } = shape;
  const group = heads / kvHeads;
  const p = `${prefix}.plain_attn`;
  // The cache blocks hold `stride` ≥ P rows; only the first P = T - S are this sequence's.
  const seqLen = dim(ctx, qRot, 1, `${p}.seq_len`);
  const total = b.op("Cast", [attention.totalLength], `${p}.total`, { to: ElemType.INT64 });
  const pastLength = b.op("Sub", [total, seqLen], `${p}.past_len`);
  const pastRows = (past: string, name: string) => b.op("Slice", [past, b.constInt64([0]), pastLength, b.constInt64([2])], name); // [B, Hkv, P, hd]
  const newRows = (flat: string, name: string) =>
    b.op("Transpose", [b.op("Reshape", [flat, b.constInt64([0, 0, kvHeads, headDim])], `${name}.heads`)], name, { perm: [0, 2, 1, 3] }); // [B, Hkv, S, hd]
  const keys = b.op("Concat", [pastRows(kv.pastKey, `${p}.past_k`), newRows(kFlat, `${p}.new_k`)], `${p}.k`, { axis: 2 }); // [B, Hkv, T, hd]
  const values = b.op("Concat", [pastRows(kv.pastValue, `${p}.past_v`), newRows(v, `${p}.new_v`)], `${p}.v`, { axis: 2 });
  const keysT = b.op("Unsqueeze", [b.op("Transpose", [keys], `${p}.kT`, { perm: [0, 1, 3, 2] }), b.constInt64([2])], `${p}.kT5`); // [B, Hkv, 1, hd, T]
  const values5 = b.op("Unsqueeze", [values, b.constInt64([2])], `${p}.v5`); // [B, Hkv, 1, T, hd]
  // q [B, S, H, hd] → [B, Hkv, G, S, hd]: query head h = kvHead·G + g, as GroupQueryAttention groups them.
  const q5 = b.op("Transpose", [b.op("Reshape", [qRot, b.constInt64([0, 0, kvHeads, group, headDim])], `${p}.q_groups`)], `${p}.q5`, { perm: [0, 2, 3, 1, 4] });
  // Causality (GroupQueryAttention's own): query i sits at row P + i and reads keys 0 … P + i.
  const totalScalar = b.op("Squeeze", [total], `${p}.total_scalar`);
  const keyIndex = b.op("Range", [b.constInt64(0), totalScalar, b.constInt64(1)], `${p}.key_index`); // [T]
  const queryIndex = b.op("Range", [b.op("Squeeze", [pastLength], `${p}.past_scalar`), totalScalar, b.constInt64(1)], `${p}.query_index`); // [S]
  const causal = b.op("LessOrEqual", [keyIndex, b.op("Unsqueeze", [queryIndex, b.constInt64([1])], `${p}.query_column`)], `${p}.causal`); // [S, T]
  // Where, not a sum of two biases: two large negatives would add up to -inf, and a fully padded row to NaN.
  const bias = b.op("Where", [causal, attention.paddingBias, b.constFloat(-3.4028234663852886e38)], `${p}.bias`); // [B, 1, S, T]
  const bias5 = b.op("Unsqueeze", [bias, b.constInt64([2])], `${p}.bias5`); // [B, 1, 1, S, T]
  const scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [q5, keysT], `${p}.qk`), b.constFloat(1 / Math.sqrt(headDim))], `${p}.scaled`), bias5], `${p}.scores`);
  const probs = b.op("Softmax", [scores], `${p}.probs`, { axis: -1 });
  const context = b.op("MatMul", [probs, values5], `${p}.context5`); // [B, Hkv, G, S, hd]
  const bshd = b.op("Transpose", [context], `${p}.context_t`, { perm: [0, 3, 1, 2, 4] }); // [B, S, Hkv, G, hd]
  return b.op("Reshape", [bshd, b.constInt64([0, 0, heads * headDim])], `${prefix}.context`);
}
