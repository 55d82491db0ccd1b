import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { loadModel, TextModel, VlModel } from "../../index.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

describe("loadModel dispatches on the config's model_type", () => {
  it("an lfm2_vl checkpoint is a VlModel whose chat takes image parts (the DESIGN.md call)", async () => {
    const loaded = await loadModel(join(FIXTURES, "vision/tiny-lfm2-vl"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
    try {
      expect(loaded).toBeInstanceOf(VlModel);
      const vl = loaded as VlModel;
      let text = "";
      const ids: number[] = [];
      const messages = [{ role: "user", content: [{ type: "image" as const, image: join(FIXTURES, "vision/images/tiny_64x48.png") }, { type: "text" as const, text: "Total?" }] }];
      const options = { maxTokens: 4, temperature: 0 };
      for await (const t of vl.chat(messages, options)) {
        text += t.text;
        if (t.id >= 0) ids.push(t.id); // id -1: characters held back until the end
      }
      // The stream is the image prompt's completion: same ids, all 4 unless a stop token ended it first.
      const prompt = await vl.prepareChat(messages);
      expect(prompt.promptIds).toContain(vl.config.imageTokenId);
      const completion = await vl.complete(prompt, options);
      expect(ids).toEqual(completion.ids);
      if (completion.finishReason === "length") expect(ids).toHaveLength(4);
      else expect(ids.length).toBeLessThan(4);
      expect(ids.filter((id) => vl.stopTokenIds.includes(id))).toEqual([]);
      // Its text is those ids decoded as the library decodes (special tokens skipped), and not empty.
      const decoded = vl.tokenizer.decode(ids, { skipSpecialTokens: true });
      expect(decoded.length).toBeGreaterThan(0);
      expect(text).toBe(decoded);
    } finally {
      await loaded.release();
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
