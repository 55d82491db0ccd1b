/**
 * Mimi codec settings: moshi's `get_mimi` constructor arguments (`seanet`, `quantizer`,
 * `transformer`, rates) → one typed `MimiConfig`. A folder may carry them as `config.json` (the
 * tiny fixture does); Kyutai's published checkpoint (`tokenizer-e351c8d8-checkpoint125.safetensors`,
 * shipped inside the LFM2-Audio folder) has none, and then moshi's hard-wired `_mimi_config`
 * applies (`moshi/models/loaders.py`).
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { type ConfigJson, ConfigFields, isObject } from "../text-core/config-fields.ts";
import { LfmError } from "../text-core/errors.ts";
import { SafetensorsFile } from "../text-core/safetensors.ts";

/** `SEANetDecoder` arguments (the encoder shares them). */
export interface SeanetConfig {
  channels: number;
  /** Latent width at the SEANet boundary (512 in Kyutai's Mimi). */
  dimension: number;
  nFilters: number;
  nResidualLayers: number;
  /** Decoder order: upsampling ratios from the latent to the waveform ([8, 6, 5, 4]). */
  ratios: number[];
  kernelSize: number;
  residualKernelSize: number;
  lastKernelSize: number;
  dilationBase: number;
  compress: number;
  trueSkip: boolean;
  /** Causal convolutions see zeros before the start (moshi "constant"; "replicate" is not supported). */
  padMode: "constant";
  /** "weight_norm" checkpoints are folded into plain weights when the graph is built. */
  norm: "none" | "weight_norm";
  /** ELU alpha (moshi: `activation_params={"alpha": 1.0}`). */
  eluAlpha: number;
}

export interface MimiQuantizerConfig {
  /** Codebook vector width (256). */
  dimension: number;
  /** Codebooks stored (32); decoding uses the first `MimiConfig.numCodebooks`. */
  nQ: number;
  nQSemantic: number;
  /** Codes per codebook (2048). */
  bins: number;
  inputDimension: number;
  outputDimension: number;
}

export interface MimiTransformerConfig {
  dModel: number;
  numHeads: number;
  numLayers: number;
  /** Each step attends to itself and the `context - 1` steps before it. */
  context: number;
  maxPeriod: number;
  layerScale: number | null;
  dimFeedforward: number;
  inputDimension: number;
  outputDimension: number;
}

export interface MimiConfig {
  sampleRateHz: number;
  frameRateHz: number;
  /** Codebooks per frame that are decoded (LFM2-Audio: 8). */
  numCodebooks: number;
  seanet: SeanetConfig;
  quantizer: MimiQuantizerConfig;
  transformer: MimiTransformerConfig;
  /** SEANet hop: product of the ratios (960 samples per latent step). */
  hopLength: number;
  /** Latent steps per code frame: encoder frame rate / frame rate (2). */
  upsampleStride: number;
  /** Waveform samples per code frame (1920). */
  samplesPerFrame: number;
  source: string;
}

/** moshi `loaders._mimi_config` (Kyutai's Mimi), with LFM2-Audio's `set_num_codebooks(8)`. */
export const KYUTAI_MIMI_CONFIG = {
  sample_rate: 24000,
  frame_rate: 12.5,
  num_codebooks: 8,
  seanet: {
    channels: 1,
    dimension: 512,
    causal: true,
    n_filters: 64,
    n_residual_layers: 1,
    activation: "ELU",
    compress: 2,
    dilation_base: 2,
    disable_norm_outer_blocks: 0,
    kernel_size: 7,
    residual_kernel_size: 3,
    last_kernel_size: 3,
    norm: "none",
    pad_mode: "constant",
    ratios: [8, 6, 5, 4],
    true_skip: true,
  },
  quantizer: { dimension: 256, n_q: 32, bins: 2048, input_dimension: 512, output_dimension: 512 },
  transformer: {
    d_model: 512,
    num_heads: 8,
    num_layers: 8,
    causal: true,
    layer_scale: 0.01,
    context: 250,
    conv_layout: true,
    max_period: 10000,
    gating: "none",
    norm: "layer_norm",
    positional_embedding: "rope",
    dim_feedforward: 2048,
    input_dimension: 512,
    output_dimensions: [512],
  },
} as const;

const REMEDY = "Use moshi's Mimi settings (or no config.json for Kyutai's Mimi).";

/** `raw` over moshi's values; a key set to null is unset and takes moshi's value (config-fields.ts). */
function overDefaults(defaults: object, raw: ConfigJson): ConfigJson {
  return { ...defaults, ...Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== null)) };
}

/** Parses moshi-style Mimi settings; keys left out take Kyutai's values. */
export function parseMimiConfig(raw: unknown, source: string): MimiConfig {
  if (!isObject(raw)) throw new LfmError("CONFIG_INVALID", `${source}: a Mimi config must be a JSON object.`);
  const defaults = KYUTAI_MIMI_CONFIG;
  const transformerRaw = isObject(raw.transformer) ? raw.transformer : {};
  const s = new ConfigFields(overDefaults(defaults.seanet, isObject(raw.seanet) ? raw.seanet : {}), source, REMEDY, "seanet");
  const q = new ConfigFields(overDefaults(defaults.quantizer, isObject(raw.quantizer) ? raw.quantizer : {}), source, REMEDY, "quantizer");
  const t = new ConfigFields(overDefaults(defaults.transformer, transformerRaw), source, REMEDY, "transformer");
  const top = new ConfigFields(overDefaults(defaults, raw), source, REMEDY);

  s.fixed("activation", "ELU", "Mimi uses ELU");
  s.fixed("causal", true, "streaming decoding needs causal convolutions");
  const ratios = s.get("ratios");
  if (!Array.isArray(ratios) || ratios.length === 0 || ratios.some((r) => !Number.isSafeInteger(r) || r < 1)) {
    throw s.invalid("ratios", "must be a non-empty list of positive integers", ratios);
  }
  s.fixed("pad_mode", "constant", "Mimi pads with zeros");
  const norm = s.oneOf("norm", ["none", "weight_norm"] as const);
  const activationParams = s.get("activation_params");
  const eluAlpha = isObject(activationParams) && typeof activationParams.alpha === "number" ? activationParams.alpha : 1.0;
  const seanet: SeanetConfig = {
    channels: s.int("channels", 1),
    dimension: s.int("dimension", 512),
    nFilters: s.int("n_filters", 64),
    nResidualLayers: s.int("n_residual_layers", 1, 0),
    ratios: ratios as number[],
    kernelSize: s.int("kernel_size", 7),
    residualKernelSize: s.int("residual_kernel_size", 3),
    lastKernelSize: s.int("last_kernel_size", 3),
    dilationBase: s.int("dilation_base", 2),
    compress: s.int("compress", 2),
    trueSkip: s.bool("true_skip", true),
    padMode: "constant",
    norm,
    eluAlpha,
  };
  if (seanet.channels !== 1) throw s.invalid("channels", "other than 1 (mono) is not supported", seanet.channels);

  t.fixed("causal", true, "Mimi's decoder transformer is causal");
  t.fixed("gating", "none", "Mimi uses a GELU feed-forward");
  t.fixed("norm", "layer_norm", "Mimi uses LayerNorm");
  t.fixed("positional_embedding", "rope", "Mimi uses interleaved RoPE");
  t.fixed("conv_layout", true, "Mimi's transformer runs on [B, C, T]");
  t.fixed("kv_repeat", 1, "Mimi has no grouped KV heads");
  const outputs = t.get("output_dimensions");
  if (!Array.isArray(outputs) || outputs.length !== 1 || !Number.isSafeInteger(outputs[0])) {
    throw t.invalid("output_dimensions", "must hold exactly one width", outputs);
  }
  // Here null means something: moshi's layer_scale=None is "no LayerScale" (absent is Kyutai's 0.01).
  const layerScale = transformerRaw.layer_scale === null ? null : t.num("layer_scale");
  const transformer: MimiTransformerConfig = {
    dModel: t.int("d_model", 512),
    numHeads: t.int("num_heads", 8),
    numLayers: t.int("num_layers", 8, 0),
    context: t.int("context", 250),
    maxPeriod: t.num("max_period", 10000),
    layerScale,
    dimFeedforward: t.int("dim_feedforward", 2048),
    inputDimension: t.int("input_dimension", seanet.dimension),
    outputDimension: outputs[0] as number,
  };
  if (transformer.dModel % transformer.numHeads !== 0 || (transformer.dModel / transformer.numHeads) % 2 !== 0) {
    throw t.invalid("num_heads", `must divide d_model ${transformer.dModel} into even head widths`, transformer.numHeads);
  }
  if (transformer.inputDimension !== seanet.dimension || transformer.outputDimension !== seanet.dimension) {
    throw t.invalid("input_dimension", `and output_dimensions must equal seanet.dimension ${seanet.dimension}`, transformer.inputDimension);
  }

  const quantizer: MimiQuantizerConfig = {
    dimension: q.int("dimension", 256),
    nQ: q.int("n_q", 32, 2),
    nQSemantic: q.int("n_q_semantic", 1),
    bins: q.int("bins", 2048),
    inputDimension: q.int("input_dimension", seanet.dimension),
    outputDimension: q.int("output_dimension", seanet.dimension),
  };
  if (quantizer.outputDimension !== seanet.dimension) {
    throw q.invalid("output_dimension", `must equal seanet.dimension ${seanet.dimension}`, quantizer.outputDimension);
  }
  if (quantizer.nQSemantic >= quantizer.nQ) throw q.invalid("n_q_semantic", `must be below n_q ${quantizer.nQ}`, quantizer.nQSemantic);

  const sampleRateHz = top.int("sample_rate", 24000);
  const frameRateHz = top.num("frame_rate", 12.5);
  const numCodebooks = top.int("num_codebooks", 8);
  if (numCodebooks > quantizer.nQ || numCodebooks < quantizer.nQSemantic) {
    throw top.invalid("num_codebooks", `must be between n_q_semantic ${quantizer.nQSemantic} and n_q ${quantizer.nQ}`, numCodebooks);
  }
  const hopLength = seanet.ratios.reduce((a, b) => a * b, 1);
  const upsampleStride = sampleRateHz / hopLength / frameRateHz;
  if (!Number.isSafeInteger(upsampleStride) || upsampleStride < 1) {
    throw top.invalid("frame_rate", `must divide the SEANet rate ${sampleRateHz / hopLength} Hz by an integer`, frameRateHz);
  }
  return {
    sampleRateHz,
    frameRateHz,
    numCodebooks,
    seanet,
    quantizer,
    transformer,
    hopLength,
    upsampleStride,
    samplesPerFrame: hopLength * upsampleStride,
    source,
  };
}

/** Kyutai's Mimi weights inside an LFM2-Audio folder (liquid-audio `LFM2AudioProcessor`). */
export const KYUTAI_MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors";
/** A tensor every Mimi checkpoint has (the decoder's first convolution). */
const MIMI_MARKER = "decoder.model.0.conv.conv.weight";

export interface MimiFiles {
  weights: string;
  config: MimiConfig;
}

/**
 * Finds the Mimi weights and settings at `path`: a `.safetensors` file, or a folder holding
 * `mimi.safetensors`, Kyutai's file, or another safetensors file with Mimi's tensors. The folder's
 * `config.json` is used when it is a Mimi config (it has a `seanet` block); an LFM2-Audio
 * `config.json` beside Kyutai's file is not, and Kyutai's settings apply.
 */
export function locateMimi(path: string): MimiFiles {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new LfmError("FILE_NOT_FOUND", `no Mimi codec at ${path}: the path does not exist. Pass the LFM2-Audio folder (it ships ${KYUTAI_MIMI_FILE}) or a Mimi folder/file.`);
  }
  const dir = stat.isDirectory() ? path : dirname(path);
  let weights: string | undefined;
  if (!stat.isDirectory()) {
    weights = path;
  } else {
    const candidates = ["mimi.safetensors", KYUTAI_MIMI_FILE];
    weights = candidates.map((f) => join(path, f)).find((f) => existsSync(f));
    if (!weights) {
      const others = readdirSync(path).filter((f) => f.endsWith(".safetensors")).sort();
      weights = others.map((f) => join(path, f)).find((f) => holdsMimi(f));
    }
    if (!weights) {
      throw new LfmError(
        "FILE_NOT_FOUND",
        `${path} holds no Mimi weights (looked for mimi.safetensors, ${KYUTAI_MIMI_FILE}, or a safetensors file with "${MIMI_MARKER}"). ` +
          `Download Kyutai's Mimi file with the LFM2-Audio checkpoint and pass that folder (or --mimi DIR).`,
      );
    }
  }
  const configPath = join(dir, "config.json");
  let config: MimiConfig | undefined;
  if (existsSync(configPath)) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(configPath, "utf8"));
    } catch (e) {
      throw new LfmError("CONFIG_INVALID", `${configPath} is not valid JSON: ${(e as Error).message}`);
    }
    if (isObject(raw) && isObject(raw.seanet)) config = parseMimiConfig(raw, configPath);
  }
  return { weights, config: config ?? parseMimiConfig({}, `Kyutai's Mimi settings (for ${basename(weights)})`) };
}

function holdsMimi(file: string): boolean {
  try {
    const f = SafetensorsFile.open(file);
    try {
      return f.has(MIMI_MARKER);
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
}
