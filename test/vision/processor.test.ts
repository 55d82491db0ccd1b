import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ChatTemplate, type ChatMessage } from "../../text-core/chat.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { type ProcessedImage, preprocessImage } from "../../vision/preprocess.ts";
import { expandImagePlaceholders, renderVisionChat } from "../../vision/processor.ts";
import { parseImageProcessorConfig, readImageProcessorConfig } from "../../vision/processor-config.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

interface Reference {
  images: { file: string; input_ids: number[] }[];
  two_images: { files: string[]; input_ids: number[] };
}

const MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");
const reference = readJson<Reference>("vision/reference.json");
const PROMPT = "Describe the document.";

describe("prompt ids with images expanded (chat template + tokenizer)", () => {
  let tokenizer: Lfm2Tokenizer;
  let template: ChatTemplate;
  const cfg = readImageProcessorConfig(MODEL);
  const processed = new Map<string, ProcessedImage>();
  const image = async (file: string) => {
    if (!processed.has(file)) processed.set(file, await preprocessImage(join(FIXTURES, "vision/images", file), cfg));
    return processed.get(file)!;
  };

  beforeAll(async () => {
    tokenizer = await Lfm2Tokenizer.fromDir(MODEL);
    template = ChatTemplate.fromTokenizer(tokenizer);
  });

  it.each(reference.images)("$file: input_ids exact", async ({ file, input_ids }) => {
    const messages: ChatMessage[] = [{ role: "user", content: [{ type: "image", image: file }, { type: "text", text: PROMPT }] }];
    const prompt = renderVisionChat(tokenizer, messages, [await image(file)], { addGenerationPrompt: true, template });
    expect(prompt.ids).toEqual(input_ids);
  });

  it("two images in one message: input_ids exact", async () => {
    const [first, second] = reference.two_images.files;
    const messages: ChatMessage[] = [
      {
        role: "user",
        content: [
          { type: "image", image: first },
          { type: "text", text: "and" },
          { type: "image", image: second },
          { type: "text", text: "Compare." },
        ],
      },
    ];
    const prompt = renderVisionChat(tokenizer, messages, [await image(first), await image(second)], { addGenerationPrompt: true, template });
    expect(prompt.ids).toEqual(reference.two_images.input_ids);
  });

  it("images across a multi-turn chat expand in message order", async () => {
    const [a, b] = ["tiny_64x48.png", "photo_320x240.jpg"];
    const messages: ChatMessage[] = [
      { role: "user", content: [{ type: "image" }, { type: "text", text: "What is this?" }] },
      { role: "assistant", content: "A chart." },
      { role: "user", content: [{ type: "text", text: "And this?" }, { type: "image" }] },
    ];
    const prompt = renderVisionChat(tokenizer, messages, [await image(a), await image(b)], { addGenerationPrompt: true });
    const imageId = tokenizer.tokenToId("<image>")!;
    expect(prompt.ids.filter((id) => id === imageId)).toHaveLength(70 + 80);
    expect(prompt.text.indexOf((await image(a)).placeholder)).toBeLessThan(prompt.text.indexOf("A chart."));
    expect(prompt.text.indexOf((await image(b)).placeholder)).toBeGreaterThan(prompt.text.indexOf("And this?"));
  });

  it("a placeholder count that does not match the images → IMAGE_COUNT_MISMATCH", async () => {
    const one: ChatMessage[] = [{ role: "user", content: [{ type: "image" }, { type: "text", text: PROMPT }] }];
    const tiny = await image("tiny_64x48.png");
    expectCode(() => renderVisionChat(tokenizer, one, []), "IMAGE_COUNT_MISMATCH");
    expectCode(() => renderVisionChat(tokenizer, one, [tiny, tiny]), "IMAGE_COUNT_MISMATCH");
    // "<image>" typed into the text is a placeholder too, as in HF's processor.
    const typed: ChatMessage[] = [{ role: "user", content: [{ type: "image" }, { type: "text", text: "what is <image>?" }] }];
    expectCode(() => renderVisionChat(tokenizer, typed, [tiny]), "IMAGE_COUNT_MISMATCH");
    expectCode(() => expandImagePlaceholders("<image><image>", ["x"]), "IMAGE_COUNT_MISMATCH");
    expect(expandImagePlaceholders("a<image>b<image>c", ["1", "2"])).toBe("a1b2c");
  });
});

describe("processor config", () => {
  it("reads the fixture's processor_config.json with HF names and derived values", () => {
    const cfg = readImageProcessorConfig(MODEL);
    expect(cfg).toMatchObject({
      doImageSplitting: true,
      minTiles: 2,
      maxTiles: 10,
      useThumbnail: true,
      minImageTokens: 64,
      maxImageTokens: 256,
      encoderPatchSize: 16,
      downsampleFactor: 2,
      tileSize: 512,
      maxPixelsTolerance: 2.0,
      resample: "bilinear",
      imageMean: [0.5, 0.5, 0.5],
      imageStd: [0.5, 0.5, 0.5],
      maxNumPatches: 1024,
      sizeFactor: 32,
      useImageSpecialTokens: true,
    });
  });

  it("reads the published LFM2-VL-450M settings (no thumbnail)", () => {
    const configs = readJson<Record<string, Record<string, { image_processor: unknown }>>>("realshape/configs.json");
    const cfg = parseImageProcessorConfig(configs["lfm2-vl-450m"]["processor_config.json"].image_processor);
    expect([cfg.useThumbnail, cfg.maxPixelsTolerance, cfg.resample]).toEqual([false, 2.0, "bilinear"]);
  });

  it("falls back to a flat preprocessor_config.json with class defaults, and reads bicubic", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm2-vl-config-"));
    writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({ image_processor_type: "Lfm2VlImageProcessorFast", resample: 3 }));
    writeFileSync(join(dir, "processor_config.json"), JSON.stringify({ processor_class: "Lfm2VlProcessor", use_image_special_tokens: false }));
    const cfg = readImageProcessorConfig(dir);
    expect([cfg.resample, cfg.useThumbnail, cfg.maxPixelsTolerance, cfg.minTiles, cfg.useImageSpecialTokens]).toEqual(["bicubic", true, 2.0, 2, false]);
  });

  it("a folder without processor settings → FILE_NOT_FOUND", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm2-vl-empty-"));
    expectCode(() => readImageProcessorConfig(dir), "FILE_NOT_FOUND");
  });

  it.each([
    [{ resample: 1 }, "resample"],
    [{ min_tiles: 4, max_tiles: 2 }, "min_tiles"],
    [{ tile_size: 500 }, "tile_size"],
    [{ image_std: [0.5, 0, 0.5] }, "image_std"],
    [{ use_thumbnail: "yes" }, "use_thumbnail"],
    [{ image_processor_type: "Qwen2VLImageProcessor" }, "image_processor_type"],
  ])("invalid %j → CONFIG_INVALID naming %s", (overrides, key) => {
    expectCode(() => parseImageProcessorConfig({ image_processor_type: "Lfm2VlImageProcessor", ...overrides }), "CONFIG_INVALID", `"${key}"`);
  });
});
