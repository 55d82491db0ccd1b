/**
 * The Linear layer at every precision: fp32 MatMul, q8 (per-row activations × per-channel weights
 * on the integer GEMM) and q4 (MatMulNBits), with the weight quantisation they share.
 */
import { ElemType, type GraphBuilder } from "./builder.ts";
import { CHANNEL_ZERO_POINT, type ChannelQuantizedMatrix, Q4_BLOCK, type QuantizedMatrix, blocksPerRow, quantizeBlocks, quantizeChannelsInto } from "./quantize.ts";
import { type BuildContext, type WeightSource, transpose2d, weight } from "./weights.ts";

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
