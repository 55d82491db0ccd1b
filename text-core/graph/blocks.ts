/**
 * Shared graph blocks. Each takes the build context, an input value name and a checkpoint weight
 * prefix, and returns its output value name. Architectures (`lfm2.ts`, the vision and audio
 * towers) are short loops over these; nothing here knows about a particular model.
 *
 * Layout convention for sequences: [batch, seq, channels] (`[B, S, D]`).
 */
import { LfmError } from "../errors.ts";
import { ElemType, type GraphBuilder } from "./builder.ts";
import { CHANNEL_ZERO_POINT, type ChannelQuantizedMatrix, Q4_BLOCK, type QuantizedMatrix, blocksPerRow, quantizeBlocks, quantizeChannelsInto } from "./quantize.ts";

/** Where weights come from: a checkpoint, or a synthetic source in tests and benchmarks. */
export interface WeightSource {
  has(name: string): boolean;
  /** Shape as stored (PyTorch layout: Linear weights are [out, in]). Throws TENSOR_MISSING. */
  shape(name: string): number[];
  readFloat32(name: string): Float32Array;
  /** Rows [start, start + count) of a matrix; lets big weights be quantised a slice at a time. */
  readFloat32Rows?(name: string, start: number, count: number): Float32Array;
  /** The stored value type (safetensors names: "BF16", "F32", …), when known. */
  dtype?(name: string): string;
}

export const PRECISIONS = ["fp32", "q8", "q4"] as const;
export type Precision = (typeof PRECISIONS)[number];

export function isPrecision(value: unknown): value is Precision {
  return PRECISIONS.includes(value as Precision);
}

/**
 * A load option's precision, checked (JavaScript callers can pass anything, and an unknown value
 * must not quietly build a float32 graph); `fallback` when absent.
 */
export function precisionOption(value: unknown, fallback: Precision, option = "precision"): Precision {
  if (value === undefined) return fallback;
  if (isPrecision(value)) return value;
  throw new LfmError("INVALID_ARGUMENT", `${option} must be "fp32", "q8" or "q4"; got ${JSON.stringify(value)}.`);
}

/**
 * The default for an encoder that only runs prompts (vision tower, audio encoder) beside a
 * language core at `core`: fp32 with fp32, else q8 — a prompt is compute-bound, where the 8-bit
 * integer GEMM is onnxruntime's fastest kernel on AVX2 and 4-bit MatMulNBits its slowest.
 */
export function promptEncoderPrecision(core: Precision): Precision {
  return core === "fp32" ? "fp32" : "q8";
}

export interface BuildContext {
  b: GraphBuilder;
  weights: WeightSource;
  precision: Precision;
  /**
   * The rank of every value the Linears read, when the architecture knows it (LFM2: [B, S, D]).
   * Lets q8 name the last axis as a constant instead of computing it per Linear at run time.
   */
  activationRank?: number;
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
  if (ctx.precision === "q8") return int8Linear(ctx, x, weightName, inDim, outName, bias);
  if (ctx.precision === "q4") {
    const { codes, scales } = quantizedWeight(ctx, weightName);
    const inputs = bias ? [x, codes, scales, "", "", bias] : [x, codes, scales];
    return ctx.b.op("MatMulNBits", inputs, outName, { K: inDim, N: outDim, bits: 4, block_size: Q4_BLOCK, accuracy_level: ACCURACY_LEVEL }, "com.microsoft");
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

/**
 * q8: `x · Wᵀ` on onnxruntime's integer GEMM. Each row of `x` (one token) is quantised to 8 bits
 * with its own scale max|x|/127, W has one scale per output channel, and the int32 products are
 * scaled back by both. On AVX2 this runs 2–3× faster than 8-bit MatMulNBits for a prompt (whose
 * 8-bit kernel is slower than its 4-bit one) and as fast for one token (bench/README).
 */
function int8Linear(ctx: BuildContext, x: string, weightName: string, inDim: number, outName: string, bias?: string): string {
  const { b } = ctx;
  const rowsOf = quantizedRows(ctx, x, inDim);
  const { codes, scales } = channelQuantizedWeight(ctx, weightName);
  b.useDomain("com.microsoft", 1);
  const zero = int8ZeroPoint(b);
  // A row scale [..., 1] times a channel scale [N] rescales the int32 products [..., N]. The bias
  // is added apart: onnxruntime applies a non-scalar scale after its own bias input.
  const inputs = [rowsOf.codes, codes, rowsOf.scale, scales, zero, zero];
  const y = b.op("MatMulIntegerToFloat", inputs, bias ? `${outName}.unbiased` : outName, {}, "com.microsoft");
  return bias ? b.op("Add", [y, bias], outName) : y;
}

/** The zero point 128 of every q8 code, weights and activations alike (one element). */
function int8ZeroPoint(b: GraphBuilder): string {
  return b.initializer("int8.zero_point", ElemType.UINT8, [1], () => new Uint8Array([CHANNEL_ZERO_POINT]));
}

/** Per-row quantisations of activations, shared by the Linears that read the same value (q/k/v, w1/w3). */
const rowQuantizations = new WeakMap<GraphBuilder, Map<string, { codes: string; scale: string }>>();

/** `x` [..., K] as uint8 codes (zero point 128) with one scale per row [..., 1]. */
function quantizedRows(ctx: BuildContext, x: string, K: number): { codes: string; scale: string } {
  const { b } = ctx;
  let cache = rowQuantizations.get(b);
  if (!cache) rowQuantizations.set(b, (cache = new Map()));
  const cached = cache.get(x);
  if (cached) return cached;
  // The last axis as a positive index: onnxruntime's ReduceMax returns the input's shape for an
  // empty input reduced over axis -1 (the depthformer feeds Linears zero rows).
  const lastAxis = ctx.activationRank
    ? b.constInt64([ctx.activationRank - 1])
    : b.op("Sub", [b.op("Size", [b.op("Shape", [x], `${x}.shape`)], `${x}.rank`), b.constInt64([1])], `${x}.last_axis`);
  const absMax = b.op("ReduceMax", [b.op("Abs", [x], `${x}.abs`), lastAxis], `${x}.absmax`, { keepdims: 1 });
  // A row of zeros keeps a tiny positive scale: its codes are all the zero point.
  const scale = b.op("Max", [b.op("Mul", [absMax, b.constFloat(1 / 127)], `${x}.scale.raw`), b.constFloat(1e-30)], `${x}.scale`);
  const zeroPoints = b.op("Expand", [int8ZeroPoint(b), b.op("Shape", [scale], `${x}.scale.shape`)], `${x}.zero_points`);
  // Blocked QuantizeLinear (opset 21) with one block per row: a per-row scale in a single op.
  const codes = b.op("QuantizeLinear", [x, scale, zeroPoints], `${x}.q8`, { axis: -1, block_size: K });
  const rows = { codes, scale };
  cache.set(x, rows);
  return rows;
}

/**
 * One quantisation of a checkpoint weight feeding several initializers (codes, scales): computed
 * when the first of them is written, dropped after the last, so memory holds a tensor's worth at
 * a time. `use(pick)` registers one initializer's bytes.
 */
function sharedQuantization<Q>(ctx: BuildContext, key: string, quantize: () => Q): (pick: (q: Q) => Uint8Array) => () => Uint8Array {
  let pending = pendingQuantizations.get(ctx.b);
  if (!pending) pendingQuantizations.set(ctx.b, (pending = new Map()));
  const map = pending;
  return (pick) => {
    const entry = map.get(key) ?? { users: 0 };
    map.set(key, entry);
    entry.users++;
    return () => {
      entry.matrix ??= quantize();
      const bytes = pick(entry.matrix as Q);
      if (--entry.users === 0) {
        // The builder keeps these closures until it is dropped: release the matrix now.
        entry.matrix = undefined;
        map.delete(key);
      }
      return bytes;
    };
  };
}

const pendingQuantizations = new WeakMap<GraphBuilder, Map<string, { matrix?: unknown; users: number }>>();

const floatBytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A checkpoint weight [N, K] as 4-bit MatMulNBits codes [N, ⌈K/32⌉, 16] and scales [N, ⌈K/32⌉]. */
function quantizedWeight(ctx: BuildContext, name: string): { codes: string; scales: string } {
  const [rows, cols] = ctx.weights.shape(name);
  const codesName = `${name}.q4`;
  const scalesName = `${name}.q4.scales`;
  const use = sharedQuantization(ctx, `${name}/q4`, () => quantizeWeight(ctx.weights, name, rows, cols));
  const blocks = blocksPerRow(cols);
  if (!ctx.b.hasInitializer(codesName)) ctx.b.initializer(codesName, ElemType.UINT8, [rows, blocks, Q4_BLOCK / 2], use((q) => q.codes));
  if (!ctx.b.hasInitializer(scalesName)) ctx.b.initializer(scalesName, ElemType.FLOAT, [rows, blocks], use((q) => floatBytes(q.scales)));
  return { codes: codesName, scales: scalesName };
}

/** A checkpoint weight [N, K] as 8-bit per-channel codes [K, N] and scales [N] (`int8Linear`). */
function channelQuantizedWeight(ctx: BuildContext, name: string): { codes: string; scales: string } {
  const [rows, cols] = ctx.weights.shape(name);
  const codesName = `${name}.q8`;
  const scalesName = `${name}.q8.scales`;
  const use = sharedQuantization(ctx, `${name}/q8`, () => {
    const q: ChannelQuantizedMatrix = { rows, cols, codes: new Uint8Array(rows * cols), scales: new Float32Array(rows) };
    forEachRowSlice(ctx.weights, name, rows, cols, (slice, start) => quantizeChannelsInto(q, slice, start));
    return q;
  });
  if (!ctx.b.hasInitializer(codesName)) ctx.b.initializer(codesName, ElemType.UINT8, [cols, rows], use((q) => q.codes));
  if (!ctx.b.hasInitializer(scalesName)) ctx.b.initializer(scalesName, ElemType.FLOAT, [rows], use((q) => floatBytes(q.scales)));
  return { codes: codesName, scales: scalesName };
}

/** Reads a checkpoint matrix in slices of ~4M values, so no float copy of it is ever whole. */
function forEachRowSlice(weights: WeightSource, name: string, rows: number, cols: number, visit: (slice: Float32Array, rowStart: number) => void): void {
  if (!weights.readFloat32Rows) return visit(weights.readFloat32(name), 0);
  const sliceRows = Math.max(1, Math.floor((4 << 20) / cols));
  for (let r = 0; r < rows; r += sliceRows) visit(weights.readFloat32Rows(name, r, Math.min(sliceRows, rows - r)), r);
}

function quantizeWeight(weights: WeightSource, name: string, rows: number, cols: number): QuantizedMatrix {
  const perRow = blocksPerRow(cols);
  const out: QuantizedMatrix = { bits: 4, block: Q4_BLOCK, rows, cols, codes: new Uint8Array((rows * perRow * Q4_BLOCK) / 2), scales: new Float32Array(rows * perRow) };
  forEachRowSlice(weights, name, rows, cols, (slice, r) => {
    const part = quantizeBlocks(slice, slice.length / cols, cols);
    out.codes.set(part.codes, (r * perRow * Q4_BLOCK) / 2);
    out.scales.set(part.scales, r * perRow);
  });
  return out;
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
