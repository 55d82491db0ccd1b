/**
 * The LFM2-VL image-processor settings: `processor_config.json`'s `image_processor` block (5.x
 * layout) or a flat `preprocessor_config.json` (older layout), normalised into one typed
 * `ImageProcessorConfig` with transformers' `Lfm2VlImageProcessor` class defaults for absent keys.
 *
 * Published values differ per checkpoint and matter (research/vision.md §1.1): LFM2-VL-450M has
 * no thumbnail and tolerance 2.0, LFM2-VL-1.6B a thumbnail and tolerance 1.5, LFM2.5 configs
 * resample bicubic. Always read them from the checkpoint.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type ConfigJson, ConfigFields, isObject, readJsonObject } from "../text-core/config-fields.ts";
import { LfmError } from "../text-core/errors.ts";

/** The resampling filters transformers' torchvision backend applies to uint8 images (PIL codes 2 and 3). */
export type ResampleFilter = "bilinear" | "bicubic";

export interface ImageProcessorConfig {
  /** Split images that fail the area test into `tileSize` tiles. Off forces one view per image. */
  doImageSplitting: boolean;
  /** Tile-grid bounds (`min_tiles`..`max_tiles` tiles); both 1 when splitting is off. */
  minTiles: number;
  maxTiles: number;
  /** Append a smart-resized view of the whole image after the tiles. */
  useThumbnail: boolean;
  /** Token bounds for a single view or the thumbnail (after the 2×2 unshuffle). */
  minImageTokens: number;
  maxImageTokens: number;
  /** SigLIP2 patch side in pixels (16). */
  encoderPatchSize: number;
  /** Pixel-unshuffle factor of the connector (2). */
  downsampleFactor: number;
  /** Tile side in pixels (512). */
  tileSize: number;
  /** An image is tiled when its rounded area exceeds `maxImageTokens`·(P·f)²·this. */
  maxPixelsTolerance: number;
  resample: ResampleFilter;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /** HF pads every crop's patch rows to `maxNumPatches` (this toolkit hands out the valid rows; the flag is kept for the encoder). */
  doPad: boolean;
  /** `max(maxImageTokens·f², (tileSize/P)² if splitting)`, as HF derives it (the config's own key is ignored there too). */
  maxNumPatches: number;
  /** Wrap each image in `<|image_start|>`…`<|image_end|>` and label tiles/thumbnail (processor-level, default true). */
  useImageSpecialTokens: boolean;
  /** `encoderPatchSize · downsampleFactor` (32): every view side is a multiple of it. */
  sizeFactor: number;
  /** The file the settings came from (for messages). */
  source: string;
}

const REMEDY = "Use the processor config published with the checkpoint.";

/** PIL resample codes → the filters HF's torchvision backend supports on tensors. */
const RESAMPLE_CODES: Record<number, ResampleFilter> = { 2: "bilinear", 3: "bicubic" };

/**
 * Reads the image-processor settings of a checkpoint folder: `processor_config.json` (its
 * `image_processor` block) if present, else `preprocessor_config.json`. Processor-level keys
 * (`use_image_special_tokens`) come from `processor_config.json`'s top level.
 */
export function readImageProcessorConfig(dir: string): ImageProcessorConfig {
  const processorFile = path.join(dir, "processor_config.json");
  const preprocessorFile = path.join(dir, "preprocessor_config.json");
  const processor = fs.existsSync(processorFile) ? readJsonObject(processorFile) : undefined;
  if (processor !== undefined && isObject(processor.image_processor)) {
    return parseImageProcessorConfig(processor.image_processor, processorFile, processor);
  }
  if (fs.existsSync(preprocessorFile)) {
    return parseImageProcessorConfig(readJsonObject(preprocessorFile), preprocessorFile, processor ?? {});
  }
  throw new LfmError(
    "FILE_NOT_FOUND",
    `${dir} has neither processor_config.json (with an "image_processor" block) nor preprocessor_config.json: ` +
      `an LFM2-VL checkpoint ships its image settings there. Download the complete checkpoint folder.`,
  );
}

/**
 * Normalises an `image_processor` object (snake_case keys as saved by transformers). `processor`
 * holds processor-level keys; `source` names the file in messages.
 */
export function parseImageProcessorConfig(raw: unknown, source = "image_processor", processor: ConfigJson = {}): ImageProcessorConfig {
  if (!isObject(raw)) throw new LfmError("CONFIG_INVALID", `${source}: the image-processor settings must be a JSON object.`);
  const f = new ConfigFields(raw, source, REMEDY);
  const type = f.get("image_processor_type");
  if (type !== undefined && !(typeof type === "string" && /^(Lfm2Vl|Siglip2)ImageProcessor/.test(type))) {
    throw f.invalid("image_processor_type", "must be Lfm2VlImageProcessor (or Lfm2VlImageProcessorFast) for an LFM2-VL checkpoint", type);
  }
  const doImageSplitting = f.bool("do_image_splitting", true);
  let minTiles = f.int("min_tiles", 2);
  let maxTiles = f.int("max_tiles", 10);
  if (!doImageSplitting) {
    minTiles = 1; // HF: splitting off forces a 1×1 "grid", which never tiles
    maxTiles = 1;
  } else if (minTiles > maxTiles) {
    throw f.invalid("min_tiles", `must not exceed max_tiles (${maxTiles})`, minTiles);
  }
  const encoderPatchSize = f.int("encoder_patch_size", 16);
  const downsampleFactor = f.int("downsample_factor", 2);
  const tileSize = f.int("tile_size", 512);
  const sizeFactor = encoderPatchSize * downsampleFactor;
  if (tileSize % sizeFactor !== 0) {
    throw f.invalid("tile_size", `must be a multiple of encoder_patch_size × downsample_factor (${sizeFactor})`, tileSize);
  }
  const minImageTokens = f.int("min_image_tokens", 64);
  const maxImageTokens = f.int("max_image_tokens", 256);
  if (minImageTokens > maxImageTokens) {
    throw f.invalid("min_image_tokens", `must not exceed max_image_tokens (${maxImageTokens})`, minImageTokens);
  }
  const resampleCode = f.get("resample") ?? 2;
  const resample = typeof resampleCode === "number" ? RESAMPLE_CODES[resampleCode] : undefined;
  if (resample === undefined) {
    throw f.invalid("resample", "must be 2 (bilinear) or 3 (bicubic), the filters transformers applies to LFM2-VL images", resampleCode);
  }
  const doSplitPatches = doImageSplitting ? (tileSize / encoderPatchSize) ** 2 : 0;
  return {
    doImageSplitting,
    minTiles,
    maxTiles,
    useThumbnail: f.bool("use_thumbnail", true),
    minImageTokens,
    maxImageTokens,
    encoderPatchSize,
    downsampleFactor,
    tileSize,
    maxPixelsTolerance: f.num("max_pixels_tolerance", 2.0),
    resample,
    doRescale: f.bool("do_rescale", true),
    rescaleFactor: f.num("rescale_factor", 1 / 255),
    doNormalize: f.bool("do_normalize", true),
    imageMean: triple(f, "image_mean", 0.5, false),
    imageStd: triple(f, "image_std", 0.5, true),
    doPad: f.bool("do_pad", true),
    maxNumPatches: Math.max(maxImageTokens * downsampleFactor ** 2, doSplitPatches),
    useImageSpecialTokens: new ConfigFields(processor, source, REMEDY).bool("use_image_special_tokens", f.bool("use_image_special_tokens", true)),
    sizeFactor,
    source,
  };
}

/** A per-channel value: one number for all three channels, or a list of three. */
function triple(f: ConfigFields, key: string, fallback: number, nonZero: boolean): [number, number, number] {
  const v = f.get(key) ?? fallback;
  const list = typeof v === "number" ? [v, v, v] : v;
  const ok = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && (!nonZero || x !== 0);
  if (!Array.isArray(list) || list.length !== 3 || !list.every(ok)) {
    throw f.invalid(key, `must be a number or a list of 3 numbers${nonZero ? " (non-zero)" : ""}`, v);
  }
  return [list[0], list[1], list[2]];
}
