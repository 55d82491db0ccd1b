import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { PYLATE_DEFAULTS, loadPylateFolder, parsePylateSettings } from "../../retrieval/pylate-config.ts";
import { writeSafetensors } from "../../bench/safetensors-writer.ts";
import { runLfm } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const FIXTURE = join(FIXTURES, "retrieval/tiny-lfm2-colbert");
const scratch = mkdtempSync(join(tmpdir(), "colbert-errors-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the fixture folder with `edit` applied. */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(scratch, name);
  cpSync(FIXTURE, dir, { recursive: true });
  edit(dir);
  return dir;
}
const editJson = (file: string, change: (j: Record<string, unknown>) => unknown) =>
  writeFileSync(file, JSON.stringify(change(JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>) ?? {}));
const load = (dir: string) => ColbertEncoder.load(dir, { cacheDir: TEST_CACHE, precision: "fp32", threads: 1 });

describe("PyLate settings resolve like PyLate's", () => {
  it("absent keys and nulls take PyLate's defaults", () => {
    const s = parsePylateSettings({ query_length: null }, "x.json");
    expect(s).toEqual({
      queryPrefix: "[Q] ",
      documentPrefix: "[D] ",
      queryLength: 32,
      documentLength: 180,
      doQueryExpansion: true,
      attendToExpansionTokens: false,
      skiplistWords: [...PYLATE_DEFAULTS.skiplistWords],
      prompt: "",
    });
    expect(s.skiplistWords.join("")).toBe("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");
  });

  it("without query expansion there are no expansion tokens to attend to", () => {
    expect(parsePylateSettings({ do_query_expansion: false, attend_to_expansion_tokens: true }, "x.json").attendToExpansionTokens).toBe(false);
  });

  it("default_prompt_name picks the prompt prepended to every text", () => {
    expect(parsePylateSettings({ prompts: { query: "q: " }, default_prompt_name: "query" }, "x.json").prompt).toBe("q: ");
  });

  it("a wrongly typed value is CONFIG_INVALID naming the key", () => {
    expect(() => parsePylateSettings({ query_length: "32" }, "x.json")).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining("query_length") }));
    expect(() => parsePylateSettings({ default_prompt_name: "nope" }, "x.json")).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }));
  });

  it("reads the fixture folder: chat-message input, one 64→16 Dense", () => {
    const folder = loadPylateFolder(FIXTURE);
    expect(folder.inputFormat).toEqual({ kind: "message", content: "structured" });
    expect(folder.dense.map((d) => [d.path, d.inFeatures, d.outFeatures, d.bias, d.activation, d.useResidual])).toEqual([["1_Dense", 64, 16, false, "identity", false]]);
  });

  it("a folder without sentence_bert_config.json takes plain text; a Sentence Transformers Dense defaults to Tanh", () => {
    const dir = variant("plain", (d) => {
      rmSync(join(d, "sentence_bert_config.json"));
      editJson(join(d, "modules.json"), (m) => (m as unknown as Array<Record<string, unknown>>).map((x) => (x.path === "1_Dense" ? { ...x, type: "sentence_transformers.models.Dense" } : x)));
      editJson(join(d, "1_Dense/config.json"), (c) => ({ ...c, activation_function: undefined }));
    });
    const folder = loadPylateFolder(dir);
    expect(folder.inputFormat).toEqual({ kind: "text" });
    expect(folder.dense[0].activation).toBe("tanh");
  });
});

describe("bad PyLate folders and inputs are typed errors", () => {
  it("no modules.json: FILE_NOT_FOUND saying it is not a PyLate folder", async () => {
    const dir = variant("no-modules", (d) => rmSync(join(d, "modules.json")));
    await expect(load(dir)).rejects.toMatchObject({ code: "FILE_NOT_FOUND", message: expect.stringContaining("modules.json") });
  });

  it("a plain LFM2 folder is not a ColBERT", async () => {
    await expect(load(join(FIXTURES, "text/tiny-lfm2"))).rejects.toMatchObject({ code: "FILE_NOT_FOUND", message: expect.stringContaining("not a PyLate ColBERT folder") });
  });

  it("Dense weights missing: FILE_NOT_FOUND naming the file", async () => {
    const dir = variant("no-dense-weights", (d) => rmSync(join(d, "1_Dense/model.safetensors")));
    await expect(load(dir)).rejects.toMatchObject({ code: "FILE_NOT_FOUND", message: expect.stringContaining("1_Dense") });
  });

  it("Dense weights of the wrong shape: TENSOR_SHAPE_MISMATCH", async () => {
    const dir = variant("dense-shape", (d) => {
      const w = new Uint8Array(32 * 64 * 2);
      writeSafetensors(join(d, "1_Dense/model.safetensors"), [{ name: "linear.weight", dtype: "BF16", shape: [32, 64], data: w }], { format: "pt" });
    });
    await expect(load(dir)).rejects.toMatchObject({ code: "TENSOR_SHAPE_MISMATCH", message: expect.stringContaining("1_Dense.linear.weight") });
  });

  it("Dense file without linear.weight: TENSOR_MISSING", async () => {
    const dir = variant("dense-name", (d) => {
      writeSafetensors(join(d, "1_Dense/model.safetensors"), [{ name: "weight", dtype: "BF16", shape: [16, 64], data: new Uint8Array(16 * 64 * 2) }], { format: "pt" });
    });
    await expect(load(dir)).rejects.toMatchObject({ code: "TENSOR_MISSING" });
  });

  it("a Dense layer that does not take the backbone's width: CONFIG_INVALID", async () => {
    const dir = variant("dense-in", (d) => editJson(join(d, "1_Dense/config.json"), (c) => ({ ...c, in_features: 32 })));
    await expect(load(dir)).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining("hidden size is 64") });
  });

  it("an unsupported activation, or no Dense module at all: CONFIG_INVALID", async () => {
    const act = variant("dense-act", (d) => editJson(join(d, "1_Dense/config.json"), (c) => ({ ...c, activation_function: "my.custom.Swish" })));
    await expect(load(act)).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining("my.custom.Swish") });
    const none = variant("no-dense", (d) => editJson(join(d, "modules.json"), (m) => (m as unknown as unknown[]).slice(0, 1)));
    await expect(load(none)).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining("no Dense") });
  });

  it("a prefix the tokenizer does not have: TOKENIZER_INVALID", async () => {
    const dir = variant("prefix", (d) => editJson(join(d, "config_sentence_transformers.json"), (c) => ({ ...c, query_prefix: "[QUERY] " })));
    await expect(load(dir)).rejects.toMatchObject({ code: "TOKENIZER_INVALID", message: expect.stringContaining("[QUERY] ") });
  });

  it("broken JSON: CONFIG_INVALID", async () => {
    const dir = variant("json", (d) => writeFileSync(join(d, "config_sentence_transformers.json"), "{"));
    await expect(load(dir)).rejects.toMatchObject({ code: "CONFIG_INVALID" });
  });

  it("a bidirectional backbone (LFM2.5-ColBERT style): UNKNOWN_ARCHITECTURE", async () => {
    const dir = variant("bidir", (d) => editJson(join(d, "config.json"), (c) => ({ ...c, is_causal: false })));
    await expect(load(dir)).rejects.toMatchObject({ code: "UNKNOWN_ARCHITECTURE" });
  });

  it("empty or blank texts: EMPTY_TEXT; non-strings: INVALID_ARGUMENT", async () => {
    const encoder = await load(FIXTURE);
    try {
      await expect(encoder.encodeQueries([""])).rejects.toMatchObject({ code: "EMPTY_TEXT" });
      await expect(encoder.encodeDocuments(["ok", " \n\t"])).rejects.toMatchObject({ code: "EMPTY_TEXT", message: expect.stringContaining("document 1") });
      await expect(encoder.encodeDocuments([42 as unknown as string])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(encoder.encodeDocuments(["ok"], { batchSize: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(await encoder.encodeQueries([])).toEqual([]);
    } finally {
      await encoder.release();
    }
  });

  it("the CLI wants exactly one of --query / --document and reports errors with their code", () => {
    const both = runLfm(["encode", "--model", FIXTURE, "--query", "a", "--document", "b", "--json"]);
    expect(both.status).toBe(2);
    expect(both.stderr).toContain("error [INVALID_ARGUMENT]");
    const missing = runLfm(["encode", "--model", join(scratch, "nowhere"), "--query", "a", "--json"]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("error [MODEL_NOT_FOUND]");
  });
});
