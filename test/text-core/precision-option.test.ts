/** A precision from JavaScript callers is checked: an unknown one is INVALID_ARGUMENT, never a float32 graph. */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isLfmError } from "../../text-core/errors.ts";
import { precisionOption } from "../../text-core/graph/precision.ts";
import { TextModel } from "../../text-core/model.ts";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { VlModel } from "../../vision/vl-model.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

describe("precision options", () => {
  it("precisionOption takes the three names, falls back when absent, and refuses anything else", () => {
    expect(precisionOption(undefined, "q8")).toBe("q8");
    for (const p of ["fp32", "q8", "q4"]) expect(precisionOption(p, "q4")).toBe(p);
    for (const bad of ["int4", "Q4", "", null, 4]) {
      expect(() => precisionOption(bad, "q4", "visionPrecision")).toThrow(/visionPrecision must be "fp32", "q8" or "q4"/);
    }
  });

  it("every loader refuses an unknown precision with INVALID_ARGUMENT", async () => {
    const opts = { cacheDir: TEST_CACHE, threads: 2 };
    const loads: Array<[string, () => Promise<unknown>]> = [
      ["TextModel precision", () => TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { ...opts, precision: "int4" as never })],
      ["VlModel visionPrecision", () => VlModel.load(join(FIXTURES, "vision/tiny-lfm2-vl"), { ...opts, visionPrecision: "q2" as never })],
      ["ColbertEncoder precision", () => ColbertEncoder.load(join(FIXTURES, "retrieval/tiny-lfm2-colbert"), { ...opts, precision: "fp16" as never })],
    ];
    for (const [what, load] of loads) {
      await expect(load(), what).rejects.toSatisfy((e: unknown) => isLfmError(e, "INVALID_ARGUMENT"));
    }
  });
});
