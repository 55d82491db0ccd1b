/** The precisions a graph is built at, and the defaults each kind of model takes. */
import { LfmError } from "../errors.ts";

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
