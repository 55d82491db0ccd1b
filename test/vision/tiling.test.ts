import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { encodeVisionText, imagePlaceholder } from "../../vision/processor.ts";
import { type ImageProcessorConfig, parseImageProcessorConfig } from "../../vision/processor-config.ts";
import { imageGeometry, isTooLarge, roundHalfEven, smartResize, tileGrid } from "../../vision/tiling.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

interface GeometryCase {
  variant: string;
  width: number;
  height: number;
  input_ids: number[];
  spatial_shapes: [number, number][];
}
interface GeometryFixture {
  variants: Record<string, Record<string, unknown>>;
  prompt: string;
  cases: GeometryCase[];
}

const geometry = readJson<GeometryFixture>("vision/geometry.json");
const tinyImageProcessor = readJson<{ image_processor: Record<string, unknown> }>("vision/tiny-lfm2-vl/processor_config.json").image_processor;

/** The fixture folder's settings with a variant's overrides (as geometry.json was generated). */
function config(overrides: Record<string, unknown> = {}): ImageProcessorConfig {
  return parseImageProcessorConfig({ ...tinyImageProcessor, ...overrides }, "test");
}

const variants = Object.entries(geometry.variants).map(([name, overrides]) => ({ name, overrides }));
const DEFAULT = config();
const LFM2_VL_450M = config(geometry.variants["lfm2-vl-450m"]);
const LFM2_VL_1_6B = config(geometry.variants["lfm2-vl-1.6b"]);

describe("geometry.json: HF Lfm2VlProcessor on 70 sizes × 4 settings", () => {
  let tokenizer: Lfm2Tokenizer;
  beforeAll(async () => {
    tokenizer = await Lfm2Tokenizer.fromDir(join(FIXTURES, "vision/tiny-lfm2-vl"));
  });

  describe.each(variants)("$name", ({ name, overrides }) => {
    const cfg = config(overrides);
    const cases = geometry.cases.filter((c) => c.variant === name);
    it("covers all 70 sizes", () => expect(cases.length).toBe(70));
    it.each(cases)("$width×$height: spatial shapes and expanded prompt ids exact", (c) => {
      const geo = imageGeometry(c.width, c.height, cfg);
      expect(geo.spatialShapes).toEqual(c.spatial_shapes);
      const { ids } = encodeVisionText(tokenizer, geometry.prompt, [{ placeholder: imagePlaceholder(geo, cfg) }]);
      expect(ids).toEqual(c.input_ids);
    });
  });
});

describe("rules, including sizes the fixtures do not have", () => {
  it("rounds halves to even like Python's round", () => {
    expect([0.5, 1.5, 2.5, 22.5, 23.5, -0.5, 22.4999, 22.5001].map(roundHalfEven)).toEqual([0, 2, 2, 22, 24, 0, 22, 23]);
  });

  it("does not tile 720×720: 22.5 rounds to 22, 704² is under the 524 288 px budget", () => {
    expect(isTooLarge(720, 720, DEFAULT)).toBe(false);
    const geo = imageGeometry(720, 720, DEFAULT);
    expect(geo.tiled).toBe(false);
    expect([geo.resizedWidth, geo.resizedHeight]).toEqual([512, 512]);
    expect(geo.imageTokens).toBe(256);
  });

  it("tiles 736×736 into 2×2 plus a thumbnail", () => {
    const geo = imageGeometry(736, 736, DEFAULT);
    expect([geo.rows, geo.cols, geo.thumbnail]).toEqual([2, 2, true]);
    expect(geo.crops.map((c) => c.kind)).toEqual(["tile", "tile", "tile", "tile", "thumbnail"]);
    expect(geo.crops.slice(0, 4).map((c) => [c.row, c.col, c.left, c.top])).toEqual([
      [1, 1, 0, 0],
      [1, 2, 512, 0],
      [2, 1, 0, 512],
      [2, 2, 512, 512],
    ]);
  });

  it("upscales 1×1 to a 256×256 single view (64 tokens)", () => {
    const geo = imageGeometry(1, 1, DEFAULT);
    expect(geo.spatialShapes).toEqual([[16, 16]]);
    expect(geo.imageTokens).toBe(64);
  });

  it("keeps 10×4000 and 4000×10 strips as one 32-px-wide view (area test, not per side)", () => {
    expect(imageGeometry(10, 4000, DEFAULT).spatialShapes).toEqual([[250, 2]]);
    expect(imageGeometry(4000, 10, DEFAULT).spatialShapes).toEqual([[2, 250]]);
    expect(imageGeometry(10, 4000, DEFAULT).imageTokens).toBe(125);
  });

  it("splits 8000×6000 into 3 columns × 2 rows, with a 576×416 thumbnail only where the checkpoint uses one", () => {
    expect(tileGrid(8000, 6000, DEFAULT)).toEqual({ cols: 3, rows: 2 });
    expect(smartResize(8000, 6000, DEFAULT)).toEqual({ width: 576, height: 416 });
    const with16b = imageGeometry(8000, 6000, LFM2_VL_1_6B);
    expect(with16b.spatialShapes).toEqual([...Array(6).fill([32, 32]), [26, 36]]);
    expect(with16b.imageTokens).toBe(6 * 256 + 234);
    const with450m = imageGeometry(8000, 6000, LFM2_VL_450M);
    expect(with450m.spatialShapes).toEqual(Array(6).fill([32, 32]));
    expect(with450m.imageTokens).toBe(6 * 256);
    expect(imagePlaceholder(with450m, LFM2_VL_450M)).not.toContain("<|img_thumbnail|>");
  });

  it("uses the checkpoint's tolerance: 700×700 is tiled at 1.5 (1.6B) but not at 2.0 (450M)", () => {
    expect(imageGeometry(700, 700, LFM2_VL_1_6B).tiled).toBe(true);
    expect(imageGeometry(700, 700, LFM2_VL_450M).tiled).toBe(false);
  });

  it("picks the grid by closest aspect ratio; a larger equal-ratio grid wins only for big images", () => {
    expect(tileGrid(1000, 1000, DEFAULT)).toEqual({ cols: 2, rows: 2 });
    expect(tileGrid(1600, 1600, DEFAULT)).toEqual({ cols: 3, rows: 3 });
    expect(tileGrid(1280, 640, DEFAULT)).toEqual({ cols: 2, rows: 1 });
    expect(tileGrid(1600, 1000, DEFAULT)).toEqual({ cols: 3, rows: 2 });
    expect(tileGrid(640, 1280, DEFAULT)).toEqual({ cols: 1, rows: 2 });
  });

  it("labels 1280×640 (1.6B) geometrically: row 1 col 1, row 1 col 2, then a 352×704 thumbnail", () => {
    const geo = imageGeometry(1280, 640, LFM2_VL_1_6B);
    expect(geo.spatialShapes).toEqual([[32, 32], [32, 32], [22, 44]]);
    const img = (n: number) => "<image>".repeat(n);
    expect(imagePlaceholder(geo, LFM2_VL_1_6B)).toBe(
      `<|image_start|><|img_row_1_col_1|>${img(256)}<|img_row_1_col_2|>${img(256)}<|img_thumbnail|>${img(242)}<|image_end|>`,
    );
  });

  it("never tiles with do_image_splitting off", () => {
    const cfg = config({ do_image_splitting: false });
    expect([cfg.minTiles, cfg.maxTiles, cfg.maxNumPatches]).toEqual([1, 1, 1024]);
    const geo = imageGeometry(8000, 6000, cfg);
    expect(geo.spatialShapes).toEqual([[26, 36]]);
  });

  it("drops every marker but <image> with use_image_special_tokens off", () => {
    const cfg = { ...DEFAULT, useImageSpecialTokens: false };
    expect(imagePlaceholder(imageGeometry(1280, 640, cfg), cfg)).toBe("<image>".repeat(256 + 256 + 242));
  });

  it("makes a 1×1 grid (min_tiles 1) one unlabelled tile-sized view whose tokens match its features", () => {
    const cfg = config({ min_tiles: 1, max_pixels_tolerance: 1.5 });
    const geo = imageGeometry(700, 600, cfg);
    expect(tileGrid(700, 600, cfg)).toEqual({ cols: 1, rows: 1 });
    expect(geo.crops).toHaveLength(1);
    expect(geo.crops[0]).toMatchObject({ kind: "single", widthPx: 512, heightPx: 512, tokens: 256 });
    expect(imagePlaceholder(geo, cfg)).toBe(`<|image_start|>${"<image>".repeat(256)}<|image_end|>`);
  });

  it("refuses views beyond the encoder's 1024 patches (extreme strips) with IMAGE_ASPECT_RATIO_UNSUPPORTED", () => {
    for (const [w, h] of [
      [1, 1100],
      [10, 10000],
      [10000, 10],
    ]) {
      expect(() => imageGeometry(w, h, DEFAULT), `${w}×${h}`).toThrow(
        expect.objectContaining({ code: "IMAGE_ASPECT_RATIO_UNSUPPORTED" }),
      );
    }
    expect(imageGeometry(1, 1000, DEFAULT).spatialShapes).toEqual([[506, 2]]);
  });

  it("rejects a size that is not positive whole pixels", () => {
    for (const [w, h] of [
      [0, 10],
      [10, -1],
      [1.5, 10],
      [NaN, 10],
    ]) {
      expectCode(() => imageGeometry(w, h, DEFAULT), "INVALID_ARGUMENT");
    }
  });
});
