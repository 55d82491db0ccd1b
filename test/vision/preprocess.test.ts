import { readFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { decodeImage, preprocessImage, preprocessRgb } from "../../vision/preprocess.ts";
import { imagePlaceholder } from "../../vision/processor.ts";
import { readImageProcessorConfig } from "../../vision/processor-config.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES, ReferenceTensors, readJson } from "../helpers/reference.ts";

interface ReferenceImage {
  file: string;
  width: number;
  height: number;
  n_image_tokens: number;
  spatial_shapes: [number, number][];
  pixel_values_shape: [number, number, number];
  valid_patches: number[];
}

const IMAGES = join(FIXTURES, "vision/images");
const reference = readJson<{ images: ReferenceImage[] }>("vision/reference.json");
const tensors = new ReferenceTensors("vision/reference.safetensors");
const cfg = readImageProcessorConfig(join(FIXTURES, "vision/tiny-lfm2-vl"));

/** Mean and max absolute difference. */
function differences(actual: Float32Array, expected: Float32Array): { meanAbs: number; maxAbs: number } {
  expect(actual.length).toBe(expected.length);
  let sum = 0;
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    sum += d;
    maxAbs = Math.max(maxAbs, d);
  }
  return { meanAbs: sum / expected.length, maxAbs };
}

function meanAndStd(values: Float32Array): { mean: number; std: number } {
  let sum = 0;
  for (const v of values) sum += v;
  const mean = sum / values.length;
  let sq = 0;
  for (const v of values) sq += (v - mean) ** 2;
  return { mean, std: Math.sqrt(sq / (values.length - 1)) };
}

describe("fixture images against HF Lfm2VlImageProcessor", () => {
  it.each(reference.images)("$file: geometry exact, pixel values within tolerance", async (image) => {
    // The references decode with PIL's convert("RGB"), which drops alpha instead of compositing it.
    const processed = await preprocessImage(join(IMAGES, image.file), cfg, { alpha: "ignore" });
    const { geometry, crops } = processed;

    expect([geometry.width, geometry.height]).toEqual([image.width, image.height]);
    expect(geometry.spatialShapes).toEqual(image.spatial_shapes);
    expect(geometry.imageTokens).toBe(image.n_image_tokens);
    expect(crops.map((c) => [c.gridH, c.gridW])).toEqual(image.spatial_shapes);
    expect(crops.map((c) => c.patches.length / 768)).toEqual(image.valid_patches);
    expect([crops.length, cfg.maxNumPatches, 3 * cfg.encoderPatchSize ** 2]).toEqual(image.pixel_values_shape);
    expect(processed.placeholder).toBe(imagePlaceholder(geometry, cfg));

    // pixel_attention_mask: 1 for the valid rows of each crop, then 0 up to max_num_patches.
    const mask = tensors.ints(`${image.file}.pixel_attention_mask`);
    crops.forEach((crop, i) => {
      const row = mask.slice(i * cfg.maxNumPatches, (i + 1) * cfg.maxNumPatches);
      const valid = crop.gridH * crop.gridW;
      expect(row.slice(0, valid).every((m) => m === 1) && row.slice(valid).every((m) => m === 0)).toBe(true);
    });

    // DESIGN.md tolerance: mean abs ≤ 0.01. The resampler reproduces torchvision's integer kernel, so
    // the values agree up to the reference's float16 storage (≤ 4.9e-4 for |v| ≤ 1).
    const tiled = crops.length > 1;
    const expected = tensors.float(`${image.file}.pixel_values${tiled ? ".first" : ""}`);
    const { meanAbs, maxAbs } = differences(crops[0].patches, expected);
    expect(meanAbs).toBeLessThanOrEqual(0.01);
    expect(maxAbs).toBeLessThanOrEqual(5e-4);

    if (tiled) {
      const means = tensors.float(`${image.file}.pixel_values.crop_mean`);
      const stds = tensors.float(`${image.file}.pixel_values.crop_std`);
      crops.forEach((crop, i) => {
        const { mean, std } = meanAndStd(crop.patches);
        expect(Math.abs(mean - means[i]), `crop ${i} mean`).toBeLessThanOrEqual(1e-3);
        expect(Math.abs(std - stds[i]), `crop ${i} std`).toBeLessThanOrEqual(1e-3);
      });
    }
  });

  it("composites transparency onto white by default", async () => {
    const file = join(IMAGES, "alpha_200x150.png");
    const rgba = await sharp(file).ensureAlpha().raw().toBuffer();
    const { data, width, height } = await decodeImage(file);
    expect([width, height]).toEqual([200, 150]);
    let worst = 0;
    let translucent = 0;
    for (let i = 0; i < width * height; i++) {
      const alpha = rgba[i * 4 + 3] / 255;
      if (alpha < 1) translucent++;
      for (let c = 0; c < 3; c++) {
        const composite = rgba[i * 4 + c] * alpha + 255 * (1 - alpha);
        worst = Math.max(worst, Math.abs(data[i * 3 + c] - composite));
      }
    }
    expect(translucent).toBeGreaterThan(1000); // the fixture really has an alpha ramp
    expect(worst).toBeLessThanOrEqual(1);
  });

  it("takes encoded bytes as well as a path", async () => {
    const bytes = readFileSync(join(IMAGES, "photo_320x240.jpg"));
    const fromBytes = await preprocessImage(bytes, cfg);
    const fromPath = await preprocessImage(join(IMAGES, "photo_320x240.jpg"), cfg);
    const same = Buffer.from(fromBytes.crops[0].patches.buffer).equals(Buffer.from(fromPath.crops[0].patches.buffer));
    expect(same).toBe(true);
  });
});

describe("decoding", () => {
  const rgb = (width: number, height: number, pixel: (x: number, y: number) => [number, number, number]) => {
    const data = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
    return sharp(data, { raw: { width, height, channels: 3 } });
  };
  const at = (img: { data: Uint8Array; width: number }, x: number, y: number) => Array.from(img.data.slice((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
  const near = (actual: number[], expected: number[], tol: number) => actual.every((v, i) => Math.abs(v - expected[i]) <= tol);

  it("applies the EXIF orientation (6: rotate 90° clockwise)", async () => {
    // Stored 40×20, left half red, right half blue → displayed 20×40, red on top.
    const jpeg = await rgb(40, 20, (x) => (x < 20 ? [255, 0, 0] : [0, 0, 255]))
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const img = await decodeImage(jpeg);
    expect([img.width, img.height]).toEqual([20, 40]);
    expect(near(at(img, 10, 5), [255, 0, 0], 8)).toBe(true);
    expect(near(at(img, 10, 34), [0, 0, 255], 8)).toBe(true);
    // The geometry follows the displayed orientation.
    expect((await preprocessImage(jpeg, cfg)).geometry.height).toBe(40);
  });

  it("converts grayscale and CMYK to RGB", async () => {
    const gray = await decodeImage(join(IMAGES, "gray_300x300.png"));
    expect(gray.data.length).toBe(300 * 300 * 3);
    expect(at(gray, 150, 150)[0]).toBe(at(gray, 150, 150)[1]);
    const cmykJpeg = await rgb(16, 16, () => [200, 30, 30]).toColourspace("cmyk").jpeg().toBuffer();
    expect((await sharp(cmykJpeg).metadata()).space).toBe("cmyk");
    const cmyk = await decodeImage(cmykJpeg);
    expect(cmyk.data.length).toBe(16 * 16 * 3);
    const [r, g, b] = at(cmyk, 8, 8);
    expect(r).toBeGreaterThan(g + 80);
    expect(r).toBeGreaterThan(b + 80);
  });

  it("reads the first frame of an animated GIF", async () => {
    const frames = Buffer.alloc(8 * 16 * 3);
    for (let i = 0; i < 8 * 16; i++) frames.set(i < 64 ? [255, 0, 0] : [0, 0, 255], i * 3);
    const gif = await sharp(frames, { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } }).gif().toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const img = await decodeImage(gif);
    expect([img.width, img.height]).toEqual([8, 8]);
    expect(near(at(img, 4, 4), [255, 0, 0], 16)).toBe(true);
  });

  it("reads lossless WebP and TIFF to the same pixels as the PNG", async () => {
    const png = join(IMAGES, "tiny_64x48.png");
    const expected = (await decodeImage(png)).data;
    for (const encoded of [await sharp(png).webp({ lossless: true }).toBuffer(), await sharp(png).tiff({ compression: "lzw" }).toBuffer()]) {
      expect((await decodeImage(encoded)).data).toEqual(expected);
    }
  });
});

describe("bad input", () => {
  const jpeg = readFileSync(join(IMAGES, "photo_320x240.jpg"));
  const png = readFileSync(join(IMAGES, "doc_1024x768.png"));

  it("a file that is not an image → IMAGE_INVALID", async () => {
    await expectCode(() => decodeImage(new TextEncoder().encode("name,total\nwidget,12\n")), "IMAGE_INVALID");
    await expectCode(() => preprocessImage(join(FIXTURES, "vision/tiny-lfm2-vl/config.json"), cfg), "IMAGE_INVALID");
  });

  it("a truncated JPEG or PNG → IMAGE_INVALID", async () => {
    await expectCode(() => decodeImage(jpeg.subarray(0, Math.floor(jpeg.length * 0.6))), "IMAGE_INVALID");
    await expectCode(() => decodeImage(jpeg.subarray(0, 200)), "IMAGE_INVALID");
    await expectCode(() => decodeImage(png.subarray(0, png.length >> 1)), "IMAGE_INVALID");
  });

  it("an empty buffer or a zero-sized image → IMAGE_INVALID", async () => {
    await expectCode(() => decodeImage(new Uint8Array(0)), "IMAGE_INVALID");
    await expectCode(() => decodeImage(pngHeaderOnly(0, 10)), "IMAGE_INVALID");
  });

  it("RGB pixels that do not fill the stated size → INVALID_ARGUMENT", async () => {
    await expectCode(async () => preprocessRgb({ data: new Uint8Array(10), width: 4, height: 4 }, cfg), "INVALID_ARGUMENT");
  });

  it("too many pixels → IMAGE_TOO_LARGE, from the header alone", async () => {
    await expectCode(() => preprocessImage(png, cfg, { maxInputPixels: 1024 * 768 - 1 }), "IMAGE_TOO_LARGE");
    expect((await preprocessImage(png, cfg, { maxInputPixels: 1024 * 768 })).crops).toHaveLength(7);
    // A 100 000 × 100 000 PNG header over a few bytes of data: refused before anything is decoded.
    const before = process.memoryUsage().rss;
    await expectCode(() => decodeImage(pngHeaderOnly(100_000, 100_000)), "IMAGE_TOO_LARGE");
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 2 ** 20);
  });

  it("an unsupported format (SVG) → IMAGE_UNSUPPORTED_FORMAT", async () => {
    const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>');
    await expectCode(() => decodeImage(svg), "IMAGE_UNSUPPORTED_FORMAT");
  });

  it("a missing file → FILE_NOT_FOUND", async () => {
    await expectCode(() => preprocessImage(join(IMAGES, "no-such-image.png"), cfg), "FILE_NOT_FOUND");
  });

  it("a bad pixel limit → INVALID_ARGUMENT", async () => {
    await expectCode(() => decodeImage(jpeg, { maxInputPixels: 0 }), "INVALID_ARGUMENT");
  });
});

/** A valid PNG signature + IHDR declaring width×height RGB, then a tiny IDAT and IEND. */
function pngHeaderOnly(width: number, height: number): Uint8Array {
  const crc32 = (bytes: Uint8Array) => {
    let c = ~0;
    for (const b of bytes) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
    }
    return ~c >>> 0;
  };
  const chunk = (type: string, data: Uint8Array) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, "latin1");
    out.set(data, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.alloc(64))), chunk("IEND", new Uint8Array(0))]);
}
