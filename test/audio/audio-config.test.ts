import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { depthformerFfDim, loadLfm2AudioConfig, parseLfm2AudioConfig, subsampledLength } from "../../audio/audio-config.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";

type Json = Record<string, unknown>;
const tinyRaw = () => readJson<Json>("audio/tiny-lfm2-audio/config.json");

/** LiquidAI/LFM2-Audio-1.5B's shapes (shared/real-configs/lfm2-audio-1.5b.config.json), trimmed. */
const REAL_SHAPE: Json = {
  architectures: ["Lfm2AudioForConditionalGeneration"],
  codebooks: 8,
  interleaved_n_text: 6,
  interleaved_n_audio: 12,
  preprocessor: { sample_rate: 16000, normalize: "per_feature", window_size: 0.025, window_stride: 0.01, window: "hann", features: 128, n_fft: 512, log: true, frame_splicing: 1, dither: 1e-5, pad_to: 0, pad_value: 0.0 },
  encoder: {
    feat_in: 128, feat_out: -1, n_layers: 17, d_model: 512, subsampling: "dw_striding", subsampling_factor: 8, subsampling_conv_channels: 256,
    causal_downsampling: false, reduction: null, reduction_position: null, reduction_factor: 1, ff_expansion_factor: 4, self_attention_model: "rel_pos",
    n_heads: 8, att_context_size: [-1, -1], xscaling: false, untie_biases: true, pos_emb_max_len: 5000, conv_kernel_size: 9, conv_norm_type: "batch_norm", conv_context_size: null,
  },
  lfm: {
    architectures: ["Lfm2ForCausalLM"], model_type: "lfm2", vocab_size: 65536, hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8,
    full_attn_idxs: [2, 5, 8, 10, 12, 14], block_ff_dim: 12288, block_auto_adjust_ff_dim: true, block_ffn_dim_multiplier: 1.0, block_multiple_of: 256, norm_eps: 1e-5,
    conv_L_cache: 3, rope_theta: 1000000.0, max_position_embeddings: 128000, tie_embedding: true, eos_token_id: 7, torch_dtype: "bfloat16",
  },
  depthformer: { layers: 6, dim: 1024, tie: true },
};

describe("liquid-audio config.json → Lfm2AudioConfig", () => {
  it("reads the tiny fixture's blocks and derives window, hop, widths and heads", () => {
    const c = loadLfm2AudioConfig(join(FIXTURES, "audio/tiny-lfm2-audio"));
    expect(c.preprocessor).toMatchObject({ sampleRateHz: 16000, windowSamples: 400, hopSamples: 160, nFft: 512, melBins: 128, window: "hann", normalize: "per_feature", preemphasis: 0.97, logGuard: 2 ** -24, padTo: 0, highFreqHz: 8000 });
    expect(c.encoder).toMatchObject({ featIn: 128, featOut: 32, dModel: 32, numLayers: 2, numHeads: 4, headDim: 8, ffDim: 128, subsamplingStages: 3, subsamplingChannels: 16, subsampledFeatures: 16, convContext: [4, 4], xscaling: false });
    expect(c.lfm).toMatchObject({ hiddenSize: 64, vocabSize: 1024, numLayers: 6, ffDim: 192 });
    expect(c.depthformer).toEqual({ layers: 2, dim: 128, tie: true, numHeads: 32, numKvHeads: 8, headDim: 4, ffDim: 512, normEps: 1e-5, ropeTheta: 1e6 });
    expect(c).toMatchObject({ codebooks: 8, audioVocabSize: 2049, endOfAudioCode: 2048, interleavedText: 6, interleavedAudio: 12 });
  });

  it("gives LFM2-Audio-1.5B's published shapes (legacy 4.5x keys in the lfm block)", () => {
    const c = parseLfm2AudioConfig(REAL_SHAPE, "real");
    expect(c.encoder).toMatchObject({ dModel: 512, numLayers: 17, numHeads: 8, headDim: 64, ffDim: 2048, subsamplingChannels: 256, subsampledFeatures: 16 });
    expect(c.lfm).toMatchObject({ hiddenSize: 2048, ffDim: 8192, attentionLayers: [2, 5, 8, 10, 12, 14], storageDtype: "bfloat16" });
    expect(c.depthformer).toMatchObject({ dim: 1024, headDim: 32, numKvHeads: 8, ffDim: 2816 });
  });

  it("runs the LM with bf16 rotary frequencies, as liquid-audio's bf16 load does, when the lfm block states no dtype", () => {
    expect(loadLfm2AudioConfig(join(FIXTURES, "audio/tiny-lfm2-audio")).lfm.storageDtype).toBe("bfloat16");
  });

  it("follows the published rules for derived sizes", () => {
    expect(depthformerFfDim(1024)).toBe(2816);
    expect(depthformerFfDim(128)).toBe(512);
    for (const T of [1, 2, 7, 8, 9, 450, 451, 1000]) expect(subsampledLength(T, 3)).toBe(Math.ceil(T / 8));
  });

  it("rejects a text-only config as UNKNOWN_ARCHITECTURE and bad values as CONFIG_INVALID naming the key", () => {
    expect(() => parseLfm2AudioConfig(readJson("text/tiny-lfm2/config.json"), "text")).toThrow(expect.objectContaining({ code: "UNKNOWN_ARCHITECTURE" }));
    const bad = (edit: (c: Json) => void) => {
      const raw = tinyRaw();
      edit(raw);
      return () => parseLfm2AudioConfig(raw, "cfg");
    };
    expect(bad((c) => ((c.encoder as Json).n_heads = 5))).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining("encoder.n_heads") }));
    expect(bad((c) => ((c.encoder as Json).subsampling = "striding"))).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining("encoder.subsampling") }));
    expect(bad((c) => ((c.encoder as Json).att_context_size = [64, 0]))).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }));
    expect(bad((c) => ((c.preprocessor as Json).n_fft = 300))).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining("n_fft") }));
    expect(bad((c) => ((c.preprocessor as Json).frame_splicing = 3))).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }));
    expect(bad((c) => ((c.depthformer as Json).dim = 100))).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining("depthformer.dim") }));
    expect(bad((c) => delete c.depthformer)).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining('"depthformer"') }));
  });
});
