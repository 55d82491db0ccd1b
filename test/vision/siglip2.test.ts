import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { readConfigJson } from "../../text-core/config.ts";
import { antialiasedLinearWeights, positionResizeMatrix } from "../../vision/siglip2.ts";
import { isLfm2VlConfig, parseLfm2VlConfig } from "../../vision/vl-config.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";

const row = (w: Float64Array, i: number, n: number) => Array.from(w.subarray(i * n, (i + 1) * n));

describe("position-grid resize weights (F.interpolate bilinear, align_corners=False, antialias=True)", () => {
  it("growing: half-pixel bilinear with the edges clamped", () => {
    const w = antialiasedLinearWeights(4, 8); // scale 0.5: output i samples input (i + 0.5)/2 − 0.5
    expect(row(w, 0, 4)).toEqual([1, 0, 0, 0]); // −0.25 clamps to 0
    expect(row(w, 1, 4)).toEqual([0.75, 0.25, 0, 0]); // 0.25
    expect(row(w, 2, 4)).toEqual([0.25, 0.75, 0, 0]); // 0.75
    expect(row(w, 7, 4)).toEqual([0, 0, 0, 1]);
  });

  it("shrinking by 2: the widened triangle gives (1, 3, 3, 1)/8, renormalised at the edges", () => {
    const w = antialiasedLinearWeights(16, 8);
    expect(row(w, 3, 16).slice(5, 9)).toEqual([0.125, 0.375, 0.375, 0.125]);
    expect(row(w, 0, 16).slice(0, 3)).toEqual([3 / 7, 3 / 7, 1 / 7]); // tap −1 is outside: 3/8, 3/8, 1/8 renormalised
  });

  it("same size is the identity; every output row sums to 1", () => {
    const same = antialiasedLinearWeights(16, 16);
    for (let i = 0; i < 16; i++) expect(row(same, i, 16)).toEqual(Array.from({ length: 16 }, (_, j) => (i === j ? 1 : 0)));
    for (const out of [1, 5, 10, 13, 16, 26, 82]) {
      const w = antialiasedLinearWeights(16, out);
      for (let i = 0; i < out; i++) expect(row(w, i, 16).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    }
  });

  it("the 2-D matrix is the outer product of the per-axis weights (rows y·wp + x, columns gy·16 + gx)", () => {
    const m = positionResizeMatrix(10, 88, 16);
    const rh = antialiasedLinearWeights(16, 10);
    const rw = antialiasedLinearWeights(16, 88);
    const y = 3, x = 41, gy = 5, gx = 7;
    expect(m[(y * 88 + x) * 256 + gy * 16 + gx]).toBeCloseTo(rh[y * 16 + gy] * rw[x * 16 + gx], 7);
    expect(m.length).toBe(10 * 88 * 256);
  });
});

describe("LFM2-VL config", () => {
  const tiny = readConfigJson(join(FIXTURES, "vision/tiny-lfm2-vl"));
  const legacy = readJson<Record<string, Record<string, Record<string, unknown>>>>("realshape/configs.json")["lfm2-vl-450m"]["config.json"];

  it("reads the 5.x and the legacy 4.5x layouts", () => {
    expect(isLfm2VlConfig(tiny) && isLfm2VlConfig(legacy) && isLfm2VlConfig({ ...legacy, model_type: "lfm2-vl" })).toBe(true);
    const a = parseLfm2VlConfig(tiny, "tiny");
    expect([a.vision.numLayers, a.vision.headDim, a.imageTokenId, a.projectorLayerNorm]).toEqual([2, 16, 396, true]);
    const b = parseLfm2VlConfig(legacy, "legacy");
    expect([b.vision.numLayers, b.vision.headDim, b.imageTokenId, b.text.hiddenSize]).toEqual([12, 64, 396, 1024]);
  });

  it("vision_feature_layer −2 runs all but the last encoder layer (LFM2-VL-1.6B: 26 of 27)", () => {
    const vision = { ...(legacy.vision_config as Record<string, unknown>), hidden_size: 1152, num_attention_heads: 16, num_hidden_layers: 27 };
    const c = parseLfm2VlConfig({ ...legacy, vision_feature_layer: -2, vision_config: vision }, "1.6b");
    expect([c.vision.numLayers, c.vision.checkpointLayers, c.vision.headDim]).toEqual([26, 27, 72]);
    const without = { ...legacy, vision_config: vision } as Record<string, unknown>;
    delete without.vision_feature_layer;
    expect(parseLfm2VlConfig(without, "5.x").vision.numLayers).toBe(27);
  });

  it("the text core gets the top-level dtype when its own block has none (RoPE's bf16 buffer)", () => {
    expect(parseLfm2VlConfig(tiny, "tiny").text.storageDtype).toBe("bfloat16");
  });

  it("unsupported or inconsistent values are CONFIG_INVALID naming the key", () => {
    const bad = (patch: Record<string, unknown>, key: string) =>
      expect(() => parseLfm2VlConfig({ ...legacy, ...patch }, "cfg")).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining(key) }));
    bad({ projector_hidden_act: "relu" }, "projector_hidden_act");
    bad({ vision_feature_layer: -13 }, "vision_feature_layer");
    bad({ vision_config: { ...(legacy.vision_config as object), hidden_act: "relu" } }, "hidden_act");
    bad({ vision_config: { ...(legacy.vision_config as object), num_patches: 250 } }, "num_patches");
    bad({ vision_config: { ...(legacy.vision_config as object), num_attention_heads: 7 } }, "num_attention_heads");
    bad({ downsample_factor: 0 }, "downsample_factor");
    bad({ vision_config: "siglip" }, "vision_config");
  });

  it("a text-only config is UNKNOWN_ARCHITECTURE", () => {
    const text = readConfigJson(join(FIXTURES, "text/tiny-lfm2"));
    expect(isLfm2VlConfig(text)).toBe(false);
    expect(() => parseLfm2VlConfig(text, "text")).toThrow(expect.objectContaining({ code: "UNKNOWN_ARCHITECTURE" }));
  });
});
