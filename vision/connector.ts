/**
 * The LFM2-VL connector — matches HF `Lfm2VlMultiModalProjector`:
 *
 *   per crop: hidden [hp·wp, C] → pixel unshuffle (f = 2) → [hp/f · wp/f, f²·C]
 *   → LayerNorm (eps 1e-5, only when the checkpoint has its weights) → linear_1 → GELU (erf) → linear_2
 *
 * HF's unshuffle (reshape, permute, reshape, permute) puts the f×f block of crop row/column
 * (f·a + s, f·b + r) at channels [(s·f + r)·C, (s·f + r + 1)·C) of output token a·(wp/f) + b.
 * That is a pure row gather, so it is done as one: `pixelUnshuffleIndex` computes, per output
 * token and block position, which row of the flattened [crops·N, C] tower output to take, and
 * the graph gathers those rows and views each group of f² rows as one f²·C-wide token.
 */
import { ElemType } from "../text-core/graph/builder.ts";
import { layerNorm } from "../text-core/graph/blocks.ts";
import { linear } from "../text-core/graph/linear.ts";
import { type BuildContext, expectShape } from "../text-core/graph/weights.ts";
import { LfmError } from "../text-core/errors.ts";

/** A crop's patch grid (what the tower saw, in patches). */
export interface PatchGridShape {
  gridH: number;
  gridW: number;
}

/** Image tokens a crop becomes: (hp/f)·(wp/f). */
export function tokensForGrid(grid: PatchGridShape, factor: number): number {
  return (grid.gridH / factor) * (grid.gridW / factor);
}

/**
 * Row indices into the flattened [crops·rowsPerCrop, C] tower output, f² per output token, for
 * every crop in order: the gather that performs HF's pixel unshuffle. `rowsPerCrop` is the padded
 * patch count of a call (crop k's patch (y, x) is row k·rowsPerCrop + y·wp + x).
 */
export function pixelUnshuffleIndex(grids: readonly PatchGridShape[], rowsPerCrop: number, factor: number): BigInt64Array {
  const total = grids.reduce((n, g) => n + tokensForGrid(g, factor) * factor * factor, 0);
  const index = new BigInt64Array(total);
  let at = 0;
  grids.forEach((g, k) => {
    if (g.gridH % factor !== 0 || g.gridW % factor !== 0) {
      throw new LfmError("INVALID_ARGUMENT", `a crop of ${g.gridH}×${g.gridW} patches cannot be unshuffled by ${factor}: both sides must be multiples of ${factor} (the image processor guarantees this).`);
    }
    if (g.gridH * g.gridW > rowsPerCrop) throw new LfmError("INVALID_ARGUMENT", `a crop of ${g.gridH}×${g.gridW} patches does not fit in ${rowsPerCrop} rows.`);
    for (let a = 0; a < g.gridH / factor; a++) {
      for (let c = 0; c < g.gridW / factor; c++) {
        for (let s = 0; s < factor; s++) {
          for (let r = 0; r < factor; r++) index[at++] = BigInt(k * rowsPerCrop + (factor * a + s) * g.gridW + factor * c + r);
        }
      }
    }
  });
  return index;
}

export interface ConnectorShape {
  visionHidden: number;
  factor: number;
  projectorHidden: number;
  textHidden: number;
  bias: boolean;
  layerNormEps: number;
}

/**
 * `hidden` [crops, N, C] and the unshuffle `index` [T·f²] → image features [T, textHidden].
 * The LayerNorm is applied when `layer_norm.weight` is in the checkpoint: configs of some releases
 * say otherwise, the weights are what the model was trained with (research/vision.md §2).
 */
export function lfm2VlConnector(ctx: BuildContext, hidden: string, index: string, prefix: string, shape: ConnectorShape): string {
  const { b, weights } = ctx;
  const inWidth = shape.factor * shape.factor * shape.visionHidden;
  const rows = b.op("Gather", [b.op("Reshape", [hidden, b.constInt64([-1, shape.visionHidden])], "vision.rows"), index], "unshuffle.rows"); // [T·f², C]
  let x = b.op("Reshape", [rows, b.constInt64([-1, inWidth])], "unshuffle"); // [T, f²·C]
  if (weights.has(`${prefix}layer_norm.weight`)) {
    expectShape(weights, `${prefix}layer_norm.weight`, [inWidth], "vision hidden × downsample_factor²");
    x = layerNorm(ctx, x, `${prefix}layer_norm`, shape.layerNormEps, `${prefix}layer_norm`);
  }
  expectShape(weights, `${prefix}linear_1.weight`, [shape.projectorHidden, inWidth], "projector_hidden_size × vision hidden·downsample_factor²");
  expectShape(weights, `${prefix}linear_2.weight`, [shape.textHidden, shape.projectorHidden], "text hidden × projector_hidden_size");
  const biasOf = (name: string) => (shape.bias ? `${prefix}${name}.bias` : undefined);
  const h = linear(ctx, x, `${prefix}linear_1.weight`, `${prefix}linear_1`, biasOf("linear_1"));
  const act = b.op("Gelu", [h], `${prefix}act`, {}, "com.microsoft"); // exact erf GELU (ACT2FN["gelu"])
  return linear(ctx, act, `${prefix}linear_2.weight`, `${prefix}linear_2`, biasOf("linear_2"));
}

/** The unshuffle index as a graph input. */
export function declareConnectorInputs(ctx: BuildContext): string {
  return ctx.b.input("unshuffle_index", ElemType.INT64, ["unshuffled_rows"]);
}
