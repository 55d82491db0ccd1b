/**
 * LFM2-VL image preprocessing: a file or buffer → the SigLIP2 NaFlex patch rows of each view.
 *
 *   decodeImage      sharp: JPEG/PNG/WebP/TIFF/GIF (first frame), EXIF orientation, alpha, gray/CMYK → 8-bit RGB
 *   imageGeometry    (tiling.ts) smart resize, area test, tile grid, thumbnail
 *   resizeRgb        (resample.ts) torchvision's antialiased uint8 resize, from the original for every view
 *   patchify         rescale + normalise, then [gridH·gridW, P·P·3] rows in HF's order
 *
 * Differences from transformers' pipeline (`load_image` / `Image.open(f).convert("RGB")`), chosen
 * for documents and photos and documented in docs/vision-preprocess.md:
 * - transparent pixels are composited onto white by default (PIL's `convert("RGB")` drops alpha,
 *   which turns black-on-transparent text black-on-black); `alpha: "ignore"` restores PIL's way;
 * - the EXIF orientation is applied (HF applies it in `load_image`; a bare `Image.open` does not);
 * - embedded ICC profiles are ignored, as PIL ignores them, so pixel values equal PIL's decode;
 *   CMYK is converted to sRGB through libvips' CMYK profile (PIL uses a naive formula).
 */
import { readFile } from "node:fs/promises";
import type { Metadata, OutputInfo, default as Sharp } from "sharp";
import { LfmError } from "../text-core/errors.ts";
import { imagePlaceholder } from "./processor.ts";
import type { ImageProcessorConfig } from "./processor-config.ts";
import { resizeRgb } from "./resample.ts";
import { type CropGeometry, type ImageGeometry, imageGeometry } from "./tiling.ts";

/** sharp (libvips) is loaded on the first image, not with every CLI start (~160 ms). */
let sharpModule: Promise<typeof Sharp> | undefined;
const loadSharp = (): Promise<typeof Sharp> => (sharpModule ??= import("sharp").then((m) => m.default));

/** Larger inputs are refused from their header, before any pixel is decoded (decompression bombs). */
export const DEFAULT_MAX_INPUT_PIXELS = 100_000_000;

/** The formats accepted (sharp's names). */
export const SUPPORTED_IMAGE_FORMATS = ["jpeg", "png", "webp", "tiff", "gif"] as const;

export type AlphaMode = "white" | "ignore";

export interface DecodeOptions {
  /** Refuse images with more pixels than this (width × height from the header). Default 100 million. */
  maxInputPixels?: number;
  /** `"white"` (default): composite transparent pixels onto white. `"ignore"`: drop alpha, as PIL's `convert("RGB")`. */
  alpha?: AlphaMode;
}

export type PreprocessOptions = DecodeOptions;

/** 8-bit RGB pixels, interleaved, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** One view's patch rows: `[gridH·gridW, 3·P·P]`, row `pr·gridW + pc`, column `(py·P + px)·3 + c`, normalised. */
export interface ImageCrop {
  patches: Float32Array;
  gridH: number;
  gridW: number;
}

export interface ProcessedImage {
  /** Tiles in reading order, then the thumbnail; or the single view. */
  crops: ImageCrop[];
  geometry: ImageGeometry;
  /** The text that replaces this image's `<image>` in the prompt (`<|image_start|>`…`<|image_end|>`). */
  placeholder: string;
}

/** A file path or encoded bytes → the processed image (views, geometry, placeholder). */
export async function preprocessImage(
  input: string | Uint8Array,
  cfg: ImageProcessorConfig,
  opts: PreprocessOptions = {},
): Promise<ProcessedImage> {
  return preprocessRgb(await decodeImage(input, opts), cfg);
}

/** Already-decoded RGB pixels → the processed image. */
export function preprocessRgb(image: RgbImage, cfg: ImageProcessorConfig): ProcessedImage {
  const geometry = imageGeometry(image.width, image.height, cfg);
  if (image.data.length !== image.width * image.height * 3) {
    throw new LfmError(
      "INVALID_ARGUMENT",
      `RGB pixels of a ${image.width}×${image.height} image need ${image.width * image.height * 3} bytes; got ${image.data.length}.`,
    );
  }
  const resized = new Map<string, Uint8Array>(); // the tiles share one resized canvas
  const crops = geometry.crops.map((crop) => {
    const key = `${crop.resizeWidth}x${crop.resizeHeight}`;
    let pixels = resized.get(key);
    if (pixels === undefined) {
      pixels = resizeRgb(image.data, image.width, image.height, crop.resizeWidth, crop.resizeHeight, cfg.resample);
      resized.set(key, pixels);
    }
    return patchify(pixels, crop.resizeWidth, crop, cfg);
  });
  return { crops, geometry, placeholder: imagePlaceholder(geometry, cfg) };
}

/**
 * Cuts `crop` out of the resized image (`stride` pixels wide), rescales and normalises it and lays
 * it out as NaFlex patch rows: HF's reshape (gh, P, gw, P, C) → permute (gh, gw, P, P, C).
 */
export function patchify(pixels: Uint8Array, stride: number, crop: CropGeometry, cfg: ImageProcessorConfig): ImageCrop {
  const p = cfg.encoderPatchSize;
  const { gridH, gridW } = crop;
  const rowLen = p * p * 3;
  const patches = new Float32Array(gridH * gridW * rowLen);
  const table = normalisationTable(cfg);
  for (let pr = 0; pr < gridH; pr++) {
    for (let pc = 0; pc < gridW; pc++) {
      let o = (pr * gridW + pc) * rowLen;
      for (let py = 0; py < p; py++) {
        let src = ((crop.top + pr * p + py) * stride + crop.left + pc * p) * 3;
        for (let i = 0; i < p * 3; i += 3, src += 3, o += 3) {
          patches[o] = table[pixels[src]];
          patches[o + 1] = table[256 + pixels[src + 1]];
          patches[o + 2] = table[512 + pixels[src + 2]];
        }
      }
    }
  }
  return { patches, gridH, gridW };
}

/** value(u8, channel) = ((u8 · rescale) − mean) / std, as three 256-entry tables. */
function normalisationTable(cfg: ImageProcessorConfig): Float32Array {
  const table = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? v * cfg.rescaleFactor : v;
      if (cfg.doNormalize) x = (x - cfg.imageMean[c]) / cfg.imageStd[c];
      table[c * 256 + v] = x;
    }
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes an image file or buffer into 8-bit RGB with sharp. Typed errors: `FILE_NOT_FOUND`,
 * `IMAGE_INVALID` (empty, not an image, truncated or corrupt), `IMAGE_UNSUPPORTED_FORMAT`,
 * `IMAGE_TOO_LARGE` (checked from the header before decoding).
 */
export async function decodeImage(input: string | Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  const maxPixels = opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  if (!Number.isSafeInteger(maxPixels) || maxPixels <= 0) {
    throw new LfmError("INVALID_ARGUMENT", `maxInputPixels must be a positive integer; got ${maxPixels}.`);
  }
  const name = typeof input === "string" ? input : "The image buffer";
  const bytes = typeof input === "string" ? await readImageFile(input) : input;
  if (bytes.byteLength === 0) {
    throw new LfmError("IMAGE_INVALID", `${name} is empty (0 bytes): expected a JPEG, PNG, WebP, TIFF or GIF image.`);
  }

  const sharp = await loadSharp();
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new LfmError(
      "IMAGE_INVALID",
      `${name} is not an image sharp can read (${errorText(e)}). Supported: ${SUPPORTED_IMAGE_FORMATS.join(", ")}.`,
      { cause: e },
    );
  }
  if (!(SUPPORTED_IMAGE_FORMATS as readonly string[]).includes(meta.format)) {
    throw new LfmError(
      "IMAGE_UNSUPPORTED_FORMAT",
      `${name} is a ${meta.format} image; supported formats are ${SUPPORTED_IMAGE_FORMATS.join(", ")}. Convert it first.`,
    );
  }
  const width = meta.width;
  const height = meta.pageHeight ?? meta.height;
  if (!(width > 0 && height > 0)) {
    throw new LfmError("IMAGE_INVALID", `${name} declares a ${width}×${height} image; an image needs at least one pixel.`);
  }
  if (width * height > maxPixels) {
    throw new LfmError(
      "IMAGE_TOO_LARGE",
      `${name} is ${width}×${height} = ${(width * height).toLocaleString("en-US")} pixels, over the limit of ` +
        `${maxPixels.toLocaleString("en-US")} (refused before decoding). Downscale the image, or raise maxInputPixels ` +
        `if the memory for ${Math.ceil((width * height * 3) / 2 ** 20)} MiB of RGB pixels is available.`,
    );
  }

  let pipeline = sharp(bytes, {
    limitInputPixels: maxPixels, // sharp re-checks while decoding, should the header have lied
    failOn: "error", // truncated or corrupt data fails; libjpeg's benign warnings do not (PIL accepts those too)
    autoOrient: true,
    ignoreIcc: true,
    pages: 1,
    page: 0,
  }).toColourspace("srgb");
  pipeline = (opts.alpha ?? "white") === "white" ? pipeline.flatten({ background: { r: 255, g: 255, b: 255 } }) : pipeline.removeAlpha();
  let decoded: { data: Buffer; info: OutputInfo };
  try {
    decoded = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new LfmError(
      "IMAGE_INVALID",
      `${name} could not be decoded: the ${meta.format} data is truncated or corrupt (${errorText(e)}). Re-export or re-download the image.`,
      { cause: e },
    );
  }
  const { data, info } = decoded;
  if (info.channels !== 3 || data.byteLength !== info.width * info.height * 3) {
    throw new LfmError("IMAGE_INVALID", `${name} decoded to ${info.channels} channels of ${info.width}×${info.height}; expected RGB.`);
  }
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}

async function readImageFile(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT") throw new LfmError("FILE_NOT_FOUND", `Image file ${file} not found.`, { cause: e });
    throw new LfmError("FILE_NOT_FOUND", `Cannot read image file ${file}: ${errorText(e)}.`, { cause: e });
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
