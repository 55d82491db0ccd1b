/**
 * Weight quantisation at load time, in the layouts onnxruntime's CPU kernels read.
 *
 * q4 — `com.microsoft` `MatMulNBits`: for a weight [N, K] (PyTorch [out, in]), blocks of 32
 * consecutive K values per row share one float scale, llama.cpp's Q4_0 rule:
 * d = (value of largest magnitude) / -8, code = clamp(⌊w/d + 8.5⌋, 0, 15), implicit zero point 8,
 * packed low nibble first.
 *
 * q8 — `MatMulIntegerToFloat` (below): one scale per output channel, activations quantised per
 * row at run time. Blocks of 8-bit weights (MatMulNBits with 8 bits) were the first design; on
 * AVX2 its 8-bit kernel ran a prompt 2–3× slower than onnxruntime's integer GEMM and held
 * 1.19 bytes per weight against 1.0 here (bench/README).
 */

export const Q4_BLOCK = 32;

export interface QuantizedMatrix {
  bits: 4;
  /** Values per block (Q4_BLOCK). */
  block: number;
  rows: number; // N
  cols: number; // K
  /** [N, ⌈K/block⌉, block/2] packed codes. */
  codes: Uint8Array;
  /** [N, ⌈K/block⌉] scales. */
  scales: Float32Array;
}

/**
 * Blocks per row of K values. A K that is not a multiple of 32 (SigLIP2-so400m's 4304-wide MLP)
 * ends each row with a block padded by zeros, which MatMulNBits reads up to K only.
 */
export function blocksPerRow(cols: number): number {
  return Math.ceil(cols / Q4_BLOCK);
}

export function quantizeBlocks(w: Float32Array, rows: number, cols: number): QuantizedMatrix {
  const perRow = blocksPerRow(cols);
  const blob = Q4_BLOCK / 2;
  const codes = new Uint8Array(rows * perRow * blob);
  const scales = new Float32Array(rows * perRow);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < perRow; j++) {
      const block = r * perRow + j;
      const start = r * cols + j * Q4_BLOCK;
      const length = Math.min(Q4_BLOCK, cols - j * Q4_BLOCK);
      const out = block * blob;
      let extreme = 0;
      for (let i = 0; i < length; i++) if (Math.abs(w[start + i]) > Math.abs(extreme)) extreme = w[start + i];
      const d = Math.fround(extreme / -8);
      const inv = d !== 0 ? 1 / d : 0;
      scales[block] = d;
      for (let i = 0; i < Q4_BLOCK; i += 2) {
        // Padding past the row's end is 0, i.e. code 8 (the zero point).
        const lo = i < length ? Math.min(15, Math.max(0, Math.floor(w[start + i] * inv + 8.5))) : 8;
        const hi = i + 1 < length ? Math.min(15, Math.max(0, Math.floor(w[start + i + 1] * inv + 8.5))) : 8;
        codes[out + i / 2] = lo | (hi << 4);
      }
    }
  }
  return { bits: 4, block: Q4_BLOCK, rows, cols, codes, scales };
}

/** The float weights a q4 matrix stands for (tests and error measurements). */
export function dequantizeBlocks(q: QuantizedMatrix): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  const blob = q.block / 2;
  const perRow = Math.ceil(q.cols / q.block);
  for (let r = 0; r < q.rows; r++) {
    for (let j = 0; j < perRow; j++) {
      const block = r * perRow + j;
      const d = q.scales[block];
      const length = Math.min(q.block, q.cols - j * q.block);
      for (let i = 0; i < length; i++) out[r * q.cols + j * q.block + i] = (((q.codes[block * blob + (i >> 1)] >> ((i & 1) * 4)) & 15) - 8) * d;
    }
  }
  return out;
}

/**
 * q8: one symmetric 8-bit scale per output channel, in the layout of onnxruntime's integer GEMM
 * (`MatMulIntegerToFloat`): codes [K, N] (transposed), unsigned with zero point 128, scales [N].
 * Activations are quantised per row at run time (see `int8Linear`), so the product runs on MLAS's
 * u8·u8 kernel, which cannot saturate on AVX2 (its u8·s8 kernel can: onnxruntime's docs).
 */
export interface ChannelQuantizedMatrix {
  rows: number; // N
  cols: number; // K
  /** [K, N] codes, code = round(w / scale) + 128. */
  codes: Uint8Array;
  /** [N] scales, max|w| / 127 of each output channel. */
  scales: Float32Array;
}

export const CHANNEL_ZERO_POINT = 128;

/**
 * Quantises rows [rowStart, rowStart + rows.length / cols) of a [N, K] weight into `into`, so a
 * large matrix can be read and quantised a slice at a time.
 */
export function quantizeChannelsInto(into: ChannelQuantizedMatrix, slice: Float32Array, rowStart: number): void {
  const { cols: K, rows: N } = into;
  const count = slice.length / K;
  for (let r = 0; r < count; r++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(slice[r * K + k]));
    const d = Math.fround(amax / 127);
    const inv = d !== 0 ? 1 / d : 0;
    into.scales[rowStart + r] = d;
    const n = rowStart + r;
    for (let k = 0; k < K; k++) into.codes[k * N + n] = Math.round(slice[r * K + k] * inv) + CHANNEL_ZERO_POINT;
  }
}

export function quantizeChannels(w: Float32Array, rows: number, cols: number): ChannelQuantizedMatrix {
  const q: ChannelQuantizedMatrix = { rows, cols, codes: new Uint8Array(rows * cols), scales: new Float32Array(rows) };
  quantizeChannelsInto(q, w, 0);
  return q;
}

/** The float weights [N, K] a channel-quantised matrix stands for (tests and error measurements). */
export function dequantizeChannels(q: ChannelQuantizedMatrix): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  for (let n = 0; n < q.rows; n++) {
    for (let k = 0; k < q.cols; k++) out[n * q.cols + k] = (q.codes[k * q.rows + n] - CHANNEL_ZERO_POINT) * q.scales[n];
  }
  return out;
}
