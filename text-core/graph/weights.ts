/**
 * What every graph block reads: the checkpoint (`WeightSource`), the build context, and checkpoint
 * tensors as initializers.
 */
import { LfmError } from "../errors.ts";
import type { GraphBuilder } from "./builder.ts";
import type { Precision } from "./precision.ts";

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
