/** The one typed config reader: null is "not set" everywhere, and every failure names file and key. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseLfm2AudioConfig } from "../../audio/audio-config.ts";
import { parseMimiConfig } from "../../audio/mimi-config.ts";
import { parsePylateSettings } from "../../retrieval/pylate-config.ts";
import { ConfigFields, readJsonObject } from "../../text-core/config-fields.ts";
import { parseLfm2Config } from "../../text-core/config.ts";
import { parseImageProcessorConfig } from "../../vision/processor-config.ts";
import { parseLfm2VlConfig } from "../../vision/vl-config.ts";
import { readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

type Json = Record<string, unknown>;

describe("ConfigFields", () => {
  const f = new ConfigFields({ a: 3, n: null, s: "x", flag: "yes", block: { depth: 0 } }, "dir/config.json", "Use the published file.");

  it("treats null exactly as an absent key: fallback when given, required otherwise", () => {
    expect(f.int("n", 7)).toBe(7);
    expect(f.bool("n", true)).toBe(true);
    expect(f.str("n", "d")).toBe("d");
    expect(f.has("n")).toBe(false);
    expect(f.get("n")).toBeUndefined();
    expect(expectCode(() => f.int("n"), "CONFIG_INVALID").message).toBe(`dir/config.json: "n" is required. Use the published file.`);
  });

  it("names file, key (with its block) and the value found", () => {
    expect(expectCode(() => f.bool("flag"), "CONFIG_INVALID").message).toBe(`dir/config.json: "flag" must be true or false, found "yes". Use the published file.`);
    expectCode(() => f.block("block").int("depth"), "CONFIG_INVALID", `"block.depth" must be a positive integer, found 0`);
    expect(f.block("block").int("depth", undefined, 0)).toBe(0);
    expectCode(() => f.int("s", undefined, -Infinity), "CONFIG_INVALID", `"s" must be an integer, found "x"`);
    expectCode(() => f.oneOf("s", ["y", "z"] as const), "CONFIG_INVALID", `"s" must be one of "y", "z"`);
    expectCode(() => f.fixed("s", "y", "only y is built"), "CONFIG_INVALID", `"s" other than "y" is not supported (only y is built)`);
    expectCode(() => f.block("a"), "CONFIG_INVALID", `"a" must be an object, found 3`);
  });
});

describe("readJsonObject", () => {
  const dir = mkdtempSync(join(tmpdir(), "lfm-config-fields-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("FILE_NOT_FOUND (or undefined when optional), then the invalid code for bad JSON or a non-object", () => {
    const file = join(dir, "x.json");
    expectCode(() => readJsonObject(file, { hint: "Download it." }), "FILE_NOT_FOUND", "Download it.");
    expect(readJsonObject(file, { optional: true })).toBeUndefined();
    writeFileSync(file, "{ nope");
    expectCode(() => readJsonObject(file, { optional: true }), "CONFIG_INVALID", "not valid JSON");
    writeFileSync(file, "[1]");
    expectCode(() => readJsonObject(file, { invalidCode: "TOKENIZER_INVALID" }), "TOKENIZER_INVALID", "not a JSON object");
    writeFileSync(file, `{"a": 1}`);
    expect(readJsonObject(file)).toEqual({ a: 1 });
  });
});

describe("every config parser reads null as not set", () => {
  it("text: head_dim, norm_eps and flags set to null take their defaults", () => {
    const base = readJson<Json>("text/tiny-lfm2/config.json");
    const keys = ["head_dim", "norm_eps", "conv_bias", "block_multiple_of", "rope_scaling", "max_position_embeddings"];
    const nulls = parseLfm2Config({ ...base, ...Object.fromEntries(keys.map((k) => [k, null])) }, "tiny");
    const absent = parseLfm2Config({ ...base, ...Object.fromEntries(keys.map((k) => [k, undefined])) }, "tiny");
    expect(nulls).toEqual(absent);
    expect([nulls.headDim, nulls.ffMultipleOf, nulls.maxPositionEmbeddings]).toEqual([16, 256, 128_000]);
  });

  it("text: where null means something of its own it still does (no EOS, no BOS, no FF multiplier)", () => {
    const base = readJson<Json>("text/tiny-lfm2/config.json");
    const c = parseLfm2Config({ ...base, eos_token_id: null, bos_token_id: null, block_ffn_dim_multiplier: null }, "tiny");
    expect([c.eosTokenIds, c.bosTokenId, c.ffMultiplier]).toEqual([[], null, null]);
  });

  it("LFM2-VL, its processor, LFM2-Audio, Mimi and PyLate", () => {
    const vl = readJson<Json>("vision/tiny-lfm2-vl/config.json");
    expect(parseLfm2VlConfig({ ...vl, downsample_factor: null, projector_bias: null, vision_feature_layer: null }, "vl")).toEqual(
      parseLfm2VlConfig({ ...vl, downsample_factor: undefined, projector_bias: undefined, vision_feature_layer: undefined }, "vl"),
    );
    expect(parseImageProcessorConfig({ tile_size: null, use_thumbnail: null, image_mean: null })).toEqual(parseImageProcessorConfig({}));
    const audio = readJson<Json>("audio/tiny-lfm2-audio/config.json");
    expect(parseLfm2AudioConfig({ ...audio, codebooks: null, interleaved_n_text: null }, "audio")).toMatchObject({ codebooks: 8, interleavedText: 6 });
    expect(parseMimiConfig({ seanet: { pad_mode: null, ratios: null }, num_codebooks: null }, "m")).toEqual(parseMimiConfig({}, "m"));
    expect(parseMimiConfig({ transformer: { layer_scale: null } }, "m").transformer.layerScale).toBeNull(); // moshi: no LayerScale
    expect(parsePylateSettings({ query_length: null, query_prefix: null, default_prompt_name: null }, "st.json")).toEqual(parsePylateSettings({}, "st.json"));
  });
});
