/**
 * Antialiased image resizing on 8-bit RGB, computed the way transformers' torchvision backend
 * computes it (`F.resize(uint8 tensor, size, BILINEAR|BICUBIC, antialias=True)`, i.e. PyTorch's
 * `_upsample_{bilinear,bicubic}2d_aa` uint8 CPU kernel, itself a port of Pillow's resampler):
 *
 * - separable: a horizontal pass into an 8-bit buffer, then a vertical pass (a pass is skipped
 *   when that side keeps its size, which is the identity anyway);
 * - per output sample, a filter centred at `scale·(i + 0.5)` with support `(taps/2)·max(scale, 1)`
 *   (triangle for bilinear, Keys cubic a = −0.5 for bicubic), stretched by `1/scale` when
 *   shrinking, weights normalised to sum 1, computed in float64;
 * - weights rounded to int16 with one precision per axis (the largest that keeps the biggest
 *   weight below 2^15), integer dot products, `+ half` then `>> precision`, clamped to 0..255.
 *
 * Matching the integer arithmetic, not only the filter, is what makes the results equal to the
 * reference pixel values (sharp/libvips resamplers differ by a level or two here and there).
 */
import type { ResampleFilter } from "./processor-config.ts";

/** One axis's resampling plan: source window and int16 weights per output sample. */
interface AxisPlan {
  start: Int32Array;
  count: Int32Array;
  /** `[out, taps]` weights, scaled by 2^precision. */
  weights: Int16Array;
  taps: number;
  precision: number;
}

function triangle(x: number): number {
  const a = Math.abs(x);
  return a < 1 ? 1 - a : 0;
}

/** Keys cubic convolution with a = −0.5 (PyTorch's antialiased bicubic, Pillow's BICUBIC). */
function keysCubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

const FILTERS: Record<ResampleFilter, { kernel: (x: number) => number; taps: number }> = {
  bilinear: { kernel: triangle, taps: 2 },
  bicubic: { kernel: keysCubic, taps: 4 },
};

function axisPlan(inSize: number, outSize: number, filter: ResampleFilter): AxisPlan {
  const { kernel, taps: baseTaps } = FILTERS[filter];
  const scale = inSize / outSize;
  const support = scale >= 1 ? baseTaps * 0.5 * scale : baseTaps * 0.5;
  const taps = Math.ceil(support) * 2 + 1;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const real = new Float64Array(outSize * taps);
  let maxWeight = 0;
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), taps);
    let total = 0;
    for (let j = 0; j < n; j++) {
      const w = kernel((j + xmin - center + 0.5) * invScale);
      real[i * taps + j] = w;
      total += w;
    }
    if (total !== 0) {
      for (let j = 0; j < n; j++) {
        real[i * taps + j] /= total;
        maxWeight = Math.max(maxWeight, real[i * taps + j]);
      }
    }
    start[i] = xmin;
    count[i] = n;
  }
  // The largest precision (≤ 22 bits) at which the biggest weight still fits an int16.
  let precision = 0;
  while (precision < 22 && Math.trunc(0.5 + maxWeight * 2 ** (precision + 1)) < 1 << 15) precision++;
  const weights = new Int16Array(outSize * taps);
  const unit = 2 ** precision;
  for (let k = 0; k < real.length; k++) {
    const v = real[k] * unit;
    weights[k] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return { start, count, weights, taps, precision };
}

function clampByte(sum: number, precision: number): number {
  const v = sum >> precision;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Resizes interleaved RGB `src` (width×height) to outWidth×outHeight. */
export function resizeRgb(
  src: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  filter: ResampleFilter,
): Uint8Array {
  let data = src;
  if (outWidth !== width) data = resizeRows(data, width, height, outWidth, axisPlan(width, outWidth, filter));
  if (outHeight !== height) data = resizeColumns(data, outWidth, height, outHeight, axisPlan(height, outHeight, filter));
  return data === src ? src.slice() : data;
}

/** Horizontal pass: every row from `width` to `outWidth` samples. */
function resizeRows(src: Uint8Array, width: number, height: number, outWidth: number, plan: AxisPlan): Uint8Array {
  const out = new Uint8Array(outWidth * height * 3);
  const { start, count, weights, taps, precision } = plan;
  const half = 1 << (precision - 1);
  for (let y = 0; y < height; y++) {
    const rowIn = y * width * 3;
    const rowOut = y * outWidth * 3;
    for (let x = 0; x < outWidth; x++) {
      let r = half;
      let g = half;
      let b = half;
      const w0 = x * taps;
      let p = rowIn + start[x] * 3;
      for (let k = 0, n = count[x]; k < n; k++, p += 3) {
        const w = weights[w0 + k];
        r += src[p] * w;
        g += src[p + 1] * w;
        b += src[p + 2] * w;
      }
      const o = rowOut + x * 3;
      out[o] = clampByte(r, precision);
      out[o + 1] = clampByte(g, precision);
      out[o + 2] = clampByte(b, precision);
    }
  }
  return out;
}

/** Vertical pass: every column from `height` to `outHeight` samples (rows accumulated whole). */
function resizeColumns(src: Uint8Array, width: number, height: number, outHeight: number, plan: AxisPlan): Uint8Array {
  const rowLen = width * 3;
  const out = new Uint8Array(rowLen * outHeight);
  const acc = new Int32Array(rowLen);
  const { start, count, weights, taps, precision } = plan;
  const half = 1 << (precision - 1);
  for (let y = 0; y < outHeight; y++) {
    acc.fill(half);
    for (let k = 0, n = count[y]; k < n; k++) {
      const w = weights[y * taps + k];
      const rowIn = (start[y] + k) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += src[rowIn + i] * w;
    }
    const rowOut = y * rowLen;
    for (let i = 0; i < rowLen; i++) out[rowOut + i] = clampByte(acc[i], precision);
  }
  return out;
}
