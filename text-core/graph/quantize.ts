/**
 * Block quantisation of Linear weights at load time, in the layout of onnxruntime's
 * `com.microsoft` `MatMulNBits` / `GatherBlockQuantized`: for a weight [N, K] (PyTorch [out, in]),
 * blocks of consecutive K values per row share one float scale; codes are unsigned with the
 * implicit zero point 2^(bits-1) and packed low nibble first.
 *
 *   q4: llama.cpp's Q4_0 rule, blocks of 32 — d = (value of largest magnitude) / -8,
 *       code = clamp(⌊w/d + 8.5⌋, 0, 15)
 *   q8: llama.cpp's Q8_0 rule, blocks of 64 — d = max|w| / 127, code = round(w/d) + 128
 *
 * Why 64 for q8: onnxruntime keeps three float32 values per block (the scale in the packed
 * matrix, the block sums its int8 kernel needs, and the scale initializer it cannot release), so
 * blocks of 32 cost 1.375 bytes per weight where GGUF's Q8_0 costs 1.0625; blocks of 64 cost
 * 1.19, and 8 bits leave ample precision for the wider block.
 */

/** Block length for `bits`. */
export function quantBlock(bits: 4 | 8): number {
  return bits === 4 ? 32 : 64;
}

export interface QuantizedMatrix {
  bits: 4 | 8;
  /** Values per block (quantBlock(bits)). */
  block: number;
  rows: number; // N
  cols: number; // K
  /** [N, K/block, block·bits/8] packed codes. */
  codes: Uint8Array;
  /** [N, K/block] scales. */
  scales: Float32Array;
}

export function canQuantize(cols: number, bits: 4 | 8): boolean {
  return cols % quantBlock(bits) === 0;
}

export function quantizeBlocks(w: Float32Array, rows: number, cols: number, bits: 4 | 8): QuantizedMatrix {
  const QUANT_BLOCK = quantBlock(bits);
  if (!canQuantize(cols, bits)) throw new Error(`cannot block-quantise a row of ${cols} values (block ${QUANT_BLOCK})`);
  const blocksPerRow = cols / QUANT_BLOCK;
  const blob = (QUANT_BLOCK * bits) / 8;
  const codes = new Uint8Array(rows * blocksPerRow * blob);
  const scales = new Float32Array(rows * blocksPerRow);
  for (let block = 0; block < rows * blocksPerRow; block++) {
    const start = block * QUANT_BLOCK; // rows are contiguous, so block index × block length is the element offset
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
  return { bits, block: QUANT_BLOCK, rows, cols, codes, scales };
}

/** The float weights a quantised matrix stands for (tests and error measurements). */
export function dequantizeBlocks(q: QuantizedMatrix): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  const blob = (q.block * q.bits) / 8;
  const zero = q.bits === 4 ? 8 : 128;
  for (let block = 0; block < q.scales.length; block++) {
    const d = q.scales[block];
    for (let i = 0; i < q.block; i++) {
      const code = q.bits === 4 ? (q.codes[block * blob + (i >> 1)] >> ((i & 1) * 4)) & 15 : q.codes[block * blob + i];
      out[block * q.block + i] = (code - zero) * d;
    }
  }
  return out;
}
