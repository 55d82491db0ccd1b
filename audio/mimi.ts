/**
 * Mimi decoder (Kyutai, moshi `MimiModel.decode`) as one ONNX graph: audio codes → 24 kHz wave.
 *
 *   latent = Σ_k codebook_k[c_k]  → output_proj   (split RVQ: codebook 0 semantic, the rest acoustic)
 *   latent = depthwise ConvTranspose ×2           (`upsample`: 12.5 Hz frames → 25 Hz steps)
 *   latent = causal transformer (LayerNorm, interleaved RoPE, sliding context, layer scale, GELU)
 *   wave   = SEANet decoder: conv, [ELU, ConvTranspose ×ratio, residual blocks] per ratio, ELU, conv
 *
 * Every causal layer's streaming state is explicit graph I/O, so the same graph decodes a whole
 * clip (zero states, all frames at once) and a stream (one frame per call, states carried), exactly
 * as moshi's streaming modules do: a stride-1 conv keeps the last (K-1)·dilation inputs
 * (`state.<conv>`), a transposed conv keeps the K-S output columns that overlap the next call
 * (`state.<convtr>`, bias excluded), and each transformer layer keeps its last `context - 1`
 * keys/values (`past_key.<l>` [B, P, D], time-major, after RoPE; this call's rows leave as
 * `new_key.<l>`). Zero conv states are the zero padding of moshi's non-streaming path; the final
 * transposed-conv states are the right trim.
 *
 * Layout: [B, C, T] through the convolutions, [B, T, D] through the transformer.
 */
import { ElemType, GraphBuilder } from "../text-core/graph/builder.ts";
import { applyRope, geluExact, layerNorm } from "../text-core/graph/blocks.ts";
import { linear } from "../text-core/graph/linear.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { type BuildContext, type WeightSource, expectShape, transpose2d, weight } from "../text-core/graph/weights.ts";
import type { MimiConfig } from "./mimi-config.ts";

const END = Number.MAX_SAFE_INTEGER;

/** One streaming state tensor: name of the graph input (output: `next_` + name) and its shape without the batch. */
export interface MimiStateSpec {
  name: string;
  channels: number;
  length: number;
}

export interface MimiGraphIO {
  /** Conv and transposed-conv states, [B, channels, length] each. */
  states: MimiStateSpec[];
  /** Transformer layers: `past_key.<l>`/`past_value.<l>` in, `new_key.<l>`/`new_value.<l>` out. */
  layers: number;
  dModel: number;
  /** Past steps each layer keeps: context - 1. */
  keptSteps: number;
}

export const nextStateName = (name: string) => `next_${name}`;
export const pastKeyName = (l: number) => `past_key.${l}`;
export const pastValueName = (l: number) => `past_value.${l}`;
export const newKeyName = (l: number) => `new_key.${l}`;
export const newValueName = (l: number) => `new_value.${l}`;

interface MimiBuild {
  ctx: BuildContext;
  io: MimiGraphIO;
}

/** Causal conv over [B, C, T] with its input window carried between calls (stride 1). */
function streamingConv(m: MimiBuild, x: string, prefix: string, kernel: number, dilation: number, cin: number, cout: number): string {
  const { b, weights } = m.ctx;
  const w = `${prefix}.conv.conv.weight`;
  expectShape(weights, w, [cout, cin, kernel], "SEANet conv width");
  const bias = `${prefix}.conv.conv.bias`;
  const inputs = [x, weight(m.ctx, w), ...(weights.has(bias) ? [weight(m.ctx, bias)] : [])];
  const past = (kernel - 1) * dilation;
  if (past > 0) {
    const stateName = `state.${prefix}`;
    const state = b.input(stateName, ElemType.FLOAT, ["batch", cin, past]);
    const window = b.op("Concat", [state, x], `${prefix}.window`, { axis: 2 }); // [B, cin, past + T]
    b.output(b.op("Slice", [window, b.constInt64([-past]), b.constInt64([END]), b.constInt64([2])], `${prefix}.next_state`), nextStateName(stateName), ElemType.FLOAT, ["batch", cin, past]);
    m.io.states.push({ name: stateName, channels: cin, length: past });
    inputs[0] = window;
  }
  return b.op("Conv", inputs, prefix, { dilations: [dilation], kernel_shape: [kernel], strides: [1], pads: [0, 0] });
}

/**
 * Causal transposed conv (moshi `StreamingConvTranspose1d`): the K-S columns that spill past this
 * call's T·S outputs are kept (without bias) and added to the next call's first columns.
 */
function streamingConvTranspose(m: MimiBuild, x: string, prefix: string, w: string, kernel: number, stride: number, cout: number, groups: number, bias?: string): string {
  const { b } = m.ctx;
  const inputs = [x, weight(m.ctx, w), ...(bias ? [weight(m.ctx, bias)] : [])];
  const y = b.op("ConvTranspose", inputs, `${prefix}.full`, { kernel_shape: [kernel], strides: [stride], group: groups }); // [B, cout, T·S + K - S]
  const overlap = kernel - stride;
  if (overlap <= 0) return y;
  const stateName = `state.${prefix}`;
  const state = b.input(stateName, ElemType.FLOAT, ["batch", cout, overlap]);
  m.io.states.push({ name: stateName, channels: cout, length: overlap });
  const head = b.op("Add", [b.op("Slice", [y, b.constInt64([0]), b.constInt64([overlap]), b.constInt64([2])], `${prefix}.head`), state], `${prefix}.head_with_past`);
  const full = b.op("Concat", [head, b.op("Slice", [y, b.constInt64([overlap]), b.constInt64([END]), b.constInt64([2])], `${prefix}.rest`)], `${prefix}.with_past`, { axis: 2 });
  let spill = b.op("Slice", [full, b.constInt64([-overlap]), b.constInt64([END]), b.constInt64([2])], `${prefix}.spill`);
  if (bias) spill = b.op("Sub", [spill, b.op("Unsqueeze", [weight(m.ctx, bias), b.constInt64([1])], `${prefix}.bias_col`)], `${prefix}.spill_unbiased`);
  b.output(spill, nextStateName(stateName), ElemType.FLOAT, ["batch", cout, overlap]);
  return b.op("Slice", [full, b.constInt64([0]), b.constInt64([-overlap]), b.constInt64([2])], prefix);
}

/** SEANet residual block: `x + conv₁ₓ₁(ELU(conv_k,d(ELU(x))))` (or a 1×1 conv shortcut). */
function residualBlock(m: MimiBuild, x: string, prefix: string, dim: number, dilation: number, config: MimiConfig): string {
  const { b } = m.ctx;
  const s = config.seanet;
  const hidden = Math.trunc(dim / s.compress);
  const alpha = { f: s.eluAlpha };
  let v = b.op("Elu", [x], `${prefix}.block.0`, { alpha });
  v = streamingConv(m, v, `${prefix}.block.1`, s.residualKernelSize, dilation, dim, hidden);
  v = b.op("Elu", [v], `${prefix}.block.2`, { alpha });
  v = streamingConv(m, v, `${prefix}.block.3`, 1, 1, hidden, dim);
  const skip = s.trueSkip ? x : streamingConv(m, x, `${prefix}.shortcut`, 1, 1, dim, dim);
  return b.op("Add", [skip, v], `${prefix}.out`);
}

/** moshi `apply_rope` frequencies: exp(i · (-ln(max_period) · 2 / hd)), in float32 as torch computes them. */
function ropeFrequencies(headDim: number, maxPeriod: number): number[] {
  const step = Math.fround((-Math.log(maxPeriod) * 2) / headDim);
  return Array.from({ length: headDim / 2 }, (_, i) => Math.fround(Math.exp(Math.fround(i * step))));
}

/** One `StreamingTransformerLayer`: pre-LayerNorm attention and GELU MLP, each scaled by LayerScale. */
function transformerLayer(ctx: BuildContext, x: string, l: number, rope: { cos: string; sin: string }, bias: string, config: MimiConfig): string {
  const { b } = ctx;
  const t = config.transformer;
  const D = t.dModel;
  const H = t.numHeads;
  const hd = D / H;
  const p = `decoder_transformer.transformer.layers.${l}`;
  const scaled = (value: string, which: 1 | 2) =>
    t.layerScale === null ? value : b.op("Mul", [value, weight(ctx, `${p}.layer_scale_${which}.scale`)], `${p}.layer_scale_${which}`);

  const h = layerNorm(ctx, x, `${p}.norm1`, 1e-5, `${p}.norm1`);
  const qkv = linear(ctx, h, `${p}.self_attn.in_proj_rotate_half.weight`, `${p}.self_attn.in_proj`); // [B, S, 3D]
  const [q, k, v] = b.opMulti("Split", [qkv, b.constInt64([D, D, D])], [`${p}.self_attn.q`, `${p}.self_attn.k`, `${p}.self_attn.v`], { axis: -1 });
  const heads = (value: string, name: string) => b.op("Reshape", [value, b.constInt64([0, 0, H, hd])], name); // [B, S, H, hd]
  const qRot = applyRope(ctx, heads(q, `${p}.self_attn.q_heads`), rope, hd, `${p}.self_attn.q_rope`);
  const kRot = applyRope(ctx, heads(k, `${p}.self_attn.k_heads`), rope, hd, `${p}.self_attn.k_rope`);
  const kNew = b.op("Reshape", [kRot, b.constInt64([0, 0, D])], newKeyName(l)); // [B, S, D]
  b.output(kNew, newKeyName(l), ElemType.FLOAT, ["batch", "steps", D]);
  b.output(v, newValueName(l), ElemType.FLOAT, ["batch", "steps", D]);

  const pastKey = pastKeyName(l);
  const pastValue = pastValueName(l);
  const allHeads = (past: string, now: string, name: string) =>
    b.op("Reshape", [b.op("Concat", [past, now], `${name}.all`, { axis: 1 }), b.constInt64([0, -1, H, hd])], `${name}.heads`); // [B, P+S, H, hd]
  const keysT = b.op("Transpose", [allHeads(pastKey, kNew, `${p}.self_attn.keys`)], `${p}.self_attn.keys_t`, { perm: [0, 2, 3, 1] }); // [B, H, hd, P+S]
  const values = b.op("Transpose", [allHeads(pastValue, v, `${p}.self_attn.values`)], `${p}.self_attn.values_t`, { perm: [0, 2, 1, 3] }); // [B, H, P+S, hd]
  const queries = b.op("Transpose", [qRot], `${p}.self_attn.queries`, { perm: [0, 2, 1, 3] }); // [B, H, S, hd]
  const scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [queries, keysT], `${p}.self_attn.qk`), b.constFloat(1 / Math.sqrt(hd))], `${p}.self_attn.scaled`), bias], `${p}.self_attn.scores`);
  const probs = b.op("Softmax", [scores], `${p}.self_attn.probs`, { axis: -1 });
  const context = b.op("Reshape", [b.op("Transpose", [b.op("MatMul", [probs, values], `${p}.self_attn.context_heads`)], `${p}.self_attn.context_t`, { perm: [0, 2, 1, 3] }), b.constInt64([0, 0, D])], `${p}.self_attn.context`);
  const attn = linear(ctx, context, `${p}.self_attn.out_projs.0.weight`, `${p}.self_attn.out_proj`);
  const afterAttn = b.op("Add", [x, scaled(attn, 1)], `${p}.attn_residual`);

  const h2 = layerNorm(ctx, afterAttn, `${p}.norm2`, 1e-5, `${p}.norm2`);
  const up = linear(ctx, h2, `${p}.linear1.weight`, `${p}.linear1`);
  const down = linear(ctx, geluExact(ctx, up, `${p}.gelu`), `${p}.linear2.weight`, `${p}.linear2`);
  return b.op("Add", [afterAttn, scaled(down, 2)], `${p}.out`);
}

/** Builds the decoder graph for `config` from `weights` (moshi names). */
export function buildMimiDecoderGraph(config: MimiConfig, weights: WeightSource, precision: Precision): { builder: GraphBuilder; io: MimiGraphIO } {
  const b = new GraphBuilder("mimi_decoder");
  const ctx: BuildContext = { b, weights, precision };
  const t = config.transformer;
  const s = config.seanet;
  const q = config.quantizer;
  const D = s.dimension;
  const io: MimiGraphIO = { states: [], layers: t.numLayers, dModel: t.dModel, keptSteps: t.context - 1 };
  const m: MimiBuild = { ctx, io };

  // ── split RVQ: Σ codebook lookups, each group through its own 1×1 output projection
  const codes = b.input("codes", ElemType.INT64, ["batch", config.numCodebooks, "frames"]);
  const lookup = (k: number) => {
    const [group, layer] = k < q.nQSemantic ? ["rvq_first", k] : ["rvq_rest", k - q.nQSemantic];
    const table = `quantizer.${group}.vq.layers.${layer}._codebook.codebook`;
    expectShape(weights, table, [q.bins, q.dimension], "quantizer bins × dimension");
    const codesK = b.op("Gather", [codes, b.constInt64(k)], `quantizer.codes.${k}`, { axis: 1 }); // [B, T]
    return b.op("Gather", [weight(ctx, table), codesK], `quantizer.${group}.layers.${layer}`); // [B, T, dim]
  };
  const project = (group: string, sum: string) => {
    const w = `quantizer.${group}.output_proj.weight`;
    expectShape(weights, w, [q.outputDimension, q.dimension, 1], "quantizer output projection");
    const wT = b.floatInitializer(`${w}.T`, [q.dimension, q.outputDimension], () => transpose2d(weights.readFloat32(w), q.outputDimension, q.dimension));
    return b.op("MatMul", [sum, wT], `quantizer.${group}.output_proj`);
  };
  let semantic = lookup(0);
  for (let k = 1; k < q.nQSemantic; k++) semantic = b.op("Add", [semantic, lookup(k)], `quantizer.rvq_first.sum${k}`);
  let acoustic = lookup(q.nQSemantic);
  for (let k = q.nQSemantic + 1; k < config.numCodebooks; k++) acoustic = b.op("Add", [acoustic, lookup(k)], `quantizer.rvq_rest.sum${k}`);
  const latent = b.op("Add", [project("rvq_first", semantic), project("rvq_rest", acoustic)], "quantizer.out"); // [B, T, D]

  // ── learnt depthwise upsampling to the encoder frame rate
  const upStride = config.upsampleStride;
  let x = b.op("Transpose", [latent], "quantizer.out_t", { perm: [0, 2, 1] }); // [B, D, T]
  if (upStride > 1) {
    const w = "upsample.convtr.convtr.convtr.weight";
    expectShape(weights, w, [D, 1, 2 * upStride], "depthwise upsampling kernel");
    x = streamingConvTranspose(m, x, "upsample", w, 2 * upStride, upStride, D, D);
  }

  // ── decoder transformer on [B, T, D]
  if (t.numLayers > 0) {
    const h = mimiDecoderTransformer(ctx, b.op("Transpose", [x], "decoder_transformer.in", { perm: [0, 2, 1] }), config);
    x = b.op("Transpose", [h], "decoder_transformer.out", { perm: [0, 2, 1] });
  }

  // ── SEANet decoder
  const alpha = { f: s.eluAlpha };
  let mult = 2 ** s.ratios.length;
  let idx = 0;
  x = streamingConv(m, x, `decoder.model.${idx++}`, s.kernelSize, 1, D, mult * s.nFilters);
  for (const ratio of s.ratios) {
    x = b.op("Elu", [x], `decoder.model.${idx++}`, { alpha });
    const width = mult * s.nFilters;
    const p = `decoder.model.${idx++}`;
    expectShape(weights, `${p}.convtr.convtr.weight`, [width, width / 2, 2 * ratio], "SEANet upsampling width");
    const bias = weights.has(`${p}.convtr.convtr.bias`) ? `${p}.convtr.convtr.bias` : undefined;
    x = streamingConvTranspose(m, x, p, `${p}.convtr.convtr.weight`, 2 * ratio, ratio, width / 2, 1, bias);
    for (let j = 0; j < s.nResidualLayers; j++) x = residualBlock(m, x, `decoder.model.${idx++}`, width / 2, s.dilationBase ** j, config);
    mult /= 2;
  }
  x = b.op("Elu", [x], `decoder.model.${idx++}`, { alpha });
  x = streamingConv(m, x, `decoder.model.${idx++}`, s.lastKernelSize, 1, s.nFilters, s.channels);
  b.output(x, "audio", ElemType.FLOAT, ["batch", s.channels, "samples"]);
  return { builder: b, io };
}

/**
 * The decoder transformer on `h` [B, T, D]: its cache inputs `past_key.<l>`/`past_value.<l>`
 * [B, P, D] and `position_offset`, its outputs `new_key.<l>`/`new_value.<l>`. Plain
 * MatMul/Softmax attention: any head size.
 */
export function mimiDecoderTransformer(ctx: BuildContext, h: string, config: MimiConfig): string {
  const { b } = ctx;
  const t = config.transformer;
  for (let l = 0; l < t.numLayers; l++) {
    b.input(pastKeyName(l), ElemType.FLOAT, ["batch", "past", t.dModel]);
    b.input(pastValueName(l), ElemType.FLOAT, ["batch", "past", t.dModel]);
  }
  const { rope, bias } = attentionInputs(ctx, h, config);
  for (let l = 0; l < t.numLayers; l++) {
    checkLayerShapes(ctx.weights, l, config);
    h = transformerLayer(ctx, h, l, rope, bias, config);
  }
  return h;
}

/**
 * RoPE tables for this call's steps, starting at `position_offset`, and the attention bias
 * [S, P+S]: query i (absolute offset + i) sees key j (absolute offset - P + j) iff
 * 0 ≤ i + P - j < context, moshi's causal mask with its sliding context.
 */
function attentionInputs(ctx: BuildContext, h: string, config: MimiConfig): { rope: { cos: string; sin: string }; bias: string } {
  const { b } = ctx;
  const t = config.transformer;
  const hd = t.dModel / t.numHeads;
  const scalar = (v: string, name: string) => b.op("Squeeze", [v, b.constInt64([0])], name);
  const offset = b.input("position_offset", ElemType.INT64, [1]);
  const steps = b.op("Shape", [h], "steps", { start: 1, end: 2 }); // [1]
  const stepIndex = b.op("Range", [b.constInt64(0), scalar(steps, "steps.scalar"), b.constInt64(1)], "step_index"); // [S]
  const positions = b.op("Cast", [b.op("Add", [stepIndex, offset], "positions")], "positions.f", { to: ElemType.FLOAT });
  const freqs = b.op("Mul", [b.op("Unsqueeze", [positions, b.constInt64([1])], "positions.col"), b.constFloat(ropeFrequencies(hd, t.maxPeriod))], "rope.freqs"); // [S, hd/2]
  const angles = b.op("Unsqueeze", [b.op("Concat", [freqs, freqs], "rope.angles2d", { axis: -1 }), b.constInt64([0, 2])], "rope.angles"); // [1, S, 1, hd]
  const rope = { cos: b.op("Cos", [angles], "rope.cos"), sin: b.op("Sin", [angles], "rope.sin") };

  // Every layer keeps the same number of past steps: read it from layer 0's cache.
  const pastSteps = b.op("Shape", [pastKeyName(0)], "past_steps", { start: 1, end: 2 }); // [1]
  const keyIndex = b.op("Range", [b.constInt64(0), scalar(b.op("Add", [pastSteps, steps], "total_steps"), "total_steps.scalar"), b.constInt64(1)], "key_index"); // [P+S]
  const delta = b.op("Sub", [b.op("Unsqueeze", [b.op("Add", [stepIndex, pastSteps], "query_abs"), b.constInt64([1])], "query_col"), keyIndex], "delta"); // [S, P+S]
  const visible = b.op("And", [b.op("GreaterOrEqual", [delta, b.constInt64(0)], "delta.causal"), b.op("Less", [delta, b.constInt64(t.context)], "delta.in_context")], "visible");
  const bias = b.op("Where", [visible, b.constFloat(0), b.constFloat(-Infinity)], "attn_bias");
  return { rope, bias };
}

function checkLayerShapes(weights: WeightSource, l: number, config: MimiConfig): void {
  const t = config.transformer;
  const D = t.dModel;
  const p = `decoder_transformer.transformer.layers.${l}`;
  expectShape(weights, `${p}.self_attn.in_proj_rotate_half.weight`, [3 * D, D], "fused q/k/v projection");
  expectShape(weights, `${p}.self_attn.out_projs.0.weight`, [D, D]);
  expectShape(weights, `${p}.linear1.weight`, [t.dimFeedforward, D], "dim_feedforward × d_model");
  expectShape(weights, `${p}.linear2.weight`, [D, t.dimFeedforward]);
  for (const n of ["norm1", "norm2"]) {
    expectShape(weights, `${p}.${n}.weight`, [D]);
    expectShape(weights, `${p}.${n}.bias`, [D]);
  }
  if (t.layerScale !== null) for (const n of [1, 2]) expectShape(weights, `${p}.layer_scale_${n}.scale`, [D]);
}
