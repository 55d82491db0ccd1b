import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { Precision } from "../../text-core/graph/precision.ts";
import { ImageEncoder, type PatchCrop } from "../../vision/image-encoder.ts";
import { preprocessImage } from "../../vision/preprocess.ts";
import { readImageProcessorConfig } from "../../vision/processor-config.ts";
import { loadLfm2VlConfig } from "../../vision/vl-config.ts";
import { VlModel } from "../../vision/vl-model.ts";
import { FIXTURES, TEST_CACHE, errorStats } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");

describe("quantised vision tower vs float32 (fixtures/vision/tiny-lfm2-vl)", () => {
  const config = loadLfm2VlConfig(MODEL);
  const encoders = new Map<Precision, ImageEncoder>();
  let crops: PatchCrop[];

  beforeAll(async () => {
    for (const precision of ["fp32", "q8", "q4"] as const) encoders.set(precision, await ImageEncoder.load(MODEL, config, { precision, threads: 2, cacheDir: TEST_CACHE }));
    const processor = readImageProcessorConfig(MODEL);
    crops = [];
    for (const file of ["doc_1024x768.png", "photo_320x240.jpg", "tall_180x1400.png"]) crops.push(...(await preprocessImage(join(FIXTURES, "vision/images", file), processor)).crops);
  }, 300_000);
  afterAll(async () => {
    for (const e of encoders.values()) await e.release();
  });

  // Measured on this 32-wide random tower: q8 relL2 1.54e-2, q4 1.45e-1 over 9 crops (every Linear
  // quantised: patch embedding, attention, MLP, projector; norms and position table exact).
  // q4's 10× larger error is the other reason, besides speed, the tower defaults to q8.
  it.each([
    ["q8", 2e-2],
    ["q4", 2e-1],
  ] as const)("%s image features stay within the measured relative L2 of float32", async (precision, bound) => {
    const exact = await encoders.get("fp32")!.encode(crops);
    const quantised = await encoders.get(precision)!.encode(crops);
    const stats = errorStats(quantised, exact);
    console.log(`vision tower ${precision} vs fp32: relL2 ${stats.relL2.toExponential(2)} over ${crops.length} crops`);
    expect(stats.relL2).toBeLessThan(bound);
    expect(stats.relL2).toBeGreaterThan(0); // the quantised graph really is another graph
  });

  it("VlModel's tower is q8 unless the model runs at fp32 or visionPrecision says otherwise", async () => {
    for (const [opts, expected] of [
      [{}, "q8"],
      [{ precision: "q8" }, "q8"],
      [{ precision: "fp32" }, "fp32"],
      [{ precision: "q4", visionPrecision: "q4" }, "q4"],
      [{ precision: "fp32", visionPrecision: "q8" }, "q8"],
    ] as const) {
      const model = await VlModel.load(MODEL, { ...opts, threads: 2, cacheDir: TEST_CACHE });
      expect(model.encoder.precision, JSON.stringify(opts)).toBe(expected);
      await model.release();
    }
  }, 300_000);
});
