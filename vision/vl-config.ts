/**
 * LFM2-VL `config.json` → a typed `Lfm2VlConfig`: the SigLIP2 NaFlex tower (`vision_config`), the
 * projector, the image token and the nested LFM2 text config. Reads the 4.5x remote-code keys
 * (`model_type` "lfm2-vl", `image_token_index`, `vision_feature_layer`) and the 5.x keys
 * (`lfm2_vl`, `image_token_id`, `projector_use_layernorm`); see research/vision.md §2–4.
 */
import { join } from "node:path";
import { type ConfigJson, type Lfm2Config, parseLfm2Config, readConfigJson, textConfigOf } from "../text-core/config.ts";
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

function invalid(source: string, key: string, what: string, found?: unknown): LfmError {
  const shown = found === undefined ? "" : `, found ${JSON.stringify(found)}`;
  return new LfmError("CONFIG_INVALID", `${source}: "${key}" ${what}${shown}. Use the config.json that was published with the checkpoint.`);
}

function int(raw: ConfigJson, source: string, key: string, fallback?: number, min = 1): number {
  const v = raw[key] ?? fallback;
  if (v === undefined) throw invalid(source, key, "is required");
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw invalid(source, key, `must be an integer ≥ ${min}`, v);
  return v;
}

function parseVision(raw: unknown, source: string, featureLayer: number | undefined): Siglip2Config {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalid(source, "vision_config", "must be an object", raw);
  const v = raw as ConfigJson;
  const where = `${source} vision_config`;
  const hiddenSize = int(v, where, "hidden_size", 768);
  const numHeads = int(v, where, "num_attention_heads", 12);
  if (hiddenSize % numHeads !== 0) throw invalid(where, "num_attention_heads", `must divide hidden_size ${hiddenSize}`, numHeads);
  const checkpointLayers = int(v, where, "num_hidden_layers", 12);
  // The remote code truncates the encoder to layers[:vision_feature_layer + 1]; -1 keeps all.
  const numLayers = featureLayer === undefined ? checkpointLayers : featureLayer < 0 ? checkpointLayers + featureLayer + 1 : featureLayer + 1;
  if (numLayers < 1 || numLayers > checkpointLayers) {
    throw invalid(source, "vision_feature_layer", `selects layer count ${numLayers} of ${checkpointLayers}`, featureLayer);
  }
  const act = v.hidden_act ?? "gelu_pytorch_tanh";
  if (act !== "gelu_pytorch_tanh") throw invalid(where, "hidden_act", 'is not supported (SigLIP2 uses "gelu_pytorch_tanh")', act);
  const numPatches = int(v, where, "num_patches", 256);
  const grid = Math.round(Math.sqrt(numPatches));
  if (grid * grid !== numPatches) throw invalid(where, "num_patches", "must be a square number (the position grid)", numPatches);
  const eps = v.layer_norm_eps ?? 1e-6;
  if (typeof eps !== "number" || !(eps > 0)) throw invalid(where, "layer_norm_eps", "must be a positive number", eps);
  return {
    hiddenSize,
    intermediateSize: int(v, where, "intermediate_size", 3072),
    numHeads,
    headDim: hiddenSize / numHeads,
    numLayers,
    checkpointLayers,
    patchSize: int(v, where, "patch_size", 16),
    numChannels: int(v, where, "num_channels", 3),
    positionGridSize: grid,
    layerNormEps: eps,
  };
}

/** Parses an LFM2-VL config object; `source` names it in messages. */
export function parseLfm2VlConfig(raw: ConfigJson, source: string): Lfm2VlConfig {
  if (!isLfm2VlConfig(raw)) {
    throw new LfmError("UNKNOWN_ARCHITECTURE", `${source} is not an LFM2-VL config (model_type ${JSON.stringify(raw.model_type)}); expected "lfm2_vl". Text-only LFM2 checkpoints run with "lfm generate" or "lfm chat" (TextModel).`);
  }
  const featureLayer = raw.vision_feature_layer;
  if (featureLayer !== undefined && featureLayer !== null && (typeof featureLayer !== "number" || !Number.isSafeInteger(featureLayer))) {
    throw invalid(source, "vision_feature_layer", "must be an integer", featureLayer);
  }
  const vision = parseVision(raw.vision_config, source, (featureLayer ?? undefined) as number | undefined);
  const textRaw = textConfigOf(raw, source);
  // HF loads the whole model in the top-level dtype; RoPE's inv_freq buffer follows it.
  const textWithDtype = textRaw.dtype === undefined && textRaw.torch_dtype === undefined ? { ...textRaw, dtype: raw.dtype ?? raw.torch_dtype } : textRaw;
  const text = parseLfm2Config(textWithDtype, `${source} text_config`);
  const act = raw.projector_hidden_act ?? "gelu";
  if (act !== "gelu") throw invalid(source, "projector_hidden_act", 'is not supported (LFM2-VL uses "gelu")', act);
  const layerNorm = raw.projector_use_layernorm ?? true;
  if (typeof layerNorm !== "boolean") throw invalid(source, "projector_use_layernorm", "must be true or false", layerNorm);
  const bias = raw.projector_bias ?? true;
  if (typeof bias !== "boolean") throw invalid(source, "projector_bias", "must be true or false", bias);
  const tokenKey = raw.image_token_id !== undefined ? "image_token_id" : "image_token_index";
  return {
    vision,
    text,
    downsampleFactor: int(raw, source, "downsample_factor", 2),
    projectorHiddenSize: int(raw, source, "projector_hidden_size", 2560),
    projectorBias: bias,
    projectorLayerNorm: layerNorm,
    imageTokenId: int(raw, source, tokenKey, 396, 0),
    source,
  };
}

export function loadLfm2VlConfig(dir: string): Lfm2VlConfig {
  return parseLfm2VlConfig(readConfigJson(dir), join(dir, "config.json"));
}
