import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  checkFfDimAgainstWeights,
  effectiveFfDim,
  loadLfm2Config,
  parseLfm2Config,
  readConfigJson,
  textConfigOf,
} from "../../text-core/config.ts";
import { expectCode } from "../helpers/errors.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";

const TINY_DIR = "fixtures/text/tiny-lfm2";

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
}

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "lfm-config-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

describe("effectiveFfDim", () => {
  it("follows the published rule (llama.cpp / first HF port)", () => {
    expect(effectiveFfDim(6656, true, 1.0, 256)).toBe(4608);
    expect(effectiveFfDim(10240, true, 1.0, 256)).toBe(6912);
    expect(effectiveFfDim(12288, true, 1.0, 256)).toBe(8192);
    expect(effectiveFfDim(256, true, 1.0, 32)).toBe(192);
    expect(effectiveFfDim(256, true, null, 32)).toBe(192); // rounds up even without a multiplier
    expect(effectiveFfDim(10752, false, 1.0, 256)).toBe(10752);
    expect(effectiveFfDim(300, true, 1.5, 64)).toBe(320); // int(2*300/3)=200 → int(1.5*200)=300 → 320
  });
});

describe("parseLfm2Config", () => {
  it("reads the tiny fixture (5.x keys) with effective FF 192, matching its weights", () => {
    const config = loadLfm2Config(TINY_DIR);
    expect(config).toMatchObject({
      architecture: "Lfm2ForCausalLM",
      vocabSize: 1024,
      hiddenSize: 64,
      numLayers: 6,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      layerTypes: ["conv", "conv", "full_attention", "conv", "full_attention", "conv"],
      attentionLayers: [2, 4],
      ffDim: 192,
      intermediateSize: 256,
      convLCache: 3,
      convBias: false,
      normEps: 1e-5,
      ropeTheta: 1e6,
      maxPositionEmbeddings: 4096,
      tieEmbeddings: true,
      bosTokenId: 1,
      eosTokenIds: [7],
      padTokenId: 0,
      storageDtype: "bfloat16",
    });
    const ckpt = Checkpoint.open(TINY_DIR);
    try {
      for (let i = 0; i < config.numLayers; i++) {
        const w1 = ckpt.info(`model.layers.${i}.feed_forward.w1.weight`).shape;
        expect(checkFfDimAgainstWeights(config, w1)).toBe(192);
      }
      expect(ckpt.info("model.layers.2.self_attn.k_proj.weight").shape).toEqual([config.numKvHeads * config.headDim, config.hiddenSize]);
    } finally {
      ckpt.close();
    }
  });

  it.each([
    ["lfm2-350m", 1024, 16, 4608],
    ["lfm2-700m", 1536, 24, 6912],
    ["lfm2-1.2b", 2048, 32, 8192],
  ])("reads the published %s config (4.5x keys)", (name, hidden, heads, ff) => {
    const config = parseLfm2Config(readJson(`fixtures/real-configs/${name}.config.json`), `${name}.config.json`);
    expect(config).toMatchObject({
      architecture: "Lfm2ForCausalLM",
      vocabSize: 65536,
      hiddenSize: hidden,
      numLayers: 16,
      numHeads: heads,
      numKvHeads: 8,
      headDim: 64,
      attentionLayers: [2, 5, 8, 10, 12, 14],
      ffDim: ff,
      ropeTheta: 1e6,
      tieEmbeddings: true,
      eosTokenIds: [7],
      maxPositionEmbeddings: 128000,
      storageDtype: "bfloat16",
    });
    expect(config.layerTypes.filter((t) => t === "conv")).toHaveLength(10);
    expect(checkFfDimAgainstWeights(config, [ff, hidden])).toBe(ff);
  });

  it("prefers layer_types over full_attn_idxs, and makes every layer attention when both are absent", () => {
    const base = readJson(`${TINY_DIR}/config.json`);
    const both = parseLfm2Config({ ...base, full_attn_idxs: [0, 1] }, "both");
    expect(both.attentionLayers).toEqual([2, 4]);
    const legacy = parseLfm2Config({ ...base, layer_types: null, full_attn_idxs: [0, 5] }, "legacy");
    expect(legacy.layerTypes).toEqual(["full_attention", "conv", "conv", "conv", "conv", "full_attention"]);
    const neither = parseLfm2Config({ ...base, layer_types: undefined, full_attn_idxs: null }, "neither");
    expect(neither.attentionLayers).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("applies the legacy-key precedences of transformers", () => {
    const base = readJson(`${TINY_DIR}/config.json`);
    const c = parseLfm2Config(
      {
        ...base,
        block_ff_dim: 384, // wins over intermediate_size
        tie_embedding: false, // wins over tie_word_embeddings
        rope_parameters: undefined,
        rope_theta: 10000,
        eos_token_id: [7, 2],
      },
      "legacy",
    );
    expect(c.intermediateSize).toBe(384);
    expect(c.ffDim).toBe(256);
    expect(c.tieEmbeddings).toBe(false);
    expect(c.ropeTheta).toBe(10000);
    expect(c.eosTokenIds).toEqual([7, 2]);
    expect(parseLfm2Config({ ...base, rope_parameters: { theta: 5e5 } }, "theta").ropeTheta).toBe(5e5);
    expect(
      parseLfm2Config({ ...base, rope_parameters: { full_attention: { rope_theta: 2e6, rope_type: "default" }, conv: null } }, "per-type").ropeTheta,
    ).toBe(2e6);
    expect(parseLfm2Config({ ...base, rope_parameters: undefined }, "default").ropeTheta).toBe(1e6);
    expect(parseLfm2Config({ ...base, block_auto_adjust_ff_dim: false }, "no-adjust").ffDim).toBe(256);
  });

  it("rejects anything that is not dense LFM2 with UNKNOWN_ARCHITECTURE", () => {
    expectCode(
      () => parseLfm2Config({ model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: 64 }, "llama/config.json"),
      "UNKNOWN_ARCHITECTURE",
      "llama/config.json",
      `"llama"`,
      "LlamaForCausalLM",
      "Lfm2ForCausalLM",
    );
    expectCode(
      () => parseLfm2Config({ model_type: "lfm2_moe", architectures: ["Lfm2MoeForCausalLM"] }, "moe"),
      "UNKNOWN_ARCHITECTURE",
      "lfm2_moe",
      "not supported yet",
    );
    expectCode(() => parseLfm2Config({}, "empty"), "UNKNOWN_ARCHITECTURE", "neither model_type nor architectures");
    expectCode(
      () => parseLfm2Config(readJson("fixtures/vision/tiny-lfm2-vl/config.json"), "vl"),
      "UNKNOWN_ARCHITECTURE",
      "lfm2_vl",
      "text_config",
    );
  });

  it.each<[string, Record<string, unknown>, string]>([
    ["a missing size", { hidden_size: undefined }, `"hidden_size" is required`],
    ["a non-positive size", { vocab_size: 0 }, `"vocab_size" must be a positive integer`],
    ["a fractional size", { num_hidden_layers: 6.5 }, `"num_hidden_layers"`],
    ["heads not dividing hidden", { num_attention_heads: 3, num_key_value_heads: 1 }, `"num_attention_heads" must divide hidden_size 64`],
    ["kv heads not dividing heads", { num_key_value_heads: 3 }, `"num_key_value_heads" must divide`],
    ["layer_types of the wrong length", { layer_types: ["conv", "full_attention"] }, `"layer_types" has 2 entries but num_hidden_layers is 6`],
    ["an unknown layer type", { layer_types: ["conv", "conv", "sliding_attention", "conv", "conv", "conv"] }, `"layer_types" entry 2`],
    ["full_attn_idxs out of range", { layer_types: null, full_attn_idxs: [2, 9] }, `"full_attn_idxs"`],
    ["a missing FF width", { intermediate_size: undefined }, `"intermediate_size" is required`],
    ["a bad norm_eps", { norm_eps: -1 }, `"norm_eps" must be a positive number`],
    ["a bad eos id", { eos_token_id: "7" }, `"eos_token_id"`],
    ["a non-boolean flag", { conv_bias: "no" }, `"conv_bias" must be true or false`],
    ["unsupported RoPE scaling", { rope_parameters: { rope_theta: 1e6, rope_type: "yarn" } }, `rope_type`],
    ["widths other than hidden_size", { block_dim: 128 }, `"block_dim"`],
  ])("rejects %s with CONFIG_INVALID naming the key", (_, patch, message) => {
    const base = readJson(`${TINY_DIR}/config.json`);
    expectCode(() => parseLfm2Config({ ...base, ...patch }, "bad/config.json"), "CONFIG_INVALID", "bad/config.json", message);
  });

  it("falls back to the 4.5x duplicates num_heads and block_norm_eps, and torch_dtype", () => {
    const base = readJson("fixtures/real-configs/lfm2-350m.config.json");
    const c = parseLfm2Config({ ...base, num_attention_heads: undefined, norm_eps: undefined, block_norm_eps: 1e-6 }, "legacy");
    expect(c).toMatchObject({ numHeads: 16, headDim: 64, normEps: 1e-6, storageDtype: "bfloat16" });
  });

  it("uses head_dim when the config states it", () => {
    const base = readJson(`${TINY_DIR}/config.json`);
    expect(parseLfm2Config({ ...base, num_attention_heads: 3, num_key_value_heads: 1, head_dim: 32 }, "hd").headDim).toBe(32);
  });
});

describe("textConfigOf", () => {
  it("returns text_config of the LFM2-VL fixture", () => {
    const raw = readJson("fixtures/vision/tiny-lfm2-vl/config.json");
    const config = parseLfm2Config(textConfigOf(raw), "vl text_config");
    expect(config).toMatchObject({ architecture: "lfm2", hiddenSize: 64, ffDim: 192, attentionLayers: [2, 4] });
  });

  it("returns the lfm block of the LFM2-Audio fixture (it names no architecture)", () => {
    const raw = readJson("fixtures/audio/tiny-lfm2-audio/config.json");
    const config = parseLfm2Config(textConfigOf(raw), "audio lfm");
    expect(config).toMatchObject({ hiddenSize: 64, numLayers: 6, ffDim: 192, eosTokenIds: [7] });
  });

  it("returns a plain LFM2 config itself, and the LFM2-ColBERT backbone (Lfm2Model)", () => {
    const raw = readJson(`${TINY_DIR}/config.json`);
    expect(textConfigOf(raw)).toBe(raw);
    const colbert = parseLfm2Config(textConfigOf(readJson("fixtures/retrieval/tiny-lfm2-colbert/config.json")), "colbert");
    expect(colbert).toMatchObject({ architecture: "Lfm2Model", vocabSize: 1026 });
  });

  it("throws UNKNOWN_ARCHITECTURE when nothing inside is LFM2", () => {
    expectCode(() => textConfigOf({ model_type: "llava", text_config: { model_type: "llama" } }), "UNKNOWN_ARCHITECTURE", "llava");
  });
});

describe("checkFfDimAgainstWeights", () => {
  it("explains both numbers when the weights disagree with the rule", () => {
    const config = loadLfm2Config(TINY_DIR);
    expectCode(
      () => checkFfDimAgainstWeights(config, [256, 64]),
      "TENSOR_SHAPE_MISMATCH",
      "256",
      "192",
      "int(2·256/3) = 170",
      "multiple of 32 = 192",
    );
    expectCode(() => checkFfDimAgainstWeights(config, [192, 128]), "TENSOR_SHAPE_MISMATCH", "hidden_size 64");
  });
});

describe("loadLfm2Config", () => {
  it("FILE_NOT_FOUND without config.json, CONFIG_INVALID for bad JSON", () => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, "d"));
    expectCode(() => loadLfm2Config(dir), "FILE_NOT_FOUND", "config.json");
    fs.writeFileSync(path.join(dir, "config.json"), "{ nope");
    expectCode(() => loadLfm2Config(dir), "CONFIG_INVALID", "not valid JSON");
    fs.writeFileSync(path.join(dir, "config.json"), "[]");
    expectCode(() => readConfigJson(dir), "CONFIG_INVALID", "not a JSON object");
  });
});
