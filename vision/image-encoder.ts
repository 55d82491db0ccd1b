/**
 * Crops → image features: the SigLIP2 tower and the connector in one ONNX graph (built from the
 * checkpoint, cached on disk like the language core's), and the runtime that feeds it.
 *
 * Graph I/O: `pixel_values` [crops, N, 3·P·P], `patch_mask` [crops, N], `position_resize`
 * [crops, N, G²], `unshuffle_index` [T·f²] → `image_features` [T, text hidden]. Everything that
 * depends only on the crops' geometry (resize weights, unshuffle rows) is computed here in JS.
 */
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { LfmError } from "../text-core/errors.ts";
import { builderFingerprint, openCachedGraph } from "../text-core/graph-cache.ts";
import { ElemType, GraphBuilder } from "../text-core/graph/builder.ts";
import { type Precision, precisionOption } from "../text-core/graph/precision.ts";
import type { BuildContext, WeightSource } from "../text-core/graph/weights.ts";
import { withCheckpoint } from "../text-core/model.ts";
import { createSession } from "../text-core/runtime.ts";
import { declareConnectorInputs, lfm2VlConnector, pixelUnshuffleIndex, tokensForGrid } from "./connector.ts";
import { declareTowerInputs, positionResizeMatrix, siglip2Tower } from "./siglip2.ts";
import type { Lfm2VlConfig } from "./vl-config.ts";

/** One crop as the image processor gives it: hp·wp normalised patch rows of 3·P·P values. */
export interface PatchCrop {
  patches: Float32Array;
  gridH: number;
  gridW: number;
}

/** Checkpoint prefixes of the tower and the projector (`model.vision_tower.`, `model.multi_modal_projector.`). */
export interface VisionPrefixes {
  tower: string;
  projector: string;
}

function prefixBefore(names: string[], suffix: string, what: string): string {
  const hits = names.filter((n) => n.endsWith(suffix)).sort((a, b) => a.length - b.length);
  if (hits.length === 0) {
    throw new LfmError("TENSOR_MISSING", `no \`${suffix}\` tensor in the checkpoint: it has no ${what}, so it is not an LFM2-VL checkpoint (or is incomplete).`);
  }
  return hits[0].slice(0, -suffix.length);
}

export function findVisionPrefixes(weights: { names(): string[] }): VisionPrefixes {
  const names = weights.names();
  return {
    tower: prefixBefore(names, "embeddings.patch_embedding.weight", "SigLIP2 vision tower"),
    projector: prefixBefore(names, "linear_1.weight", "multi-modal projector"),
  };
}

/** Builds the tower + connector graph. */
export function buildImageEncoderGraph(config: Lfm2VlConfig, weights: WeightSource, prefixes: VisionPrefixes, precision: Precision): GraphBuilder {
  const b = new GraphBuilder("lfm2_vl_image_encoder");
  b.useDomain("com.microsoft", 1);
  const ctx: BuildContext = { b, weights, precision };
  const hidden = siglip2Tower(ctx, config.vision, prefixes.tower, declareTowerInputs(ctx, config.vision));
  const features = lfm2VlConnector(ctx, hidden, declareConnectorInputs(ctx), prefixes.projector, {
    visionHidden: config.vision.hiddenSize,
    factor: config.downsampleFactor,
    projectorHidden: config.projectorHiddenSize,
    textHidden: config.text.hiddenSize,
    bias: config.projectorBias,
    layerNormEps: 1e-5, // nn.LayerNorm's default: the projector's config sets none
  });
  b.output(features, "image_features", ElemType.FLOAT, ["image_tokens", config.text.hiddenSize]);
  return b;
}

/** This folder's graph code: part of the cache key, so an edited builder never runs a stale graph. */
const VISION_BUILDER_SOURCES = ["siglip2", "connector", "image-encoder", "vl-config"];

export interface ImageEncoderOptions {
  /** The tower's and projector's Linears: "q8" (default, fastest for tiles), "q4" (smallest) or "fp32". */
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  /**
   * Crops per graph call. 1 (default) runs each crop unpadded, which measured faster than
   * padding crops to a common length and masking (see docs/vision-model.md); larger values batch.
   */
  cropsPerCall?: number;
  onProgress?: (stage: string) => void;
}

export class ImageEncoder {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly config: Lfm2VlConfig,
    readonly precision: Precision,
    private readonly cropsPerCall: number,
  ) {}

  static async load(dir: string, config: Lfm2VlConfig, opts: ImageEncoderOptions = {}): Promise<ImageEncoder> {
    const progress = opts.onProgress ?? (() => {});
    const precision = precisionOption(opts.precision, "q8");
    const perCall = opts.cropsPerCall ?? 1;
    if (!Number.isInteger(perCall) || perCall < 1) throw new LfmError("INVALID_ARGUMENT", `cropsPerCall must be a positive integer (got ${perCall}).`);
    return withCheckpoint(dir, async (weights, files) => {
      const prefixes = findVisionPrefixes(weights);
      const session = await openCachedGraph({
        kind: "lfm2-vl-vision",
        files,
        options: { precision, builder: builderFingerprint(import.meta.dirname, VISION_BUILDER_SOURCES) },
        build: () => buildImageEncoderGraph(config, weights, prefixes, precision),
        open: (graphDir) => createSession(join(graphDir, "model.onnx"), { threads: opts.threads }),
        cacheDir: opts.cacheDir,
        progress,
        stages: {
          build: "building the vision encoder graph from the checkpoint",
          load: "loading the vision encoder into onnxruntime",
          rebuild: "the cached vision graph is unreadable; rebuilding it",
        },
      });
      return new ImageEncoder(session, config, precision, perCall);
    });
  }

  /** Image tokens `crops` become, in total. */
  tokenCount(crops: readonly { gridH: number; gridW: number }[]): number {
    return crops.reduce((n, c) => n + tokensForGrid(c, this.config.downsampleFactor), 0);
  }

  /** Features of every crop, in order: [T, text hidden] row-major. */
  async encode(crops: readonly PatchCrop[]): Promise<Float32Array> {
    const D = this.config.text.hiddenSize;
    const out = new Float32Array(this.tokenCount(crops) * D);
    let at = 0;
    for (let i = 0; i < crops.length; i += this.cropsPerCall) {
      const part = await this.run(crops.slice(i, i + this.cropsPerCall));
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  private async run(crops: readonly PatchCrop[]): Promise<Float32Array> {
    const { vision, downsampleFactor } = this.config;
    const patchWidth = vision.numChannels * vision.patchSize * vision.patchSize;
    const G2 = vision.positionGridSize ** 2;
    for (const c of crops) {
      if (!(Number.isInteger(c.gridH) && Number.isInteger(c.gridW) && c.gridH > 0 && c.gridW > 0) || c.patches.length !== c.gridH * c.gridW * patchWidth) {
        throw new LfmError(
          "INVALID_ARGUMENT",
          `a crop of ${c.gridH}×${c.gridW} patches needs ${c.gridH * c.gridW}×${patchWidth} values, got ${c.patches.length}.`,
        );
      }
    }
    const N = Math.max(...crops.map((c) => c.gridH * c.gridW));
    const B = crops.length;
    const pixels = new Float32Array(B * N * patchWidth);
    const mask = new Float32Array(B * N);
    const resize = new Float32Array(B * N * G2);
    crops.forEach((c, k) => {
      const n = c.gridH * c.gridW;
      pixels.set(c.patches, k * N * patchWidth);
      mask.fill(1, k * N, k * N + n);
      resize.set(positionResizeMatrix(c.gridH, c.gridW, vision.positionGridSize), k * N * G2);
    });
    const index = pixelUnshuffleIndex(crops, N, downsampleFactor);
    const feeds = {
      pixel_values: new ort.Tensor("float32", pixels, [B, N, patchWidth]),
      patch_mask: new ort.Tensor("float32", mask, [B, N]),
      position_resize: new ort.Tensor("float32", resize, [B, N, G2]),
      unshuffle_index: new ort.Tensor("int64", index, [index.length]),
    };
    try {
      const out = await this.session.run(feeds, ["image_features"]);
      return out.image_features.data as Float32Array;
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while encoding an image: ${(e as Error).message}`, { cause: e });
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
