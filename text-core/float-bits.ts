/**
 * float32 ↔ IEEE half (f16) and bfloat16 bit patterns, element-wise over typed arrays. Both
 * narrowing conversions round to nearest even, as PyTorch's `.to(torch.float16 / bfloat16)` does;
 * widening is exact. Used for checkpoint tensors (safetensors) and stored index vectors.
 */

let f16ToF32Bits: Uint32Array | null = null;

/** float32 bit patterns of all 65536 halves (exact: every half is a float32). Built once. */
function f16Table(): Uint32Array {
  if (f16ToF32Bits !== null) return f16ToF32Bits;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f) {
      table[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf, or NaN with its payload
    } else if (exp === 0) {
      scratch[0] = mant * 2 ** -24; // zero or subnormal: exact in float32
      table[h] = (sign | scratchBits[0]) >>> 0;
    } else {
      table[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16ToF32Bits = table;
  return table;
}

/** IEEE half bits → float32 (exact; NaN payloads kept). */
export function f16ToFloat32(src: Uint16Array): Float32Array {
  const table = f16Table();
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]];
  return out;
}

/** bfloat16 bits → float32 (exact: bf16 is the top half of a float32). */
export function bf16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** float32 → bfloat16 bits, rounding to nearest even; NaN stays NaN (payload kept where it fits). */
export function float32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) {
      const top = b >>> 16;
      out[i] = (top & 0x7f) === 0 ? top | 0x40 : top; // keep it a NaN after truncation
    } else {
      out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // overflow to ±inf is correct RNE
    }
  }
  return out;
}

/** float32 → IEEE half bits, rounding to nearest even, with subnormals, ±inf and NaN. */
export function float32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = mant === 0 ? sign | 0x7c00 : sign | 0x7c00 | (mant >>> 13) | ((mant >>> 13) === 0 ? 0x200 : 0);
      continue;
    }
    const halfExp = exp - 112; // rebias 127 → 15
    if (halfExp >= 31) {
      out[i] = sign | 0x7c00; // too large: ±inf
    } else if (halfExp <= 0) {
      // Half subnormal range (|x| < 2^-14): round |x| / 2^-24 to an integer, ties to even.
      // Exact in double; a result of 1024 is the smallest normal half, which the bits encode as is.
      const q = Math.abs(src[i]) * 16777216;
      const floor = Math.floor(q);
      const frac = q - floor;
      const m = frac > 0.5 || (frac === 0.5 && (floor & 1) === 1) ? floor + 1 : floor;
      out[i] = sign | m;
    } else {
      const lower = mant & 0x1fff;
      let h = (halfExp << 10) | (mant >>> 13);
      if (lower > 0x1000 || (lower === 0x1000 && (h & 1) === 1)) h += 1; // may carry into inf: correct
      out[i] = sign | h;
    }
  }
  return out;
}
