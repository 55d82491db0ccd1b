/**
 * The LFM2-Audio input tower as one ONNX graph: FastConformer encoder (liquid-audio's copy of NeMo
 * `ConformerEncoder`, eval mode) and the MLP adapter into the LM's embedding space.
 *
 *   x = mel [1, F, T] → [1, 1, T, F]
 *   pre_encode: Conv2d(1→C, k3 s2) ReLU, then per extra stage dwConv(k3 s2) · pwConv(1×1) ReLU
 *               → [1, C, T', F'] → [1, T', C·F'] → Linear → [1, T', D]        (T' = ceil(T / 8))
 *   for each layer (macaron):
 *     x += ½ FF1(LN x);  x += RelMHSA(LN x, pos);  x += ConvModule(LN x);  x += ½ FF2(LN x);  x = LN_out x
 *   adapter: LayerNorm → Linear → GELU(erf) → Linear                          → [1, T', D_lm]
 *
 * One clip per call, unpadded: NeMo's padding masks then change nothing, so none are built. Values
 * are named after checkpoint paths (`conformer.layers.1.self_attn.linear_q`).
 */
import type { ConformerConfig } from "./audio-config.ts";
import { ElemType, GraphBuilder } from "../text-core/graph/builder.ts";
import { geluExact, layerNorm, roundToBf16 } from "../text-core/graph/blocks.ts";
import { linear } from "../text-core/graph/linear.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { type BuildContext, type WeightSource, expectShape, weight } from "../text-core/graph/weights.ts";

export const ENCODER_PREFIX = "conformer";
export const ADAPTER_PREFIX = "audio_adapter.model";

/** Graph I/O names. */
export const ENCODER_IO = {
  /** [1, featIn, frames] log-mel features (NeMo layout). */
  features: "audio_features",
  /** [2T'−1, dModel]: `relativePositionTable(T', dModel)`. */
  positions: "pos_emb",
  /** [1, T', featOut]: the conformer output (before the adapter). */
  encoderOut: "encoder_out",
  /** [1, T', lmHidden]: adapter output, one LM input embedding per 80 ms. */
  embeddings: "audio_embeddings",
} as const;

/**
 * The checkpoint seen with the 1×1 Conv1d weights [out, in, 1] of the conv module as Linear
 * weights [out, in], so the shared `linear` block (and its q4/q8 paths) applies to them.
 */
function pointwiseAsLinear(weights: WeightSource): WeightSource {
  const isPointwise = (name: string) => /\.pointwise_conv[12]\.weight$/.test(name);
  return {
    has: (name) => weights.has(name),
    shape: (name) => {
      const s = weights.shape(name);
      return isPointwise(name) && s.length === 3 && s[2] === 1 ? s.slice(0, 2) : s;
    },
    readFloat32: (name) => weights.readFloat32(name),
    readFloat32Rows: weights.readFloat32Rows ? (name, start, count) => (weights.readFloat32Rows as NonNullable<WeightSource["readFloat32Rows"]>)(name, start, count) : undefined,
  };
}

/** Every tensor the config implies, with its shape, before anything is built. */
export function checkEncoderShapes(cfg: ConformerConfig, weights: WeightSource, lmHidden: number): void {
  const p = ENCODER_PREFIX;
  const { dModel: D, subsamplingChannels: C, ffDim, numHeads: H, headDim: dk, convKernelSize: K } = cfg;
  expectShape(weights, `${p}.pre_encode.conv.0.weight`, [C, 1, 3, 3], "subsampling_conv_channels");
  expectShape(weights, `${p}.pre_encode.conv.0.bias`, [C]);
  for (let s = 1; s < cfg.subsamplingStages; s++) {
    const dw = 3 * s - 1;
    expectShape(weights, `${p}.pre_encode.conv.${dw}.weight`, [C, 1, 3, 3]);
    expectShape(weights, `${p}.pre_encode.conv.${dw + 1}.weight`, [C, C, 1, 1]);
  }
  expectShape(weights, `${p}.pre_encode.out.weight`, [D, C * cfg.subsampledFeatures], "d_model × channels·feat_in/subsampling");
  for (let i = 0; i < cfg.numLayers; i++) {
    const l = `${p}.layers.${i}`;
    for (const norm of ["norm_feed_forward1", "norm_self_att", "norm_conv", "norm_feed_forward2", "norm_out"]) expectShape(weights, `${l}.${norm}.weight`, [D]);
    for (const ff of ["feed_forward1", "feed_forward2"]) {
      expectShape(weights, `${l}.${ff}.linear1.weight`, [ffDim, D], "ff_expansion_factor × d_model");
      expectShape(weights, `${l}.${ff}.linear2.weight`, [D, ffDim]);
    }
    for (const proj of ["linear_q", "linear_k", "linear_v", "linear_out", "linear_pos"]) expectShape(weights, `${l}.self_attn.${proj}.weight`, [D, D]);
    expectShape(weights, `${l}.self_attn.pos_bias_u`, [H, dk], "n_heads × d_model/n_heads");
    expectShape(weights, `${l}.self_attn.pos_bias_v`, [H, dk]);
    expectShape(weights, `${l}.conv.pointwise_conv1.weight`, [2 * D, D, 1]);
    expectShape(weights, `${l}.conv.depthwise_conv.weight`, [D, 1, K], "conv_kernel_size");
    expectShape(weights, `${l}.conv.pointwise_conv2.weight`, [D, D, 1]);
    for (const bn of ["weight", "bias", "running_mean", "running_var"]) expectShape(weights, `${l}.conv.batch_norm.${bn}`, [D]);
  }
  if (cfg.hasOutProjection) expectShape(weights, `${p}.out_proj.weight`, [cfg.featOut, D]);
  const [hidden] = weights.shape(`${ADAPTER_PREFIX}.1.weight`);
  expectShape(weights, `${ADAPTER_PREFIX}.0.weight`, [cfg.featOut], "adapter LayerNorm over the encoder output");
  expectShape(weights, `${ADAPTER_PREFIX}.1.weight`, [hidden, cfg.featOut]);
  expectShape(weights, `${ADAPTER_PREFIX}.3.weight`, [lmHidden, hidden], "adapter output = the LM's hidden size");
}

/** Conv2d over [N, C, T, F] with a checkpoint weight and bias (stride 2 and padding 1 unless 1×1). */
function conv2d(ctx: BuildContext, x: string, name: string, opts: { stride: number; pad: number; group: number }): string {
  const { b } = ctx;
  return b.op("Conv", [x, weight(ctx, `${name}.weight`), weight(ctx, `${name}.bias`)], name, {
    strides: [opts.stride, opts.stride],
    pads: [opts.pad, opts.pad, opts.pad, opts.pad],
    group: opts.group,
  });
}

/** dw_striding subsampling: [1, F, T] features → [1, T', D]. */
function subsampling(ctx: BuildContext, cfg: ConformerConfig, features: string): string {
  const { b } = ctx;
  const p = `${ENCODER_PREFIX}.pre_encode`;
  const C = cfg.subsamplingChannels;
  let x = b.op("Unsqueeze", [b.op("Transpose", [features], `${p}.time_major`, { perm: [0, 2, 1] }), b.constInt64([1])], `${p}.image`); // [1, 1, T, F]
  x = b.op("Relu", [conv2d(ctx, x, `${p}.conv.0`, { stride: 2, pad: 1, group: 1 })], `${p}.conv.1`);
  for (let s = 1; s < cfg.subsamplingStages; s++) {
    const dw = 3 * s - 1;
    x = conv2d(ctx, x, `${p}.conv.${dw}`, { stride: 2, pad: 1, group: C });
    x = conv2d(ctx, x, `${p}.conv.${dw + 1}`, { stride: 1, pad: 0, group: 1 });
    x = b.op("Relu", [x], `${p}.conv.${dw + 2}`);
  }
  // [1, C, T', F'] → [1, T', C, F'] → [1, T', C·F'] (channel-major flattening, as NeMo)
  const flat = b.op("Reshape", [b.op("Transpose", [x], `${p}.channels_last`, { perm: [0, 2, 1, 3] }), b.constInt64([0, 0, -1])], `${p}.flat`);
  return linear(ctx, flat, `${p}.out.weight`, `${p}.out`, `${p}.out.bias`);
}

/**
 * Transformer-XL relative positions for T' frames, [2T'−1, D]: row k holds position r = T'−1−k
 * (from T'−1 down to −(T'−1)), `pe[k, 2i] = sin(r·wᵢ)`, `pe[k, 2i+1] = cos(r·wᵢ)`,
 * wᵢ = exp(2i·(−ln 10⁴ / D)) — NeMo `RelPositionalEncoding`, evaluated in float32 as it is, then
 * rounded to bfloat16: liquid-audio loads the model in bf16, which casts this buffer too (the
 * reference outputs move by ~5e-4 without the rounding). Plain preprocessing, so computed here and
 * fed to the graph.
 */
export function relativePositionTable(frames: number, dModel: number): Float32Array {
  const f = Math.fround;
  const step = f(-Math.log(10000) / dModel);
  const freqs = Float32Array.from({ length: dModel / 2 }, (_, i) => f(Math.exp(f(2 * i * step))));
  const rows = 2 * frames - 1;
  const pe = new Float32Array(rows * dModel);
  for (let k = 0; k < rows; k++) {
    const r = frames - 1 - k;
    for (let i = 0; i < dModel / 2; i++) {
      const angle = f(r * freqs[i]);
      pe[k * dModel + 2 * i] = roundToBf16(f(Math.sin(angle)));
      pe[k * dModel + 2 * i + 1] = roundToBf16(f(Math.cos(angle)));
    }
  }
  return pe;
}

/**
 * `bd[i, j] = bd_raw[i, T'−1−i+j]`: the score of query i against the relative position i−j —
 * what NeMo's `rel_shift` (pad, reshape, drop a row) followed by the `[:, :, :, :T']` slice
 * selects, written as a gather so no reshape trick is needed.
 */
export function relShiftIndex(ctx: BuildContext, x: string): string {
  const { b } = ctx;
  const T = b.op("Squeeze", [b.op("Shape", [x], "rel_shift.frames", { start: 1, end: 2 })], "rel_shift.frames_scalar");
  const steps = b.op("Range", [b.constInt64(0), T, b.constInt64(1)], "rel_shift.steps"); // [T']
  const last = b.op("Sub", [T, b.constInt64(1)], "rel_shift.last");
  const rows = b.op("Sub", [last, b.op("Unsqueeze", [steps, b.constInt64([1])], "rel_shift.i")], "rel_shift.rows"); // [T', 1]: T'−1−i
  return b.op("Add", [rows, b.op("Unsqueeze", [steps, b.constInt64([0])], "rel_shift.j")], "rel_shift.index"); // [T', T']
}

/**
 * Multi-head attention with Transformer-XL relative positions (NeMo `RelPositionMultiHeadAttention`);
 * `pe` is `relativePositionTable`'s [2T'−1, D], `shiftIndex` `relShiftIndex`'s. Plain
 * MatMul/Softmax: any head size.
 */
export function relPosAttention(ctx: BuildContext, cfg: ConformerConfig, x: string, p: string, pe: string, shiftIndex: string): string {
  const { b } = ctx;
  const { numHeads: H, headDim: dk, dModel: D } = cfg;
  const heads = (v: string, name: string) => b.op("Transpose", [b.op("Reshape", [v, b.constInt64([0, 0, H, dk])], `${name}.split`)], name, { perm: [0, 2, 1, 3] }); // [1, H, T', dk]
  const q = heads(linear(ctx, x, `${p}.linear_q.weight`, `${p}.linear_q`, `${p}.linear_q.bias`), `${p}.q`);
  const k = heads(linear(ctx, x, `${p}.linear_k.weight`, `${p}.linear_k`, `${p}.linear_k.bias`), `${p}.k`);
  const v = heads(linear(ctx, x, `${p}.linear_v.weight`, `${p}.linear_v`, `${p}.linear_v.bias`), `${p}.v`);
  // Positions: linear_pos (no bias) → [P, H, dk] → [H, dk, P].
  const pos = b.op("Transpose", [b.op("Reshape", [linear(ctx, pe, `${p}.linear_pos.weight`, `${p}.linear_pos`), b.constInt64([-1, H, dk])], `${p}.pos_heads`)], `${p}.pos_t`, { perm: [1, 2, 0] });
  const bias = (name: string) => weight(ctx, `${p}.${name}`, undefined, [H, 1, dk]); // broadcast over T'
  const qU = b.op("Add", [q, bias("pos_bias_u")], `${p}.q_with_bias_u`);
  const qV = b.op("Add", [q, bias("pos_bias_v")], `${p}.q_with_bias_v`);
  const ac = b.op("MatMul", [qU, b.op("Transpose", [k], `${p}.k_t`, { perm: [0, 1, 3, 2] })], `${p}.matrix_ac`); // [1, H, T', T']
  const bdRaw = b.op("MatMul", [qV, pos], `${p}.matrix_bd_raw`); // [1, H, T', 2T'−1]
  const index = b.op("Expand", [shiftIndex, b.op("Shape", [ac], `${p}.scores_shape`)], `${p}.shift_index`);
  const bd = b.op("GatherElements", [bdRaw, index], `${p}.matrix_bd`, { axis: 3 });
  const scores = b.op("Div", [b.op("Add", [ac, bd], `${p}.scores_raw`), b.constFloat(Math.sqrt(dk))], `${p}.scores`);
  const probs = b.op("Softmax", [scores], `${p}.attn`, { axis: -1 });
  const context = b.op("Reshape", [b.op("Transpose", [b.op("MatMul", [probs, v], `${p}.context_heads`)], `${p}.context_t`, { perm: [0, 2, 1, 3] }), b.constInt64([0, 0, D])], `${p}.context`);
  return linear(ctx, context, `${p}.linear_out.weight`, `${p}.linear_out`, `${p}.linear_out.bias`);
}

/** Linear → Swish → Linear (NeMo `ConformerFeedForward`). */
function feedForward(ctx: BuildContext, x: string, p: string): string {
  const { b } = ctx;
  const h = linear(ctx, x, `${p}.linear1.weight`, `${p}.linear1`, `${p}.linear1.bias`);
  const swish = b.op("Mul", [h, b.op("Sigmoid", [h], `${p}.sigmoid`)], `${p}.swish`);
  return linear(ctx, swish, `${p}.linear2.weight`, `${p}.linear2`, `${p}.linear2.bias`);
}

/**
 * Pointwise (→2D) → GLU → depthwise conv (kernel K, "same" padding) → BatchNorm → Swish →
 * pointwise (NeMo `ConformerConvolution`). BatchNorm in eval mode is an affine map per channel, so
 * it is folded into the depthwise conv's weights and bias at build time.
 */
function convModule(ctx: BuildContext, cfg: ConformerConfig, x: string, p: string): string {
  const { b } = ctx;
  const D = cfg.dModel;
  const K = cfg.convKernelSize;
  const h = linear(ctx, x, `${p}.pointwise_conv1.weight`, `${p}.pointwise_conv1`, `${p}.pointwise_conv1.bias`); // [1, T', 2D]
  const [a, gate] = b.opMulti("Split", [h, b.constInt64([D, D])], [`${p}.glu_a`, `${p}.glu_b`], { axis: -1 });
  const glu = b.op("Mul", [a, b.op("Sigmoid", [gate], `${p}.glu_gate`)], `${p}.glu`);
  const bn = `${p}.batch_norm`;
  const scale = () => {
    const gamma = ctx.weights.readFloat32(`${bn}.weight`);
    const variance = ctx.weights.readFloat32(`${bn}.running_var`);
    return Float64Array.from(gamma, (g, c) => g / Math.sqrt(variance[c] + cfg.normEps));
  };
  const foldedWeight = b.floatInitializer(`${p}.depthwise_conv.weight.bn_folded`, [D, 1, K], () => {
    const w = ctx.weights.readFloat32(`${p}.depthwise_conv.weight`);
    const s = scale();
    return Float32Array.from(w, (value, i) => value * s[Math.floor(i / K)]);
  });
  const foldedBias = b.floatInitializer(`${p}.depthwise_conv.bias.bn_folded`, [D], () => {
    const bias = ctx.weights.has(`${p}.depthwise_conv.bias`) ? ctx.weights.readFloat32(`${p}.depthwise_conv.bias`) : new Float32Array(D);
    const mean = ctx.weights.readFloat32(`${bn}.running_mean`);
    const beta = ctx.weights.readFloat32(`${bn}.bias`);
    const s = scale();
    return Float32Array.from(bias, (value, c) => (value - mean[c]) * s[c] + beta[c]);
  });
  const channelsFirst = b.op("Transpose", [glu], `${p}.glu_channels_first`, { perm: [0, 2, 1] }); // [1, D, T']
  const [left, right] = cfg.convContext;
  const dw = b.op("Conv", [channelsFirst, foldedWeight, foldedBias], `${p}.depthwise_conv`, { group: D, pads: [left, right], kernel_shape: [K] });
  const swish = b.op("Mul", [dw, b.op("Sigmoid", [dw], `${p}.swish_gate`)], `${p}.swish`);
  const timeMajor = b.op("Transpose", [swish], `${p}.swish_time_major`, { perm: [0, 2, 1] }); // [1, T', D]
  return linear(ctx, timeMajor, `${p}.pointwise_conv2.weight`, `${p}.pointwise_conv2`, `${p}.pointwise_conv2.bias`);
}

function conformerLayer(ctx: BuildContext, cfg: ConformerConfig, x: string, i: number, pe: string, shiftIndex: string): string {
  const { b } = ctx;
  const p = `${ENCODER_PREFIX}.layers.${i}`;
  const eps = cfg.normEps;
  const half = b.constFloat(0.5);
  const ff1 = feedForward(ctx, layerNorm(ctx, x, `${p}.norm_feed_forward1`, eps, `${p}.norm_feed_forward1`), `${p}.feed_forward1`);
  x = b.op("Add", [x, b.op("Mul", [ff1, half], `${p}.feed_forward1.half`)], `${p}.after_ff1`);
  const att = relPosAttention(ctx, cfg, layerNorm(ctx, x, `${p}.norm_self_att`, eps, `${p}.norm_self_att`), `${p}.self_attn`, pe, shiftIndex);
  x = b.op("Add", [x, att], `${p}.after_self_attn`);
  const conv = convModule(ctx, cfg, layerNorm(ctx, x, `${p}.norm_conv`, eps, `${p}.norm_conv`), `${p}.conv`);
  x = b.op("Add", [x, conv], `${p}.after_conv`);
  const ff2 = feedForward(ctx, layerNorm(ctx, x, `${p}.norm_feed_forward2`, eps, `${p}.norm_feed_forward2`), `${p}.feed_forward2`);
  x = b.op("Add", [x, b.op("Mul", [ff2, half], `${p}.feed_forward2.half`)], `${p}.after_ff2`);
  return layerNorm(ctx, x, `${p}.norm_out`, eps, `${p}.out`);
}

/** LayerNorm → Linear → GELU (exact, erf) → Linear (liquid-audio `MLP` with one hidden layer). */
function audioAdapter(ctx: BuildContext, x: string, eps: number): string {
  const { b } = ctx;
  const p = ADAPTER_PREFIX;
  const normed = layerNorm(ctx, x, `${p}.0`, eps, `${p}.0`);
  const h = linear(ctx, normed, `${p}.1.weight`, `${p}.1`, `${p}.1.bias`);
  return linear(ctx, geluExact(ctx, h, `${p}.2`), `${p}.3.weight`, `${p}.3`, `${p}.3.bias`);
}

export interface AudioEncoderGraphOptions {
  precision: Precision;
}

/** Builds the encoder + adapter graph: `audio_features` [1, F, T] → `encoder_out`, `audio_embeddings`. */
export function buildAudioEncoderGraph(cfg: ConformerConfig, weights: WeightSource, lmHidden: number, options: AudioEncoderGraphOptions): GraphBuilder {
  const b = new GraphBuilder("lfm2_audio_encoder");
  const ctx: BuildContext = { b, weights: pointwiseAsLinear(weights), precision: options.precision };
  if (options.precision !== "fp32") b.useDomain("com.microsoft", 1);
  checkEncoderShapes(cfg, weights, lmHidden);
  const features = b.input(ENCODER_IO.features, ElemType.FLOAT, [1, cfg.featIn, "frames"]);
  let x = subsampling(ctx, cfg, features); // [1, T', D]
  if (cfg.xscaling) x = b.op("Mul", [x, b.constFloat(Math.sqrt(cfg.dModel))], `${ENCODER_PREFIX}.xscaled`);
  const pe = b.input(ENCODER_IO.positions, ElemType.FLOAT, ["positions", cfg.dModel]); // [2T'−1, D]
  const shiftIndex = relShiftIndex(ctx, x);
  for (let i = 0; i < cfg.numLayers; i++) x = conformerLayer(ctx, cfg, x, i, pe, shiftIndex);
  if (cfg.hasOutProjection) x = linear(ctx, x, `${ENCODER_PREFIX}.out_proj.weight`, `${ENCODER_PREFIX}.out_proj`, `${ENCODER_PREFIX}.out_proj.bias`);
  b.output(x, ENCODER_IO.encoderOut, ElemType.FLOAT, [1, "encoded", cfg.featOut]);
  b.output(audioAdapter(ctx, x, cfg.normEps), ENCODER_IO.embeddings, ElemType.FLOAT, [1, "encoded", lmHidden]);
  return b;
}
