import { describe, expect, it } from "vitest";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { checkpointWeights } from "../../text-core/model.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";
import { pixelUnshuffleIndex, tokensForGrid } from "../../vision/connector.ts";
import { buildImageEncoderGraph, findVisionPrefixes } from "../../vision/image-encoder.ts";
import { loadLfm2VlConfig } from "../../vision/vl-config.ts";
import { FIXTURES } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

/** A row-major n-d array with PyTorch's reshape (a view of the same order) and permute. */
class NdArray {
  constructor(
    readonly data: number[],
    readonly shape: number[],
  ) {}
  reshape(shape: number[]): NdArray {
    return new NdArray(this.data, shape);
  }
  permute(perm: number[]): NdArray {
    const shape = perm.map((p) => this.shape[p]);
    const strides = this.shape.map((_, i) => this.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const out: number[] = [];
    const idx = new Array(shape.length).fill(0);
    for (let n = 0; n < this.data.length; n++) {
      out.push(this.data[perm.reduce((off, p, k) => off + idx[k] * strides[p], 0)]);
      for (let k = shape.length - 1; k >= 0 && ++idx[k] === shape[k]; k--) idx[k] = 0;
    }
    return new NdArray(out, shape);
  }
}

/** HF `Lfm2VlMultiModalProjector.pixel_unshuffle`, step by step, on a (1, h, w, C) tensor. */
function hfPixelUnshuffle(x: NdArray, f: number): NdArray {
  const [n, w, h, c] = x.shape; // HF's names: the tensor really is (1, rows, cols, C)
  let y = x.reshape([n, w, h / f, c * f]);
  y = y.permute([0, 2, 1, 3]);
  y = y.reshape([n, h / f, w / f, c * f * f]);
  return y.permute([0, 2, 1, 3]);
}

describe("pixel unshuffle", () => {
  it("the row gather reproduces HF's reshape/permute sequence, channel order included", () => {
    for (const [gridH, gridW, C] of [
      [4, 6, 3],
      [6, 4, 2],
      [2, 2, 5],
      [8, 10, 1],
    ]) {
      const values = Array.from({ length: gridH * gridW * C }, (_, i) => i);
      const expected = hfPixelUnshuffle(new NdArray(values, [1, gridH, gridW, C]), 2).data;
      const index = pixelUnshuffleIndex([{ gridH, gridW }], gridH * gridW, 2);
      const gathered = Array.from(index, (row) => values.slice(Number(row) * C, (Number(row) + 1) * C)).flat();
      expect(gathered, `${gridH}×${gridW}×${C}`).toEqual(expected);
    }
  });

  it("block (dy, dx) lands at channels (2·dy + dx)·C: a token is its 2×2 block row by row", () => {
    // 4×4 patches of one channel holding their own row-major index.
    const index = Array.from(pixelUnshuffleIndex([{ gridH: 4, gridW: 4 }], 16, 2), Number);
    expect(index.slice(0, 4)).toEqual([0, 1, 4, 5]); // token (0,0)
    expect(index.slice(4, 8)).toEqual([2, 3, 6, 7]); // token (0,1)
    expect(index.slice(8, 12)).toEqual([8, 9, 12, 13]); // token (1,0)
  });

  it("several crops index into their own padded rows, in order", () => {
    const index = Array.from(pixelUnshuffleIndex([{ gridH: 2, gridW: 2 }, { gridH: 2, gridW: 4 }], 10, 2), Number);
    expect(index).toEqual([0, 1, 2, 3, 10, 11, 14, 15, 12, 13, 16, 17]);
    expect(tokensForGrid({ gridH: 26, gridW: 36 }, 2)).toBe(234);
  });

  it("odd grids and grids larger than the padded length are INVALID_ARGUMENT", () => {
    expect(() => pixelUnshuffleIndex([{ gridH: 3, gridW: 4 }], 12, 2)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => pixelUnshuffleIndex([{ gridH: 4, gridW: 4 }], 8, 2)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("projector LayerNorm", () => {
  const dir = join(FIXTURES, "vision/tiny-lfm2-vl");
  const config = loadLfm2VlConfig(dir);

  async function features(dropLayerNorm: boolean): Promise<{ nodes: number; out: Float32Array }> {
    const ck = Checkpoint.open(dir);
    try {
      const weights = checkpointWeights(ck);
      const hidden = (name: string) => dropLayerNorm && name.includes("multi_modal_projector.layer_norm");
      const source = { ...weights, has: (n: string) => !hidden(n) && weights.has(n), names: () => weights.names().filter((n) => !hidden(n)) };
      const b = buildImageEncoderGraph(config, source, findVisionPrefixes(source), "fp32");
      const session = await ort.InferenceSession.create(b.toBytes(), { intraOpNumThreads: 1 });
      const N = 16; // a 4×4 crop
      const resize = new Float32Array(N * 256).map((_, i) => (i % 257 === 0 ? 1 : 0));
      const out = await session.run({
        pixel_values: new ort.Tensor("float32", new Float32Array(N * 768).map((_, i) => Math.sin(i)), [1, N, 768]),
        patch_mask: new ort.Tensor("float32", new Float32Array(N).fill(1), [1, N]),
        position_resize: new ort.Tensor("float32", resize, [1, N, 256]),
        unshuffle_index: new ort.Tensor("int64", pixelUnshuffleIndex([{ gridH: 4, gridW: 4 }], N, 2), [N]),
      });
      await session.release();
      return { nodes: b.nodeCount, out: out.image_features.data as Float32Array };
    } finally {
      ck.close();
    }
  }

  it("is applied when the checkpoint has its weights and skipped when it does not", async () => {
    const withNorm = await features(false);
    const without = await features(true);
    expect(withNorm.nodes - without.nodes).toBe(1);
    expect(without.out.length).toBe(4 * config.text.hiddenSize);
    expect(without.out.some((v, i) => Math.abs(v - withNorm.out[i]) > 1e-3)).toBe(true);
  });

  it("a projector whose width does not fit the tower is TENSOR_SHAPE_MISMATCH", () => {
    const ck = Checkpoint.open(dir);
    try {
      const weights = checkpointWeights(ck);
      const wrong = { ...config, projectorHiddenSize: 50 };
      expectCode(() => buildImageEncoderGraph(wrong, weights, findVisionPrefixes(weights), "fp32"), "TENSOR_SHAPE_MISMATCH");
    } finally {
      ck.close();
    }
  });
});
