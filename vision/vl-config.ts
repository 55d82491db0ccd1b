/**
 * LFM2-VL `config.json` → a typed `Lfm2VlConfig`: the SigLIP2 NaFlex tower (`vision_config`), the
 * projector, the image token and the nested LFM2 text config. Reads the 4.5x remote-code keys
 * (`model_type` "lfm2-vl", `image_token_index`, `vision_feature_layer`) and the 5.x keys
 * (`lfm2_vl`, `image_token_id`, `projector_use_layernorm`); see research/vision.md §2–4.
 */
import { join } from "node:path";
import { type ConfigJson, type Lfm2Config, parseLfm2Config, readConfigJson, textConfigOf } from "../text-core/config.ts";
import { ConfigFields } from "../text-core/config-fields.ts";
import { LfmError } from "../text-core/errors.ts";

export interface Siglip2Config {
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  headDim: number;
  /** Encoder layers actually run: `num_hidden_layers + vision_feature_layer + 1` when that key exists. */
  numLayers: number;
  /** Layers the checkpoint holds (the tower may use fewer). */
  checkpointLayers: number;
  patchSize: number;
  numChannels: number;
  /** Side of the learned position-embedding grid (√num_patches: 16). */
  positionGridSize: number;
  layerNormEps: number;
}

export interface Lfm2VlConfig {
  vision: Siglip2Config;
  text: Lfm2Config;
  /** Pixel-unshuffle factor between the tower and the projector (2). */
  downsampleFactor: number;
  projectorHiddenSize: number;
  projectorBias: boolean;
  /** The config's `projector_use_layernorm` (default true); the weights decide in the end. */
  projectorLayerNorm: boolean;
  imageTokenId: number;
  source: string;
}

const VL_MODEL_TYPES = ["lfm2_vl", "lfm2-vl"];

/** True when `raw` is an LFM2-VL config (what `loadModel` dispatches on). */
export function isLfm2VlConfig(raw: ConfigJson): boolean {
  const archs = Array.isArray(raw.architectures) ? raw.architectures : [];
  return VL_MODEL_TYPES.includes(raw.model_type as string) || archs.includes("Lfm2VlForConditionalGeneration");
}

const REMEDY = "Use the config.json that was published with the checkpoint.";

function parseVision(top: ConfigFields, featureLayer: number | undefined): Siglip2Config {
  const v = top.block("vision_config");
  const hiddenSize = v.int("hidden_size", 768);
  const numHeads = v.int("num_attention_heads", 12);
  if (hiddenSize % numHeads !== 0) throw v.invalid("num_attention_heads", `must divide hidden_size ${hiddenSize}`, numHeads);
  const checkpointLayers = v.int("num_hidden_layers", 12);
  // The remote code truncates the encoder to layers[:vision_feature_layer + 1]; -1 keeps all.
  const numLayers = featureLayer === undefined ? checkpointLayers : featureLayer < 0 ? checkpointLayers + featureLayer + 1 : featureLayer + 1;
  if (numLayers < 1 || numLayers > checkpointLayers) {
    throw top.invalid("vision_feature_layer", `selects layer count ${numLayers} of ${checkpointLayers}`, featureLayer);
  }
  v.fixed("hidden_act", "gelu_pytorch_tanh", "SigLIP2 uses gelu_pytorch_tanh");
  const numPatches = v.int("num_patches", 256);
  const grid = Math.round(Math.sqrt(numPatches));
  if (grid * grid !== numPatches) throw v.invalid("num_patches", "must be a square number (the position grid)", numPatches);
  return {
    hiddenSize,
    intermediateSize: v.int("intermediate_size", 3072),
    numHeads,
    headDim: hiddenSize / numHeads,
    numLayers,
    checkpointLayers,
    patchSize: v.int("patch_size", 16),
    numChannels: v.int("num_channels", 3),
    positionGridSize: grid,
    layerNormEps: v.num("layer_norm_eps", 1e-6),
  };
}

/** Parses an LFM2-VL config object; `source` names it in messages. */
export function parseLfm2VlConfig(raw: ConfigJson, source: string): Lfm2VlConfig {
  if (!isLfm2VlConfig(raw)) {
    throw new LfmError("UNKNOWN_ARCHITECTURE", `${source} is not an LFM2-VL config (model_type ${JSON.stringify(raw.model_type)}); expected "lfm2_vl". Text-only LFM2 checkpoints run with "lfm generate" or "lfm chat" (TextModel).`);
  }
  const f = new ConfigFields(raw, source, REMEDY);
  const featureLayer = f.has("vision_feature_layer") ? f.int("vision_feature_layer", undefined, -Infinity) : undefined;
  const vision = parseVision(f, featureLayer);
  const textRaw = textConfigOf(raw, source);
  // HF loads the whole model in the top-level dtype; RoPE's inv_freq buffer follows it.
  const textWithDtype = textRaw.dtype === undefined && textRaw.torch_dtype === undefined ? { ...textRaw, dtype: raw.dtype ?? raw.torch_dtype } : textRaw;
  const text = parseLfm2Config(textWithDtype, `${source} text_config`);
  f.fixed("projector_hidden_act", "gelu", "LFM2-VL uses gelu");
  return {
    vision,
    text,
    downsampleFactor: f.int("downsample_factor", 2),
    projectorHiddenSize: f.int("projector_hidden_size", 2560),
    projectorBias: f.bool("projector_bias", true),
    projectorLayerNorm: f.bool("projector_use_layernorm", true),
    imageTokenId: f.int(f.has("image_token_id") ? "image_token_id" : "image_token_index", 396, 0),
    source,
  };
}

export function loadLfm2VlConfig(dir: string): Lfm2VlConfig {
  return parseLfm2VlConfig(readConfigJson(dir), join(dir, "config.json"));
}
