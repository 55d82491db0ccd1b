/**
 * LFM2-VL image geometry, numbers only: which views (crops) an image of W×H becomes, their sizes,
 * patch grids and token counts. Matches transformers' `Lfm2VlImageProcessor` decisions exactly
 * (research/vision.md §1.2):
 *
 *   (h̄, w̄) = smartResize(H, W)                 the single view / thumbnail, multiples of 32
 *   if splitting and tooLarge(H, W):             area test with max_pixels_tolerance
 *     (cols, rows) = tileGrid(W/H)               closest aspect ratio, min_tiles..max_tiles tiles
 *     views = rows×cols tiles of the original resized to (rows·512, cols·512), reading order,
 *             then the (h̄, w̄) thumbnail if use_thumbnail
 *   else views = [(h̄, w̄)]
 *
 * Rounding is Python's `round` (half to even): 720 → 704 (not tiled), 736 → tiled.
 */
import { LfmError } from "../text-core/errors.ts";
import type { ImageProcessorConfig } from "./processor-config.ts";

export type CropKind = "single" | "tile" | "thumbnail";

export interface CropGeometry {
  kind: CropKind;
  /** 1-based tile position (geometric: row = y, col = x); 0 for a single view or the thumbnail. */
  row: number;
  col: number;
  /** The size the whole original image is resized to before this crop is cut from it. */
  resizeWidth: number;
  resizeHeight: number;
  /** The crop's window in that resized image. */
  left: number;
  top: number;
  widthPx: number;
  heightPx: number;
  /** Patch grid (SigLIP2 spatial shape). */
  gridH: number;
  gridW: number;
  /** `<image>` tokens this crop becomes after the connector's unshuffle. */
  tokens: number;
}

export interface ImageGeometry {
  /** The original size (after EXIF orientation). */
  width: number;
  height: number;
  /** The smart-resize size: the single view, or the thumbnail of a tiled image. */
  resizedWidth: number;
  resizedHeight: number;
  /** True when the image is split into tiles. */
  tiled: boolean;
  /** Tile grid (1×1 when not tiled). */
  rows: number;
  cols: number;
  /** True when a thumbnail follows the tiles. */
  thumbnail: boolean;
  /** Views in encoder order: tiles row-major, then the thumbnail; or the single view. */
  crops: CropGeometry[];
  /** `[gridH, gridW]` per crop (HF `spatial_shapes`). */
  spatialShapes: [number, number][];
  /** Total `<image>` tokens of the image (sum over crops). */
  imageTokens: number;
}

/** Python's `round`: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const frac = x - floor;
  if (frac > 0.5) return floor + 1;
  if (frac < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** HF `round_by_factor`: the multiple of `factor` nearest to `x` (ties to even). */
export function roundByFactor(x: number, factor: number): number {
  return roundHalfEven(x / factor) * factor;
}

/**
 * HF `smart_resize`: the single-view size, sides multiples of P·f, area within the min/max token
 * budget, aspect ratio kept as well as that allows. Float operations in Python's order so the
 * results agree bit for bit.
 */
export function smartResize(width: number, height: number, cfg: ImageProcessorConfig): { width: number; height: number } {
  const factor = cfg.sizeFactor;
  const pixelsPerToken = cfg.encoderPatchSize ** 2 * cfg.downsampleFactor ** 2;
  const minPixels = cfg.minImageTokens * pixelsPerToken;
  const maxPixels = cfg.maxImageTokens * pixelsPerToken;
  let h = Math.max(factor, roundByFactor(height, factor));
  let w = Math.max(factor, roundByFactor(width, factor));
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { width: w, height: h };
}

/** HF `_is_image_too_large`: the rounded area (each side at least one patch) against the tolerated budget. */
export function isTooLarge(width: number, height: number, cfg: ImageProcessorConfig): boolean {
  const factor = cfg.sizeFactor;
  const h = Math.max(cfg.encoderPatchSize, roundByFactor(height, factor));
  const w = Math.max(cfg.encoderPatchSize, roundByFactor(width, factor));
  const budget = cfg.maxImageTokens * cfg.encoderPatchSize ** 2 * cfg.downsampleFactor ** 2 * cfg.maxPixelsTolerance;
  return h * w > budget;
}

/**
 * HF `_target_ratios` + `find_closest_aspect_ratio`: the (cols, rows) grid with min..max tiles
 * whose ratio is closest to W/H. On an exact tie the later (larger) grid wins only if the image
 * covers more than half of its area. Candidates are in generation order, stably sorted by tile
 * count (Python sorts a set; the order only matters between equal-count grids of different ratio
 * at exactly equal distance, which a closer smaller grid always pre-empts in practice).
 */
export function tileGrid(width: number, height: number, cfg: ImageProcessorConfig): { cols: number; rows: number } {
  const candidates: [number, number][] = [];
  const seen = new Set<string>();
  for (let n = cfg.minTiles; n <= cfg.maxTiles; n++) {
    for (let w = 1; w <= n; w++) {
      for (let h = 1; h <= n; h++) {
        const key = `${w}x${h}`;
        if (w * h >= cfg.minTiles && w * h <= cfg.maxTiles && !seen.has(key)) {
          seen.add(key);
          candidates.push([w, h]);
        }
      }
    }
  }
  candidates.sort((a, b) => a[0] * a[1] - b[0] * b[1]);

  const aspectRatio = width / height;
  const area = width * height;
  let bestDiff = Infinity;
  let best: [number, number] = [1, 1];
  for (const [w, h] of candidates) {
    const diff = Math.abs(aspectRatio - w / h);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = [w, h];
    } else if (diff === bestDiff && area > 0.5 * cfg.tileSize * cfg.tileSize * w * h) {
      best = [w, h];
    }
  }
  return { cols: best[0], rows: best[1] };
}

/** HF `_compute_tokens_for_image`: `ceil((side // P) / f)` per side. */
export function tokensForSize(width: number, height: number, cfg: ImageProcessorConfig): number {
  const perSide = (px: number) => Math.ceil(Math.floor(px / cfg.encoderPatchSize) / cfg.downsampleFactor);
  return perSide(height) * perSide(width);
}

/**
 * The views of a W×H image under `cfg`. Throws `INVALID_ARGUMENT` for a non-positive or
 * non-integer size and `IMAGE_ASPECT_RATIO_UNSUPPORTED` when a view would need more patches than
 * the encoder takes (`maxNumPatches`; only extreme strips such as 1×1100 get there, where HF's
 * padding fails as well).
 */
export function imageGeometry(width: number, height: number, cfg: ImageProcessorConfig): ImageGeometry {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width <= 0 || height <= 0) {
    throw new LfmError("INVALID_ARGUMENT", `An image size must be positive whole pixels; got ${width}×${height}.`);
  }
  const resized = smartResize(width, height, cfg);
  const splitting = !(cfg.minTiles === 1 && cfg.maxTiles === 1);
  const crops: CropGeometry[] = [];
  let rows = 1;
  let cols = 1;
  let thumbnail = false;

  if (splitting && isTooLarge(width, height, cfg)) {
    ({ rows, cols } = tileGrid(width, height, cfg));
    const tile = cfg.tileSize;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        crops.push(crop(cfg, "tile", r + 1, c + 1, cols * tile, rows * tile, c * tile, r * tile, tile, tile));
      }
    }
    // A 1×1 grid (possible with min_tiles 1) is one tile² view without labels, as in HF; its
    // tokens are counted from the tile itself (HF counts the smart-resize size, which disagrees
    // with the features it produces unless that size is the tile size).
    if (rows * cols === 1) {
      crops[0] = { ...crops[0], kind: "single", row: 0, col: 0 };
    } else if (cfg.useThumbnail) {
      thumbnail = true;
      crops.push(crop(cfg, "thumbnail", 0, 0, resized.width, resized.height, 0, 0, resized.width, resized.height));
    }
  } else {
    crops.push(crop(cfg, "single", 0, 0, resized.width, resized.height, 0, 0, resized.width, resized.height));
  }

  for (const c of crops) {
    if (c.gridH * c.gridW > cfg.maxNumPatches) {
      throw new LfmError(
        "IMAGE_ASPECT_RATIO_UNSUPPORTED",
        `A ${width}×${height} image is too elongated: its ${c.widthPx}×${c.heightPx} view needs ` +
          `${c.gridH * c.gridW} patches, more than the encoder's ${cfg.maxNumPatches}. Crop the image into ` +
          `less extreme pieces (or pad it towards a squarer shape) and pass those instead.`,
      );
    }
  }
  return {
    width,
    height,
    resizedWidth: resized.width,
    resizedHeight: resized.height,
    tiled: rows * cols > 1,
    rows,
    cols,
    thumbnail,
    crops,
    spatialShapes: crops.map((c) => [c.gridH, c.gridW]),
    imageTokens: crops.reduce((sum, c) => sum + c.tokens, 0),
  };
}

function crop(
  cfg: ImageProcessorConfig,
  kind: CropKind,
  row: number,
  col: number,
  resizeWidth: number,
  resizeHeight: number,
  left: number,
  top: number,
  widthPx: number,
  heightPx: number,
): CropGeometry {
  return {
    kind,
    row,
    col,
    resizeWidth,
    resizeHeight,
    left,
    top,
    widthPx,
    heightPx,
    gridH: Math.floor(heightPx / cfg.encoderPatchSize),
    gridW: Math.floor(widthPx / cfg.encoderPatchSize),
    tokens: tokensForSize(widthPx, heightPx, cfg),
  };
}
