import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { loadModel, TextModel, VlModel } from "../../index.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

describe("loadModel dispatches on the config's model_type", () => {
  it("an lfm2_vl checkpoint is a VlModel whose chat takes image parts (the DESIGN.md call)", async () => {
    const vl = await loadModel(join(FIXTURES, "vision/tiny-lfm2-vl"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
    try {
      expect(vl).toBeInstanceOf(VlModel);
      let text = "";
      const messages = [{ role: "user", content: [{ type: "image" as const, image: join(FIXTURES, "vision/images/tiny_64x48.png") }, { type: "text" as const, text: "Total?" }] }];
      for await (const t of vl.chat(messages, { maxTokens: 4, temperature: 0 })) text += t.text;
      expect(typeof text).toBe("string");
    } finally {
      await vl.release();
    }
  });

  it("an lfm2 checkpoint is still a TextModel", async () => {
    const lm = await loadModel(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
    try {
      expect(lm).toBeInstanceOf(TextModel);
    } finally {
      await lm.release();
    }
  });
});
