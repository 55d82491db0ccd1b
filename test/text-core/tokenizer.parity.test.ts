import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isLfmError } from "../../text-core/errors.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");
const TINY = join(FIXTURES, "text", "tiny-lfm2");
const COLBERT = join(FIXTURES, "retrieval", "tiny-lfm2-colbert");

interface TokenizeCase {
  text: string;
  ids: number[];
  ids_no_special: number[];
  decoded: string;
  decoded_skip_special: string;
}
const reference = JSON.parse(readFileSync(join(FIXTURES, "text", "reference.json"), "utf8")) as { tokenize: TokenizeCase[] };
const label = (text: string) => JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);
const cases = reference.tokenize.map((c) => [label(c.text), c] as const);

let tok: Lfm2Tokenizer;
beforeAll(async () => {
  tok = await Lfm2Tokenizer.fromDir(TINY);
});

describe("Lfm2Tokenizer matches transformers on the tiny LFM2 tokenizer", () => {
  test.each(cases)("encode(%s) prepends BOS and gives the reference ids", (_, c) => {
    expect(tok.encode(c.text)).toEqual(c.ids);
  });

  test.each(cases)("encode(%s, no specials) gives the reference ids without BOS", (_, c) => {
    expect(tok.encode(c.text, { addSpecialTokens: false })).toEqual(c.ids_no_special);
  });

  // The fixture's `decoded` is the decode of the ids without BOS (special tokens kept); decoding
  // the ids with BOS gives the same text after "<|startoftext|>", as transformers does.
  test.each(cases)("decode of %s keeps special tokens and round-trips the text", (_, c) => {
    expect(tok.decode(c.ids_no_special)).toBe(c.decoded);
    expect(tok.decode(c.ids)).toBe("<|startoftext|>" + c.decoded);
  });

  test.each(cases)("decode of %s with skipSpecialTokens drops BOS and chat markers", (_, c) => {
    expect(tok.decode(c.ids, { skipSpecialTokens: true })).toBe(c.decoded_skip_special);
  });
});

describe("Lfm2Tokenizer special tokens and vocabulary", () => {
  test("BOS, EOS and PAD come from tokenizer_config.json with their LFM2 ids", () => {
    expect([tok.bosToken, tok.bosTokenId]).toEqual(["<|startoftext|>", 1]);
    expect([tok.eosToken, tok.eosTokenId]).toEqual(["<|im_end|>", 7]);
    expect([tok.padToken, tok.padTokenId]).toEqual(["<|pad|>", 0]);
  });

  test("vocabSize counts the base vocabulary and the added tokens", () => {
    expect(tok.vocabSize).toBe(1024);
  });

  test("specialTokenIds holds the special added tokens and no ordinary token", () => {
    for (const id of [0, 1, 2, 6, 7, 10, 11, 396, 499]) expect(tok.specialTokenIds.has(id)).toBe(true);
    expect(tok.specialTokenIds.has(732)).toBe(false); // " "
  });

  test("tokenToId and idToToken are inverse for special and byte-level tokens", () => {
    expect(tok.tokenToId("<|im_start|>")).toBe(6);
    expect(tok.idToToken(6)).toBe("<|im_start|>");
    expect(tok.tokenToId(tok.idToToken(732)!)).toBe(732);
    expect(tok.tokenToId("no such token")).toBeUndefined();
    expect(tok.idToToken(123_456)).toBeUndefined();
  });

  test("decode of no ids is the empty string", () => {
    expect(tok.decode([])).toBe("");
  });

  test("decode skips ids outside the vocabulary, like the Rust tokenizers", () => {
    expect(tok.decode([6, 123_456, 7])).toBe("<|im_start|><|im_end|>");
  });

  test("chatTemplate is read from chat_template.jinja", async () => {
    expect(tok.chatTemplate).toBe(await readFile(join(TINY, "chat_template.jinja"), "utf8"));
  });
});

describe("ColBERT tokenizer with the PyLate prefix tokens", () => {
  let colbert: Lfm2Tokenizer;
  const retrieval = JSON.parse(readFileSync(join(FIXTURES, "retrieval", "reference.json"), "utf8")) as {
    query_input_ids: number[][];
    document_input_ids: number[][];
  };
  beforeAll(async () => {
    colbert = await Lfm2Tokenizer.fromDir(COLBERT);
  });

  test("the added tokens [Q] and [D] extend the vocabulary to 1026 entries", () => {
    expect(colbert.vocabSize).toBe(1026);
    expect(colbert.tokenToId("[Q] ")).toBe(1024);
    expect(colbert.tokenToId("[D] ")).toBe(1025);
  });

  test("a query prefix encodes as id 1024 right after BOS, as PyLate produced", () => {
    const ids = colbert.encode("[Q] pump pressure reading");
    expect(ids.slice(0, 2)).toEqual([1, 1024]);
    expect(retrieval.query_input_ids[0].slice(0, 2)).toEqual(ids.slice(0, 2));
  });

  test("a document prefix encodes as id 1025 right after BOS, as PyLate produced", () => {
    const ids = colbert.encode("[D] The field technician");
    expect(ids.slice(0, 2)).toEqual([1, 1025]);
    expect(retrieval.document_input_ids[0].slice(0, 2)).toEqual(ids.slice(0, 2));
  });

  test("the prefix tokens are not special: skipSpecialTokens keeps them", () => {
    expect(colbert.decode([1, 1024, 1025], { skipSpecialTokens: true })).toBe("[Q] [D] ");
  });
});

describe("Lfm2Tokenizer.fromDir errors", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lfm2-tokenizer-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a folder without tokenizer.json is FILE_NOT_FOUND naming the file", async () => {
    const missing = join(dir, "empty");
    const err = await Lfm2Tokenizer.fromDir(missing).catch((e: unknown) => e);
    expect(isLfmError(err, "FILE_NOT_FOUND")).toBe(true);
    expect((err as Error).message).toContain(join(missing, "tokenizer.json"));
  });

  test("a folder without tokenizer_config.json is FILE_NOT_FOUND naming the file", async () => {
    const noConfig = join(dir, "no-config");
    await mkdir(noConfig);
    await copyFile(join(TINY, "tokenizer.json"), join(noConfig, "tokenizer.json"));
    const err = await Lfm2Tokenizer.fromDir(noConfig).catch((e: unknown) => e);
    expect(isLfmError(err, "FILE_NOT_FOUND")).toBe(true);
    expect((err as Error).message).toContain("tokenizer_config.json");
  });

  test("a truncated tokenizer.json is TOKENIZER_INVALID", async () => {
    const broken = join(dir, "broken");
    await mkdir(broken);
    const text = await readFile(join(TINY, "tokenizer.json"), "utf8");
    await writeFile(join(broken, "tokenizer.json"), text.slice(0, 1000));
    await copyFile(join(TINY, "tokenizer_config.json"), join(broken, "tokenizer_config.json"));
    const err = await Lfm2Tokenizer.fromDir(broken).catch((e: unknown) => e);
    expect(isLfmError(err, "TOKENIZER_INVALID")).toBe(true);
    expect((err as Error).message).toContain(join(broken, "tokenizer.json"));
  });

  test("an eos_token missing from the vocabulary is TOKENIZER_INVALID", () => {
    const tokenizerJson: unknown = JSON.parse(readFileSync(join(TINY, "tokenizer.json"), "utf8"));
    const config = { bos_token: "<|startoftext|>", eos_token: "<|nope|>" };
    expect(() => Lfm2Tokenizer.fromJson(tokenizerJson, config)).toThrow(expect.objectContaining({ code: "TOKENIZER_INVALID" }));
  });

  test("chat_template given as a list of named templates picks the default one", () => {
    const tokenizerJson: unknown = JSON.parse(readFileSync(join(TINY, "tokenizer.json"), "utf8"));
    const config = {
      bos_token: "<|startoftext|>",
      eos_token: "<|im_end|>",
      chat_template: [
        { name: "tool_use", template: "tools" },
        { name: "default", template: "plain" },
      ],
    };
    expect(Lfm2Tokenizer.fromJson(tokenizerJson, config).chatTemplate).toBe("plain");
  });
});
