/**
 * Block quantisation of Linear weights at load time, in the layout of onnxruntime's
 * `com.microsoft` `MatMulNBits` / `GatherBlockQuantized`: for a weight [N, K] (PyTorch [out, in]),
 * blocks of 32 consecutive K values per row share one float scale; codes are unsigned with the
 * implicit zero point 2^(bits-1) and packed low nibble first.
 *
 *   q4: llama.cpp's Q4_0 rule — d = (value of largest magnitude) / -8, code = clamp(⌊w/d + 8.5⌋, 0, 15)
 *   q8: llama.cpp's Q8_0 rule — d = max|w| / 127, code = round(w/d) + 128
 */

export const QUANT_BLOCK = 32;

export interface QuantizedMatrix {
  bits: 4 | 8;
  rows: number; // N
  cols: number; // K
  /** [N, K/32, 32·bits/8] packed codes. */
  codes: Uint8Array;
  /** [N, K/32] scales. */
  scales: Float32Array;
}

export function canQuantize(cols: number): boolean {
  return cols % QUANT_BLOCK === 0;
}

export function quantizeBlocks(w: Float32Array, rows: number, cols: number, bits: 4 | 8): QuantizedMatrix {
  if (!canQuantize(cols)) throw new Error(`cannot block-quantise a row of ${cols} values (block ${QUANT_BLOCK})`);
  const blocksPerRow = cols / QUANT_BLOCK;
  const blob = (QUANT_BLOCK * bits) / 8;
  const codes = new Uint8Array(rows * blocksPerRow * blob);
  const scales = new Float32Array(rows * blocksPerRow);
  for (let block = 0; block < rows * blocksPerRow; block++) {
    const start = block * QUANT_BLOCK; // rows are contiguous, so block index × 32 is the element offset
    const out = block * blob;
    if (bits === 4) {
      let extreme = 0;
      for (let i = 0; i < QUANT_BLOCK; i++) if (Math.abs(w[start + i]) > Math.abs(extreme)) extreme = w[start + i];
      const d = Math.fround(extreme / -8);
      const inv = d !== 0 ? 1 / d : 0;
      scales[block] = d;
      for (let i = 0; i < QUANT_BLOCK; i += 2) {
        const lo = Math.min(15, Math.max(0, Math.floor(w[start + i] * inv + 8.5)));
        const hi = Math.min(15, Math.max(0, Math.floor(w[start + i + 1] * inv + 8.5)));
        codes[out + i / 2] = lo | (hi << 4);
      }
    } else {
      let amax = 0;
      for (let i = 0; i < QUANT_BLOCK; i++) amax = Math.max(amax, Math.abs(w[start + i]));
      const d = Math.fround(amax / 127);
      const inv = d !== 0 ? 1 / d : 0;
      scales[block] = d;
      for (let i = 0; i < QUANT_BLOCK; i++) codes[out + i] = Math.round(w[start + i] * inv) + 128;
    }
  }
  return { bits, rows, cols, codes, scales };
}

/** The float weights a quantised matrix stands for (tests and error measurements). */
export function dequantizeBlocks(q: QuantizedMatrix): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  const blob = (QUANT_BLOCK * q.bits) / 8;
  const zero = q.bits === 4 ? 8 : 128;
  for (let block = 0; block < q.scales.length; block++) {
    const d = q.scales[block];
    for (let i = 0; i < QUANT_BLOCK; i++) {
      const code = q.bits === 4 ? (q.codes[block * blob + (i >> 1)] >> ((i & 1) * 4)) & 15 : q.codes[block * blob + i];
      out[block * QUANT_BLOCK + i] = (code - zero) * d;
    }
  }
  return out;
}
