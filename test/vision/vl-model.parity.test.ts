import { beforeAll, afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { generate } from "../../text-core/generate.ts";
import { isLfmError } from "../../text-core/errors.ts";
import { VlModel, type ImagePrompt } from "../../vision/vl-model.ts";
import type { PatchCrop } from "../../vision/image-encoder.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, errorStats, expectClose, readJson } from "../helpers/reference.ts";

interface VisionImageReference {
  file: string;
  input_ids: number[];
  spatial_shapes: Array<[number, number]>;
  greedy_new_ids?: number[];
}

interface VisionReference {
  images: VisionImageReference[];
  two_images: { files: string[]; input_ids: number[] };
}

const IMAGES = join(FIXTURES, "vision/images");
const PROMPT = "Describe the document.";

/**
 * The fixture stores pixel values as float16, which is off by up to 5e-4 from the normalised
 * 8-bit value HF computed (enough to move the features by 2e-4 relative). Every value is
 * (u8 − 127.5) / 127.5, so snapping back to that grid recovers HF's input exactly.
 */
function exactPixels(stored: Float32Array): Float32Array {
  return stored.map((x) => (Math.round((x + 1) * 127.5) - 127.5) / 127.5);
}

function hasTensor(ref: ReferenceTensors, name: string): boolean {
  try {
    ref.shape(name);
    return true;
  } catch {
    return false;
  }
}

describe("LFM2-VL matches HF Lfm2VlForConditionalGeneration on fixtures/vision/tiny-lfm2-vl", () => {
  const ref = new ReferenceTensors("vision/reference.safetensors");
  const json = readJson<VisionReference>("vision/reference.json");
  const singleCrop = json.images.filter((im) => im.spatial_shapes.length === 1);
  const tiled = json.images.filter((im) => im.spatial_shapes.length > 1);
  let model: VlModel;

  /** A single-crop image's crop from the reference pixel values. */
  const referenceCrop = (im: VisionImageReference): PatchCrop => {
    const [gridH, gridW] = im.spatial_shapes[0];
    return { patches: exactPixels(ref.float(`${im.file}.pixel_values`)), gridH, gridW };
  };
  /** Our own preprocessing (alpha dropped as PIL's `convert("RGB")` does, which the references used). */
  const ownCrops = async (file: string) => (await model.preprocess(join(IMAGES, file))).crops;
  const V = () => model.config.text.vocabSize;

  beforeAll(async () => {
    model = await VlModel.load(join(FIXTURES, "vision/tiny-lfm2-vl"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2, image: { alpha: "ignore" } });
  });
  afterAll(async () => {
    await model?.release();
  });

  it("reads the config: tower, projector, image token", () => {
    const { vision, text } = model.config;
    expect([vision.hiddenSize, vision.numLayers, vision.numHeads, vision.positionGridSize]).toEqual([32, 2, 2, 16]);
    expect([model.config.projectorHiddenSize, text.hiddenSize, model.config.imageTokenId]).toEqual([48, 64, 396]);
  });

  for (const im of singleCrop) {
    it(`${im.file}: image features from the reference pixels are within tolerance`, async () => {
      const features = await model.encodeImages([referenceCrop(im)]);
      expectClose(features, ref.float(`${im.file}.image_features`), `${im.file}.image_features`);
    });
  }

  for (const im of tiled) {
    it(`${im.file}: ${im.spatial_shapes.length} crops from preprocessing give the image features (all crops, in order) within tolerance`, async () => {
      const crops = await ownCrops(im.file);
      expect(crops.map((c) => [c.gridH, c.gridW])).toEqual(im.spatial_shapes);
      expectClose(await model.encodeImages(crops), ref.float(`${im.file}.image_features`), `${im.file}.image_features`);
    });
  }

  it("our own preprocessing gives every image's features within the same tolerance (measured: relL2 ≈ 5e-7)", async () => {
    for (const im of json.images) {
      const stats = errorStats(await model.encodeImages(await ownCrops(im.file)), ref.float(`${im.file}.image_features`));
      expect(stats.relL2, `${im.file} relative L2`).toBeLessThanOrEqual(1e-4);
      expect(stats.maxAbs, `${im.file} max abs`).toBeLessThanOrEqual(1e-3);
    }
  });

  it("the chat template plus the image processor give every image's prompt ids exactly", async () => {
    for (const im of json.images) {
      const prompt = await model.prepareChat([{ role: "user", content: [{ type: "image", image: join(IMAGES, im.file) }, { type: "text", text: PROMPT }] }]);
      expect(prompt.promptIds, im.file).toEqual(im.input_ids);
    }
  });

  /** Single-crop images from the reference pixels; tiled ones from preprocessing. */
  const promptOf = async (im: VisionImageReference): Promise<ImagePrompt> => ({
    promptIds: im.input_ids,
    crops: im.spatial_shapes.length === 1 ? [referenceCrop(im)] : await ownCrops(im.file),
  });

  for (const im of json.images) {
    const hasTail = hasTensor(ref, `${im.file}.logits_tail`);
    it(`${im.file}: last-position logits${hasTail ? " and the last 48 positions" : ""} within tolerance`, async () => {
      const prompt = await promptOf(im);
      const keep = hasTail ? 48 : 1;
      const out = await model.runtime.forward(model.runtime.newState(1), { ids: [prompt.promptIds], keep, overrides: await model.prefillOverrides(prompt) });
      expectClose(out.output.subarray((keep - 1) * V()), ref.float(`${im.file}.logits_last`), `${im.file}.logits_last`);
      if (hasTail) expectClose(out.output, ref.float(`${im.file}.logits_tail`), `${im.file}.logits_tail`);
    });
  }

  for (const im of json.images.filter((i) => i.greedy_new_ids)) {
    it(`${im.file}: greedy continuation is exact`, async () => {
      const expected = im.greedy_new_ids as number[];
      const out = await model.complete(await promptOf(im), { maxTokens: expected.length, stopTokenIds: [], temperature: 0 });
      expect(out.ids).toEqual(expected);
    });
  }

  it("two images in one prompt: features in prompt order, last logits within tolerance", async () => {
    const { files, input_ids } = json.two_images;
    const byFile = new Map(json.images.map((im) => [im.file, im]));
    const crops = files.flatMap((f) => [referenceCrop(byFile.get(f) as VisionImageReference)]);
    const out = await model.runtime.forward(model.runtime.newState(1), { ids: [input_ids], overrides: await model.prefillOverrides({ promptIds: input_ids, crops }) });
    expectClose(out.output, ref.float("two_images.logits_last"), "two_images.logits_last");
  });

  it("two images through chat: the same prompt ids and logits from the image files", async () => {
    const { files, input_ids } = json.two_images;
    // The fixture's prompt: image, "and", image, "Compare."
    const messages = [
      {
        role: "user",
        content: [
          { type: "image" as const, image: join(IMAGES, files[0]) },
          { type: "text" as const, text: "and" },
          { type: "image" as const, image: join(IMAGES, files[1]) },
          { type: "text" as const, text: "Compare." },
        ],
      },
    ];
    const prompt = await model.prepareChat(messages);
    expect(prompt.promptIds).toEqual(input_ids);
    const out = await model.runtime.forward(model.runtime.newState(1), { ids: [prompt.promptIds], overrides: await model.prefillOverrides(prompt) });
    expectClose(out.output, ref.float("two_images.logits_last"), "two_images.logits_last (own preprocessing)");
  });

  it("an image given as bytes is the same as the file", async () => {
    const { readFileSync } = await import("node:fs");
    const im = json.images[1];
    const fromBytes = await model.prepareChat(VlModel.describeMessages([new Uint8Array(readFileSync(join(IMAGES, im.file)))], PROMPT));
    expect(fromBytes.promptIds).toEqual(im.input_ids);
    expectClose(await model.encodeImages(fromBytes.crops), ref.float(`${im.file}.image_features`), "features from bytes");
  });

  it("images in a multi-turn chat: every turn's images are placed, in order, and generation runs", async () => {
    const [a, b] = json.two_images.files;
    const messages = [
      { role: "user", content: [{ type: "image" as const, image: join(IMAGES, a) }, { type: "text" as const, text: "What is this?" }] },
      { role: "assistant", content: "A small picture." },
      { role: "user", content: [{ type: "text" as const, text: "And this one?" }, { type: "image" as const, image: join(IMAGES, b) }] },
    ];
    const prompt = await model.prepareChat(messages);
    const byFile = new Map(json.images.map((im) => [im.file, im]));
    const tokens = (f: string) => (byFile.get(f) as VisionImageReference).input_ids.filter((id) => id === 396).length;
    expect(prompt.promptIds.filter((id) => id === 396).length).toBe(tokens(a) + tokens(b));
    expect(prompt.crops.length).toBe(2);
    const text = model.tokenizer.decode(prompt.promptIds);
    expect(text.indexOf("What is this?")).toBeLessThan(text.indexOf("And this one?"));
    let n = 0;
    for await (const t of model.chat(messages, { maxTokens: 4, temperature: 0 })) if (t.id >= 0) n++;
    expect(n).toBeGreaterThan(0);
  });

  it("streams the same tokens that complete returns", async () => {
    const im = json.images[0];
    const prompt = await promptOf(im);
    const ids: number[] = [];
    for await (const t of model.stream(prompt, { maxTokens: 8, stopTokenIds: [], temperature: 0 })) if (t.id >= 0) ids.push(t.id);
    expect(ids).toEqual(im.greedy_new_ids);
  });

  it("a prompt whose image tokens do not match the images is IMAGE_COUNT_MISMATCH (before any encoding)", async () => {
    const im = json.images[0];
    const crop = referenceCrop(im);
    const short = im.input_ids.filter((id, i) => !(id === 396 && i === im.input_ids.indexOf(396)));
    await expect(model.complete({ promptIds: short, crops: [crop] }, { maxTokens: 1 })).rejects.toSatisfy((e) => isLfmError(e, "IMAGE_COUNT_MISMATCH"));
    await expect(model.complete({ promptIds: im.input_ids, crops: [crop, crop] }, { maxTokens: 1 })).rejects.toSatisfy((e) => isLfmError(e, "IMAGE_COUNT_MISMATCH"));
    expect(() => model.imageOverrides(im.input_ids, new Float32Array(64))).toThrow(/image tokens/);
    // generation through the text core directly, with the overrides it needs
    const ids: number[] = [];
    for await (const t of generate(model.runtime, im.input_ids, { maxTokens: 2, stopTokenIds: [], promptOverrides: await model.prefillOverrides({ promptIds: im.input_ids, crops: [crop] }) })) ids.push(t.id);
    expect(ids).toEqual((im.greedy_new_ids as number[]).slice(0, 2));
  });

  it("a literal <image> in the text or a missing image part is IMAGE_COUNT_MISMATCH", async () => {
    const file = join(IMAGES, json.images[0].file);
    await expect(model.prepareChat([{ role: "user", content: [{ type: "image", image: file }, { type: "text", text: "compare with <image>" }] }])).rejects.toSatisfy((e) =>
      isLfmError(e, "IMAGE_COUNT_MISMATCH"),
    );
    await expect(model.prepareChat([{ role: "user", content: "no image but <image>" }])).rejects.toSatisfy((e) => isLfmError(e, "IMAGE_COUNT_MISMATCH"));
  });

  it("bad image parts and bad crops are typed errors", async () => {
    await expect(model.prepareChat([{ role: "user", content: [{ type: "image", image: 42 as unknown as string }] }])).rejects.toSatisfy((e) => isLfmError(e, "INVALID_ARGUMENT"));
    await expect(model.prepareChat([{ role: "user", content: [{ type: "image", image: join(IMAGES, "missing.png") }] }])).rejects.toSatisfy((e) => isLfmError(e, "FILE_NOT_FOUND"));
    await expect(model.prepareChat([{ role: "user", content: [{ type: "image", image: new Uint8Array([1, 2, 3]) }] }])).rejects.toSatisfy((e) => isLfmError(e, "IMAGE_INVALID"));
    await expect(model.encodeImages([{ patches: new Float32Array(10), gridH: 2, gridW: 2 }])).rejects.toSatisfy((e) => isLfmError(e, "INVALID_ARGUMENT"));
    await expect(model.encodeImages([{ patches: new Float32Array(3 * 4 * 768), gridH: 3, gridW: 4 }])).rejects.toSatisfy((e) => isLfmError(e, "INVALID_ARGUMENT"));
    expect(() => VlModel.describeMessages([])).toThrow(/at least one image/);
  });

  it("describe answers about one or more images", async () => {
    const out = await model.describe(join(IMAGES, json.images[0].file), PROMPT, { maxTokens: 8, stopTokenIds: [], temperature: 0 });
    expect(out.promptIds).toEqual(json.images[0].input_ids);
    expect(out.ids).toEqual(json.images[0].greedy_new_ids);
  });
});

describe("crops batched into one encoder call (padding + attention mask) equal crops encoded one at a time", () => {
  it("gives the same features for a mix of crop sizes", async () => {
    const json = readJson<VisionReference>("vision/reference.json");
    const batched = await VlModel.load(join(FIXTURES, "vision/tiny-lfm2-vl"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2, cropsPerCall: 8, image: { alpha: "ignore" } });
    try {
      const crops = [...(await batched.preprocess(join(IMAGES, "doc_1024x768.png"))).crops, ...(await batched.preprocess(join(IMAGES, "tall_180x1400.png"))).crops];
      const ref = new ReferenceTensors("vision/reference.safetensors");
      const expected = [...ref.float("doc_1024x768.png.image_features"), ...ref.float("tall_180x1400.png.image_features")];
      expect(json.images.length).toBeGreaterThan(0);
      expectClose(await batched.encodeImages(crops), expected, "batched features");
    } finally {
      await batched.release();
    }
  });
});
