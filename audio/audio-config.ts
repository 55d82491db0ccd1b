/**
 * liquid-audio `config.json` (LFM2-Audio) → one typed `Lfm2AudioConfig`: the mel front end
 * (`preprocessor`), the FastConformer (`encoder`), the LFM2 core (`lfm`, parsed by text-core) and
 * the depthformer (`depthformer`), plus the top-level codebook and interleaving settings.
 *
 * Matches `LFM2AudioConfig` / `PreprocessorConfig` / `ConformerEncoderConfig` / `DepthformerConfig`
 * in liquid-audio (`model/lfm2_audio.py`, `processor.py`). Keys the published config leaves out take
 * the defaults the liquid-audio code hard-wires (NeMo's mel defaults, the depthformer's `MHA`
 * defaults), so everything derived — window in samples, FF widths, head counts — is computed here,
 * once.
 */
import * as path from "node:path";
import { type ConfigJson, type Lfm2Config, parseLfm2Config, readConfigJson, textConfigOf } from "../text-core/config.ts";
import { ConfigFields, isObject } from "../text-core/config-fields.ts";
import { LfmError } from "../text-core/errors.ts";

/** NeMo `AudioToMelSpectrogramPreprocessor` as liquid-audio builds it from `config.preprocessor`. */
export interface MelFrontEndConfig {
  sampleRateHz: number;
  /** `int(window_size · sample_rate)`: 400 at 25 ms / 16 kHz. */
  windowSamples: number;
  /** `int(window_stride · sample_rate)`: 160 at 10 ms / 16 kHz. */
  hopSamples: number;
  /** FFT size (`n_fft`, else the next power of two above the window). */
  nFft: number;
  melBins: number;
  window: "hann" | "hamming" | "blackman" | "bartlett" | "none";
  /** "per_feature" (each mel bin over time), "all_features", or "none". */
  normalize: "per_feature" | "all_features" | "none";
  log: boolean;
  /** NeMo default 0.97; not a key of the published config. */
  preemphasis: number;
  lowFreqHz: number;
  highFreqHz: number;
  /** `log(x + guard)`: NeMo's default guard 2^-24, added (not clamped). */
  logGuard: number;
  /** Power the magnitude spectrum is raised to before the filterbank (NeMo default 2). */
  magPower: number;
  /** Dither amplitude; training only (the processor runs in eval mode), kept for completeness. */
  dither: number;
  /** Pads the frame count to a multiple of this (0: none). */
  padTo: number;
  padValue: number;
}

/** NeMo `ConformerEncoder` as liquid-audio instantiates it from `config.encoder`. */
export interface ConformerConfig {
  featIn: number;
  /** Output width: `feat_out` when > 0 and different from d_model (an extra projection), else d_model. */
  featOut: number;
  hasOutProjection: boolean;
  numLayers: number;
  dModel: number;
  subsampling: "dw_striding";
  subsamplingFactor: number;
  /** Number of stride-2 stages: log2(subsampling_factor). */
  subsamplingStages: number;
  subsamplingChannels: number;
  /** Frequency bins after the subsampling stages (the `pre_encode.out` input is channels × this). */
  subsampledFeatures: number;
  ffDim: number;
  numHeads: number;
  headDim: number;
  /** Scale the encoder input by sqrt(d_model) (liquid-audio: false). */
  xscaling: boolean;
  untieBiases: boolean;
  posEmbMaxLen: number;
  convKernelSize: number;
  /** Depthwise conv padding [left, right]. */
  convContext: [number, number];
  /** Norm eps of every LayerNorm and of the conv module's BatchNorm (PyTorch defaults). */
  normEps: number;
}

/** The depthformer: `RawLMBackbone` of `StandardBlock(MHA(dim))` with liquid-audio's code defaults. */
export interface DepthformerConfig {
  layers: number;
  dim: number;
  /** `depth_embeddings[k]` ties `to_logits` to `embedding` (config `tie`). */
  tie: boolean;
  /** `MHA` defaults: 32 query heads, GQA with 8 KV heads, head width dim / 32. */
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** SwiGLU width: 256 · ceil(int(2 · 4·dim / 3) / 256). */
  ffDim: number;
  normEps: number;
  ropeTheta: number;
}

export interface Lfm2AudioConfig {
  architecture: string;
  /** Mimi codebooks per audio frame (8). */
  codebooks: number;
  /** Codes per codebook including end-of-audio: 2048 + 1. */
  audioVocabSize: number;
  /** The end-of-audio code (2048). */
  endOfAudioCode: number;
  tieAudioEmbeddings: boolean;
  semanticCodebookFactor: number;
  codebookWeight: "log" | "linear";
  /** Interleaved generation: text tokens per turn, then audio frames per turn (6 / 12). */
  interleavedText: number;
  interleavedAudio: number;
  preprocessor: MelFrontEndConfig;
  encoder: ConformerConfig;
  lfm: Lfm2Config;
  depthformer: DepthformerConfig;
  source: string;
}

/** Token ids liquid-audio hard-codes (`model/lfm2_audio.py`). */
export const AUDIO_TOKENS = {
  imEnd: 7,
  audioStart: 128,
  textEnd: 130,
} as const;

/** Modality of each LM position (liquid-audio `LFMModality`). */
export const Modality = { TEXT: 1, AUDIO_IN: 2, AUDIO_OUT: 3 } as const;
export type Modality = (typeof Modality)[keyof typeof Modality];

const REMEDY = "Use the config.json published with the checkpoint.";

/** Typed reads of one block; messages name keys as "encoder.n_layers". */
function reader(raw: ConfigJson, source: string, where: string): ConfigFields {
  return new ConfigFields(raw, source, REMEDY, where);
}

function block(raw: ConfigJson, name: string, source: string): ConfigJson {
  const v = raw[name];
  if (!isObject(v)) {
    throw new LfmError(
      "CONFIG_INVALID",
      `${source}: the "${name}" block is missing or not an object; an LFM2-Audio (liquid-audio) config has "preprocessor", "encoder", "lfm" and "depthformer" blocks.`,
    );
  }
  return v;
}

export function parseMelFrontEndConfig(raw: ConfigJson, source: string): MelFrontEndConfig {
  const r = reader(raw, source, "preprocessor");
  const sampleRateHz = r.int("sample_rate", 16000);
  // NeMo: window_size/window_stride in seconds, or n_window_size/n_window_stride in samples.
  const windowSamples = r.get("n_window_size") !== undefined ? r.int("n_window_size") : Math.trunc(r.num("window_size", 0.02) * sampleRateHz);
  const hopSamples = r.get("n_window_stride") !== undefined ? r.int("n_window_stride") : Math.trunc(r.num("window_stride", 0.01) * sampleRateHz);
  if (windowSamples <= 0 || hopSamples <= 0) throw r.invalid("window_size", "gives an empty window or hop");
  const nFft = r.get("n_fft") !== undefined ? r.int("n_fft") : 2 ** Math.ceil(Math.log2(windowSamples));
  if (nFft < windowSamples) throw r.invalid("n_fft", `must be at least the window (${windowSamples} samples)`, nFft);
  if ((nFft & (nFft - 1)) !== 0) throw r.invalid("n_fft", "must be a power of two", nFft);
  const frameSplicing = r.int("frame_splicing", 1);
  if (frameSplicing !== 1) throw r.invalid("frame_splicing", "other than 1 is not supported (no published checkpoint uses it)", frameSplicing);
  if (r.bool("exact_pad", false)) throw r.invalid("exact_pad", "true is not supported (liquid-audio uses centred frames)");
  const guardType = r.oneOf("log_zero_guard_type", ["add", "clamp"] as const, "add");
  if (guardType !== "add") throw r.invalid("log_zero_guard_type", `"clamp" is not supported`, guardType);
  r.oneOf("mel_norm", ["slaney"] as const, "slaney"); // librosa's Slaney area norm is the only one implemented
  const normalize = r.get("normalize");
  let norm: MelFrontEndConfig["normalize"];
  if (normalize === "per_feature" || normalize === "all_features") norm = normalize;
  else if (normalize === undefined) norm = "per_feature";
  else if (normalize === false || normalize === "" || normalize === "none" || normalize === "NA") norm = "none";
  else throw r.invalid("normalize", `must be "per_feature", "all_features" or none`, normalize);
  const padTo = r.get("pad_to") === "max" ? -1 : r.int("pad_to", 16, 0);
  if (padTo < 0) throw r.invalid("pad_to", `"max" is not supported; use 0`);
  const highFreqHz = r.num("highfreq", sampleRateHz / 2);
  return {
    sampleRateHz,
    windowSamples,
    hopSamples,
    nFft,
    melBins: r.int("features", 64),
    window: r.oneOf("window", ["hann", "hamming", "blackman", "bartlett", "none"] as const, "hann"),
    normalize: norm,
    log: r.bool("log", true),
    preemphasis: r.num("preemph", 0.97, { positive: false }),
    lowFreqHz: r.num("lowfreq", 0, { positive: false }),
    highFreqHz,
    logGuard: r.num("log_zero_guard_value", 2 ** -24),
    magPower: r.num("mag_power", 2),
    dither: r.num("dither", 1e-5, { positive: false }),
    padTo,
    padValue: r.num("pad_value", 0, { positive: false }),
  };
}

/** `calc_length` of NeMo's subsampling (kernel 3, stride 2, padding 1 each side, floor), `stages` times. */
export function subsampledLength(length: number, stages: number): number {
  let n = length;
  for (let i = 0; i < stages; i++) n = Math.floor((n + 2 - 3) / 2) + 1;
  return n;
}

export function parseConformerConfig(raw: ConfigJson, source: string): ConformerConfig {
  const r = reader(raw, source, "encoder");
  const featIn = r.int("feat_in");
  const dModel = r.int("d_model");
  const numHeads = r.int("n_heads", 4);
  if (dModel % numHeads !== 0) throw r.invalid("n_heads", `must divide d_model ${dModel}`, numHeads);
  const subsampling = r.oneOf("subsampling", ["dw_striding"] as const, "dw_striding");
  const subsamplingFactor = r.int("subsampling_factor", 4);
  const subsamplingStages = Math.round(Math.log2(subsamplingFactor));
  if (2 ** subsamplingStages !== subsamplingFactor || subsamplingStages < 1) {
    throw r.invalid("subsampling_factor", "must be a power of two ≥ 2", subsamplingFactor);
  }
  if (r.bool("causal_downsampling", false)) throw r.invalid("causal_downsampling", "true is not supported (liquid-audio: false)");
  r.oneOf("self_attention_model", ["rel_pos"] as const, "rel_pos");
  const context = r.get("att_context_size");
  if (context !== undefined) {
    const flat = Array.isArray(context) && Array.isArray(context[0]) ? context[0] : context;
    if (!Array.isArray(flat) || flat.length !== 2 || flat.some((c) => c !== -1)) {
      throw r.invalid("att_context_size", "other than [-1, -1] (full context) is not supported", context);
    }
  }
  const reduction = r.get("reduction");
  if (reduction !== undefined && r.int("reduction_factor", 1) > 1) throw r.invalid("reduction", "is not supported", reduction);
  r.oneOf("conv_norm_type", ["batch_norm"] as const, "batch_norm");
  const kernel = r.int("conv_kernel_size", 31);
  let convContext: [number, number];
  const cc = r.get("conv_context_size");
  if (cc === undefined) {
    if (kernel % 2 === 0) throw r.invalid("conv_kernel_size", "must be odd for a centred convolution", kernel);
    convContext = [(kernel - 1) / 2, (kernel - 1) / 2];
  } else if (cc === "causal") {
    convContext = [kernel - 1, 0];
  } else if (Array.isArray(cc) && cc.length === 2 && cc.every((c) => Number.isSafeInteger(c) && c >= 0) && cc[0] + cc[1] + 1 === kernel) {
    convContext = [cc[0], cc[1]];
  } else {
    throw r.invalid("conv_context_size", `must be null, "causal" or [left, right] with left + right + 1 = conv_kernel_size`, cc);
  }
  const featOutRaw = r.get("feat_out") === undefined ? -1 : r.num("feat_out", -1, { positive: false });
  const hasOutProjection = featOutRaw > 0 && featOutRaw !== dModel;
  const channelsRaw = r.get("subsampling_conv_channels") === undefined ? -1 : r.num("subsampling_conv_channels", -1, { positive: false });
  return {
    featIn,
    featOut: hasOutProjection ? featOutRaw : dModel,
    hasOutProjection,
    numLayers: r.int("n_layers"),
    dModel,
    subsampling,
    subsamplingFactor,
    subsamplingStages,
    subsamplingChannels: channelsRaw === -1 ? dModel : Math.trunc(channelsRaw),
    subsampledFeatures: subsampledLength(featIn, subsamplingStages),
    ffDim: dModel * r.int("ff_expansion_factor", 4),
    numHeads,
    headDim: dModel / numHeads,
    xscaling: r.bool("xscaling", true),
    untieBiases: r.bool("untie_biases", true),
    posEmbMaxLen: r.int("pos_emb_max_len", 5000),
    convKernelSize: kernel,
    convContext,
    normEps: 1e-5,
  };
}

/** liquid-audio `GLU` width rule with its defaults (ff = 4·dim, multiple_of 256, multiplier 1.0). */
export function depthformerFfDim(dim: number): number {
  const ff = Math.trunc((2 * 4 * dim) / 3);
  return 256 * Math.ceil(ff / 256);
}

export function parseDepthformerConfig(raw: ConfigJson, source: string): DepthformerConfig {
  const r = reader(raw, source, "depthformer");
  const dim = r.int("dim");
  const numHeads = 32;
  if (dim % numHeads !== 0) throw r.invalid("dim", `must be a multiple of ${numHeads} (the depthformer's fixed head count)`, dim);
  return {
    layers: r.int("layers"),
    dim,
    tie: r.bool("tie", true),
    numHeads,
    numKvHeads: 8,
    headDim: dim / numHeads,
    ffDim: depthformerFfDim(dim),
    normEps: 1e-5,
    ropeTheta: 1_000_000,
  };
}

/**
 * The LM block. liquid-audio loads the whole model in bfloat16 (`from_pretrained(dtype=bf16)` casts
 * buffers too), so the rotary `inv_freq` the LM runs with is bf16-rounded even when the `lfm` block
 * states no dtype — the same reason the conformer's position table is rounded (fastconformer.ts).
 */
function lfmConfigOf(lfmRaw: ConfigJson, source: string): Lfm2Config {
  const config = parseLfm2Config(lfmRaw, `${source} ("lfm" block)`);
  return { ...config, storageDtype: config.storageDtype ?? "bfloat16" };
}

/** Parses a liquid-audio `config.json` object; `source` names it in messages. */
export function parseLfm2AudioConfig(raw: unknown, source: string): Lfm2AudioConfig {
  if (!isObject(raw)) throw new LfmError("CONFIG_INVALID", `${source} is not a JSON object.`);
  if (!isObject(raw.encoder) && !isObject(raw.preprocessor)) {
    throw new LfmError(
      "UNKNOWN_ARCHITECTURE",
      `${source} is not an LFM2-Audio (liquid-audio) config: it has no "preprocessor"/"encoder" blocks. Text checkpoints load with loadModel.`,
    );
  }
  const r = reader(raw, source, "");
  const archs = Array.isArray(raw.architectures) ? raw.architectures.filter((a): a is string => typeof a === "string") : [];
  const lfmRaw = textConfigOf({ lfm: block(raw, "lfm", source) }, `${source} ("lfm" block)`);
  const codebooks = r.int("codebooks", 8);
  return {
    architecture: archs[0] ?? "LFM2AudioModel",
    codebooks,
    audioVocabSize: 2048 + 1,
    endOfAudioCode: 2048,
    tieAudioEmbeddings: r.bool("tie_audio_embeddings", false),
    semanticCodebookFactor: r.num("semantic_codebook_factor", 100),
    codebookWeight: r.oneOf("codebook_weight", ["log", "linear"] as const, "log"),
    interleavedText: r.int("interleaved_n_text", 6),
    interleavedAudio: r.int("interleaved_n_audio", 12),
    preprocessor: parseMelFrontEndConfig(block(raw, "preprocessor", source), source),
    encoder: parseConformerConfig(block(raw, "encoder", source), source),
    lfm: lfmConfigOf(lfmRaw, source),
    depthformer: parseDepthformerConfig(block(raw, "depthformer", source), source),
    source,
  };
}

/** `dir/config.json` of a liquid-audio checkpoint folder. */
export function loadLfm2AudioConfig(dir: string): Lfm2AudioConfig {
  return parseLfm2AudioConfig(readConfigJson(dir), path.join(dir, "config.json"));
}

/** True when `raw` looks like a liquid-audio config (for loaders that accept several families). */
export function isLfm2AudioConfig(raw: unknown): boolean {
  return isObject(raw) && isObject(raw.lfm) && (isObject(raw.encoder) || isObject(raw.preprocessor));
}
