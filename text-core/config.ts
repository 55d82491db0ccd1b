/**
 * `config.json` → one typed `Lfm2Config`, for both generations of published keys:
 *
 * | meaning            | 4.5x key (first release)     | 5.x key (transformers ≥ 5)          | precedence        |
 * |--------------------|------------------------------|-------------------------------------|-------------------|
 * | layer kinds        | `full_attn_idxs`             | `layer_types`                       | `layer_types`     |
 * | FF width (config)  | `block_ff_dim`               | `intermediate_size`                 | `block_ff_dim`    |
 * | rope θ             | `rope_theta` / `theta`       | `rope_parameters.rope_theta`        | `rope_parameters` |
 * | tied embeddings    | `tie_embedding`              | `tie_word_embeddings`               | `tie_embedding`   |
 *
 * Precedences and defaults follow transformers' `Lfm2Config.__init__`. Everything derived (head
 * width, effective feed-forward width, layer kinds) is computed here, once.
 *
 * The effective FF width follows llama.cpp's converter and the first HF port (`effectiveFfDim`):
 * when auto-adjust is on, the width is always rounded up to `block_multiple_of`; current
 * transformers rounds only when a multiplier is set. Every published config sets multiplier 1.0,
 * where the two agree. `checkFfDimAgainstWeights` holds the weights to that rule.
 */
import * as path from "node:path";
import { type ConfigJson, ConfigFields, isObject, readJsonObject } from "./config-fields.ts";
import { LfmError } from "./errors.ts";

export type { ConfigJson } from "./config-fields.ts";

export type Lfm2LayerType = "conv" | "full_attention";

export interface Lfm2Config {
  /** `Lfm2ForCausalLM` / `Lfm2Model` from `architectures`, else the `model_type` ("lfm2"). */
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  layerTypes: Lfm2LayerType[];
  /** Indices of the `full_attention` layers (derived from `layerTypes`). */
  attentionLayers: number[];
  /** The EFFECTIVE feed-forward width (rows of `feed_forward.w1.weight`). */
  ffDim: number;
  /** The FF width the config states (`block_ff_dim` or `intermediate_size`), before the rule. */
  intermediateSize: number;
  ffAutoAdjust: boolean;
  ffMultiplier: number | null;
  ffMultipleOf: number;
  convLCache: number;
  convBias: boolean;
  normEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieEmbeddings: boolean;
  /** null only if the config explicitly says null (transformers' default is 1). */
  bosTokenId: number | null;
  /** `eos_token_id` as a list (the config may hold one id or several; empty if null; default [2] as transformers). */
  eosTokenIds: number[];
  /** Id fed at padded positions (they are masked, so any id works): the config's, else 0. */
  padTokenId: number;
  /** `dtype` (5.x) / `torch_dtype` (4.5x): what the weights were saved as, e.g. "bfloat16"; null if unstated. */
  storageDtype: string | null;
  /** Where the config came from (for messages). */
  source: string;
}

/** What `parseLfm2Config` accepts. */
export const SUPPORTED_ARCHITECTURES = ["Lfm2ForCausalLM", "Lfm2Model"] as const;
const SUPPORTED_MODEL_TYPE = "lfm2";
const SUPPORTED_TEXT = `model_type "lfm2" (architectures ${SUPPORTED_ARCHITECTURES.join(" / ")}), or an LFM2-VL / LFM2-Audio config nesting one`;

/** Feed-forward width rule (llama.cpp `conversion/lfm2.py`, first HF port). */
export function effectiveFfDim(
  intermediateSize: number,
  autoAdjust: boolean,
  multiplier: number | null,
  multipleOf: number,
): number {
  if (!autoAdjust) return intermediateSize;
  let ff = Math.trunc((2 * intermediateSize) / 3); // python int(2 * ff / 3)
  if (multiplier !== null) ff = Math.trunc(multiplier * ff);
  return multipleOf * Math.ceil(ff / multipleOf);
}

const REMEDY = "Use the config.json that was published with the checkpoint.";

function describeArchitecture(raw: ConfigJson): string {
  const parts: string[] = [];
  if (raw.model_type !== undefined) parts.push(`model_type ${JSON.stringify(raw.model_type)}`);
  if (raw.architectures !== undefined && raw.architectures !== null) {
    parts.push(`architectures ${JSON.stringify(raw.architectures)}`);
  }
  return parts.length > 0 ? parts.join(", ") : "neither model_type nor architectures";
}

/** The LFM2 architecture name `raw` declares, or null if it is not a (dense) LFM2 text config. */
function lfm2ArchitectureOf(raw: ConfigJson): string | null {
  const archs = Array.isArray(raw.architectures) ? raw.architectures.filter((a) => typeof a === "string") : [];
  const named = SUPPORTED_ARCHITECTURES.find((a) => archs.includes(a));
  if (raw.model_type !== undefined) {
    if (raw.model_type !== SUPPORTED_MODEL_TYPE) return null;
    return named ?? SUPPORTED_MODEL_TYPE;
  }
  return named ?? null;
}

/**
 * The LFM2 text config inside `raw`: `raw` itself for a text checkpoint, `text_config` for LFM2-VL,
 * `lfm` for liquid-audio (LFM2-Audio). `UNKNOWN_ARCHITECTURE` if there is none; `source` names `raw`
 * in messages.
 */
export function textConfigOf(raw: unknown, source = "config.json"): ConfigJson {
  if (!isObject(raw)) throw new LfmError("CONFIG_INVALID", `${source} is not a JSON object (found ${JSON.stringify(raw)}).`);
  if (lfm2ArchitectureOf(raw) !== null) return raw;
  for (const key of ["text_config", "lfm"] as const) {
    const nested = raw[key];
    if (!isObject(nested)) continue;
    if (lfm2ArchitectureOf(nested) !== null) return nested;
    // liquid-audio's `lfm` block may name no architecture at all: the parent says what it is.
    if (key === "lfm" && nested.model_type === undefined && !Array.isArray(nested.architectures)) {
      return { ...nested, model_type: SUPPORTED_MODEL_TYPE };
    }
  }
  throw unknownArchitecture(raw, source);
}

function unknownArchitecture(raw: ConfigJson, source: string, nestedLfm2 = false): LfmError {
  let hint = "";
  if (raw.model_type === "lfm2_moe" || (Array.isArray(raw.architectures) && raw.architectures.includes("Lfm2MoeForCausalLM"))) {
    hint = " LFM2 MoE models (LFM2-8B-A1B) are not supported yet.";
  } else if (nestedLfm2) {
    const key = isObject(raw.text_config) ? "text_config" : "lfm";
    hint = ` This is a multimodal checkpoint: its LFM2 text core is the "${key}" block (textConfigOf gives it); load it with its own pipeline.`;
  } else if (isObject(raw.text_config) || isObject(raw.lfm)) {
    hint = " Its nested text config is not LFM2 either.";
  }
  return new LfmError(
    "UNKNOWN_ARCHITECTURE",
    `${source} declares ${describeArchitecture(raw)}; supported: ${SUPPORTED_TEXT}.${hint}`,
  );
}

/** A token id; an explicit null is "none" (kept as null), an absent key takes transformers' default. */
function tokenId(f: ConfigFields, key: string, fallback: number): number | null {
  const v = f.raw[key];
  if (v === undefined) return fallback;
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw f.invalid(key, "must be a token id", v);
  return v;
}

/** `eos_token_id` as a list; an explicit null is "no EOS" ([]), absent is transformers' default [2]. */
function eosIds(f: ConfigFields): number[] {
  const v = f.raw.eos_token_id;
  if (v === undefined) return [2];
  if (v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
    throw f.invalid("eos_token_id", "must be a token id or a list of token ids", v);
  }
  return list as number[];
}

function layerTypesOf(f: ConfigFields, numLayers: number): Lfm2LayerType[] {
  const types = f.get("layer_types");
  if (types !== undefined) {
    if (!Array.isArray(types)) throw f.invalid("layer_types", "must be a list", types);
    if (types.length !== numLayers) {
      throw f.invalid("layer_types", `has ${types.length} entries but num_hidden_layers is ${numLayers}`);
    }
    types.forEach((t, i) => {
      if (t !== "conv" && t !== "full_attention") {
        throw f.invalid("layer_types", `entry ${i} must be "conv" or "full_attention"`, t);
      }
    });
    return types as Lfm2LayerType[];
  }
  const idxs = f.get("full_attn_idxs");
  if (idxs === undefined) return Array.from({ length: numLayers }, () => "full_attention"); // as transformers
  if (!Array.isArray(idxs) || !idxs.every((i) => Number.isSafeInteger(i) && i >= 0 && i < numLayers)) {
    throw f.invalid("full_attn_idxs", `must list layer indices in 0..${numLayers - 1}`, idxs);
  }
  return Array.from({ length: numLayers }, (_, i) => (idxs.includes(i) ? "full_attention" : "conv"));
}

function ropeThetaOf(f: ConfigFields): number {
  if (f.has("rope_parameters")) {
    let p = f.block("rope_parameters");
    // Per-layer-type form: { full_attention: {...}, conv: null }.
    if (isObject(p.get("full_attention"))) p = p.block("full_attention");
    const ropeType = p.get("rope_type");
    if (ropeType !== undefined && ropeType !== "default") {
      throw p.invalid("rope_type", `is not supported (only "default" RoPE is implemented)`, ropeType);
    }
    const thetaKey = p.has("rope_theta") ? "rope_theta" : "theta";
    if (p.has(thetaKey)) return p.num(thetaKey);
  }
  if (f.has("rope_scaling")) throw f.invalid("rope_scaling", "is not supported (only default RoPE is implemented)", f.get("rope_scaling"));
  // transformers: kwargs.get("theta", kwargs.get("rope_theta", 1e6))
  return f.num(f.has("theta") ? "theta" : "rope_theta", 1_000_000);
}

function storageDtypeOf(f: ConfigFields): string | null {
  const key = f.has("dtype") ? "dtype" : "torch_dtype";
  if (!f.has(key)) return null;
  const v = f.get(key);
  if (typeof v !== "string") throw f.invalid(key, "must be a dtype name such as \"bfloat16\"", v);
  return v;
}

/**
 * Parses an LFM2 text config (`raw` = the parsed `config.json`, or the block `textConfigOf`
 * returned). `source` names it in messages. `UNKNOWN_ARCHITECTURE` for anything but dense LFM2;
 * `CONFIG_INVALID` naming the key for a missing or inconsistent field.
 */
export function parseLfm2Config(raw: unknown, source: string): Lfm2Config {
  if (!isObject(raw)) throw new LfmError("CONFIG_INVALID", `${source}: config is not a JSON object.`);
  const architecture = lfm2ArchitectureOf(raw);
  if (architecture === null) {
    let nestedLfm2 = true;
    try {
      textConfigOf(raw);
    } catch {
      nestedLfm2 = false;
    }
    throw unknownArchitecture(raw, source, nestedLfm2);
  }

  const f = new ConfigFields(raw, source, REMEDY);
  const vocabSize = f.int("vocab_size");
  const hiddenSize = f.int("hidden_size");
  for (const legacy of ["block_dim", "conv_dim", "conv_dim_out"]) {
    const v = f.get(legacy);
    if (v !== undefined && v !== hiddenSize) {
      throw f.invalid(legacy, `differs from hidden_size ${hiddenSize}, which no published LFM2 does (unsupported)`, v);
    }
  }
  const numLayers = f.int("num_hidden_layers");
  // `num_heads` is the 4.5x duplicate of `num_attention_heads`.
  const numHeads = f.int(!f.has("num_attention_heads") && f.has("num_heads") ? "num_heads" : "num_attention_heads");
  const numKvHeads = f.int("num_key_value_heads");
  if (numHeads % numKvHeads !== 0) {
    throw f.invalid("num_key_value_heads", `must divide num_attention_heads ${numHeads}`, numKvHeads);
  }
  let headDim: number;
  if (f.has("head_dim")) {
    headDim = f.int("head_dim");
  } else {
    if (hiddenSize % numHeads !== 0) {
      throw f.invalid("num_attention_heads", `must divide hidden_size ${hiddenSize}`, numHeads);
    }
    headDim = hiddenSize / numHeads;
  }
  const layerTypes = layerTypesOf(f, numLayers);

  const ffKey = f.has("block_ff_dim") ? "block_ff_dim" : "intermediate_size";
  const intermediateSize = f.int(ffKey);
  const ffAutoAdjust = f.bool("block_auto_adjust_ff_dim", true);
  // An explicit null multiplier means "none" (transformers skips the step); absent is 1.0.
  const multiplier = raw.block_ffn_dim_multiplier;
  const ffMultiplier = multiplier === null ? null : f.num("block_ffn_dim_multiplier", 1.0);
  const ffMultipleOf = f.int("block_multiple_of", 256);
  const ffDim = effectiveFfDim(intermediateSize, ffAutoAdjust, ffMultiplier, ffMultipleOf);
  if (ffDim <= 0) throw f.invalid(ffKey, `gives a feed-forward width of ${ffDim}`, intermediateSize);

  const epsKey = f.has("norm_eps") ? "norm_eps" : "block_norm_eps";
  const tieKey = f.has("tie_embedding") ? "tie_embedding" : "tie_word_embeddings";

  return {
    architecture,
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    layerTypes,
    attentionLayers: layerTypes.flatMap((t, i) => (t === "full_attention" ? [i] : [])),
    ffDim,
    intermediateSize,
    ffAutoAdjust,
    ffMultiplier,
    ffMultipleOf,
    convLCache: f.int("conv_L_cache", 3),
    convBias: f.bool("conv_bias", false),
    normEps: f.num(epsKey, 1e-5),
    ropeTheta: ropeThetaOf(f),
    maxPositionEmbeddings: f.int("max_position_embeddings", 128_000),
    tieEmbeddings: f.bool(tieKey, true),
    bosTokenId: tokenId(f, "bos_token_id", 1),
    eosTokenIds: eosIds(f),
    padTokenId: tokenId(f, "pad_token_id", 0) ?? 0,
    storageDtype: storageDtypeOf(f),
    source,
  };
}

/**
 * Returns the FF width of the weights (`feed_forward.w1.weight` is `[ff, hidden]`) after checking
 * it equals `config.ffDim`. Deliberately strict: a width the rule does not produce means the config
 * and the weights do not belong together (transformers would refuse to load them too), so it is a
 * `TENSOR_SHAPE_MISMATCH` explaining both numbers rather than a silent guess.
 */
export function checkFfDimAgainstWeights(config: Lfm2Config, w1Shape: number[]): number {
  const [ff, hidden] = w1Shape;
  if (w1Shape.length !== 2 || hidden !== config.hiddenSize) {
    throw new LfmError(
      "TENSOR_SHAPE_MISMATCH",
      `feed_forward.w1.weight has shape [${w1Shape.join(", ")}], expected [ff, ${config.hiddenSize}] (hidden_size ${config.hiddenSize} in ${config.source}). ` +
        `The config.json probably does not match these weights.`,
    );
  }
  if (ff !== config.ffDim) {
    let rule = "used as is (block_auto_adjust_ff_dim is false)";
    if (config.ffAutoAdjust) {
      const twoThirds = Math.trunc((2 * config.intermediateSize) / 3);
      rule = `→ int(2·${config.intermediateSize}/3) = ${twoThirds}`;
      if (config.ffMultiplier !== null) rule += ` → int(${config.ffMultiplier}·${twoThirds}) = ${Math.trunc(config.ffMultiplier * twoThirds)}`;
      rule += ` → rounded up to a multiple of ${config.ffMultipleOf} = ${config.ffDim}`;
    }
    throw new LfmError(
      "TENSOR_SHAPE_MISMATCH",
      `The weights' feed-forward width is ${ff}, but ${config.source} gives ${config.ffDim}: ` +
        `FF width ${config.intermediateSize} ${rule} (block_auto_adjust_ff_dim rule). ` +
        `The config.json probably does not match these weights; use the config published with them.`,
    );
  }
  return ff;
}

/** Reads and parses `dir/config.json` (any model family); `FILE_NOT_FOUND` / `CONFIG_INVALID`. */
export function readConfigJson(dir: string): ConfigJson {
  return readJsonObject(path.join(dir, "config.json"), { hint: `Is ${dir} a model folder?` });
}

/** `dir/config.json` of an LFM2 text checkpoint as an `Lfm2Config`. */
export function loadLfm2Config(dir: string): Lfm2Config {
  return parseLfm2Config(readConfigJson(dir), path.join(dir, "config.json"));
}
