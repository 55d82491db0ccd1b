/**
 * A text page longer than the text model's context: cut into chunks that fit (paragraph, line,
 * word, character boundaries in that order of preference), each extracted with the same
 * constrained decoding, merged by the page rule, spans in page characters. The model is the tiny
 * fixture with its context cut to 512 tokens (a copy of its folder with that config), so a page
 * of a few thousand characters needs several chunks and the test stays fast.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExtractSuccess, extractDocument, splitPageText } from "../../pipelines/extract.ts";
import { openPdf, pdfPageText } from "../../retrieval/ingest/extract.ts";
import { TextModel } from "../../text-core/model.ts";
import { expectCode } from "../helpers/errors.ts";
import { makePdf } from "../helpers/pdfs.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

describe("splitPageText", () => {
  const covers = (text: string, chunks: Array<[number, number]>) => {
    expect(chunks[0][0]).toBe(0);
    expect(chunks.at(-1)![1]).toBe(text.length);
    for (let i = 1; i < chunks.length; i++) expect(chunks[i][0]).toBe(chunks[i - 1][1]);
  };

  it("ends chunks at the last paragraph break that fits, else the last line break", () => {
    const para = (n: number) => Array.from({ length: 3 }, (_, i) => `paragraph ${n} line ${i}`).join("\n");
    const text = [para(1), para(2), para(3), para(4)].join("\n\n");
    const fits = (chunk: string) => chunk.length <= 120;
    const chunks = splitPageText(text, fits);
    covers(text, chunks);
    for (const [s, e] of chunks) expect(fits(text.slice(s, e))).toBe(true);
    // Two paragraphs (~115 characters with the blank line) fit; three do not.
    expect(chunks.map(([s, e]) => text.slice(s, e).trim().split("\n")[0])).toEqual(["paragraph 1 line 0", "paragraph 3 line 0"]);
    // One paragraph longer than a chunk: cut after a line.
    const lines = Array.from({ length: 12 }, (_, i) => `line ${i} of a single long paragraph`).join("\n");
    const byLine = splitPageText(lines, fits);
    covers(lines, byLine);
    expect(byLine.length).toBeGreaterThan(3);
    for (const [, e] of byLine.slice(0, -1)) expect(lines[e - 1]).toBe("\n");
  });

  it("falls back to spaces, then characters (never inside a surrogate pair); fails when nothing fits", () => {
    const words = "word ".repeat(100).trim();
    const fits = (chunk: string) => chunk.length <= 42;
    const byWord = splitPageText(words, fits);
    covers(words, byWord);
    for (const [, e] of byWord.slice(0, -1)) expect(words[e - 1]).toBe(" ");
    const emoji = "😀".repeat(50); // 100 UTF-16 code units
    const byChar = splitPageText(emoji, (c) => c.length <= 7);
    covers(emoji, byChar);
    for (const [s, e] of byChar) expect(emoji.slice(s, e)).toBe("😀".repeat((e - s) / 2)); // whole characters only
    expect(byChar.slice(0, -1).every(([s, e]) => e - s === 6)).toBe(true); // 3 characters: 7 code units would split the 4th
    expectCode(() => splitPageText("abc", () => false), "PROMPT_TOO_LONG");
  });
});

describe("a text page longer than the context", () => {
  const CONTEXT = 512;
  let lm: TextModel;
  let dir: string;
  const lines = [
    ...Array.from({ length: 29 }, (_, i) => `Line ${i + 1}: routine check of valve V-${100 + i}, torque within limits, no leak found.`), // what fits on the page
    "Final tag OMEGA-7 fitted by the inspector.",
  ];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lfm-extract-chunks-"));
    // The tiny fixture with a 512-token context: its files linked, its config rewritten.
    const model = join(dir, "tiny-lfm2-512");
    const source = join(FIXTURES, "text/tiny-lfm2");
    (await import("node:fs")).mkdirSync(model);
    for (const name of readdirSync(source)) if (name !== "config.json") symlinkSync(join(source, name), join(model, name));
    const config = JSON.parse(readFileSync(join(source, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(model, "config.json"), JSON.stringify({ ...config, max_position_embeddings: CONTEXT }));
    lm = await TextModel.load(model, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  });
  afterAll(async () => {
    await lm?.release();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("is extracted in chunks that fit, merged, with spans in the page's characters", async () => {
    const bytes = await makePdf([lines]);
    const pageText = await pdfPageText("long.pdf", await openPdf("long.pdf", bytes), 1);
    expect(pageText).toContain("OMEGA-7");
    expect(lm.tokenizer.encode(pageText, { addSpecialTokens: false }).length).toBeGreaterThan(CONTEXT); // the page alone is over the context
    // The schema asks for the tag or null. A random model cannot read, so it stands in for one that
    // can: a chunk whose text lacks the tag is decoded under `{"tag": null}` (a narrowing of the
    // schema), the chunk that holds it under the schema itself, where the grammar forces the tag.
    const schema = { type: "object", properties: { tag: { anyOf: [{ const: "OMEGA-7" }, { type: "null" }] } }, required: ["tag"], additionalProperties: false };
    const nullTag = { type: "json_schema" as const, schema: { type: "object", properties: { tag: { type: "null" } }, required: ["tag"], additionalProperties: false } };
    const forcedTag = { type: "json_schema" as const, schema: { type: "object", properties: { tag: { const: "OMEGA-7" } }, required: ["tag"], additionalProperties: false } };
    const maxTokens = 48;
    const prompts: Array<{ tokens: number; holdsTag: boolean }> = [];
    const complete = lm.complete.bind(lm);
    lm.complete = (ids, opts) => {
      const holdsTag = lm.tokenizer.decode(ids).includes("Final tag OMEGA-7"); // the page line, not the schema in the system prompt
      prompts.push({ tokens: ids.length, holdsTag });
      return complete(ids, { ...opts, responseFormat: holdsTag ? forcedTag : nullTag });
    };
    let r: ExtractSuccess;
    try {
      r = await extractDocument("long.pdf", bytes, { schema, textModel: lm, maxTokens, temperature: 1, seed: 3 });
    } finally {
      lm.complete = complete;
    }
    // Several chunks, each prompt with room for the answer, the tag in the last one only.
    expect(prompts.length).toBeGreaterThanOrEqual(3);
    for (const p of prompts) expect(p.tokens + maxTokens).toBeLessThanOrEqual(CONTEXT);
    expect(prompts.map((p) => p.holdsTag)).toEqual([...Array(prompts.length - 1).fill(false), true]);
    expect(r.pages).toEqual([{ page: 1, route: "text" }]);
    expect(new Ajv2020({ strict: true }).compile(schema)(r.data)).toBe(true);
    // First non-null over the chunks: the last chunk's tag, its span in the page's characters.
    expect(r.data).toEqual({ tag: "OMEGA-7" });
    const at = pageText.indexOf("OMEGA-7");
    expect(at).toBeGreaterThan(pageText.length / 2);
    expect(r.provenance["/tag"]).toEqual({ page: 1, span: [at, at + "OMEGA-7".length] });
    expect(r.confidence["/tag"]).toBeLessThanOrEqual(0);
  }, 120_000);

  it("a schema and maxTokens that leave no room for text: PROMPT_TOO_LONG for a long page; a short one goes whole, as before", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
    await expectCode(extractDocument("long.pdf", await makePdf([lines]), { schema, textModel: lm, maxTokens: CONTEXT - 20 }), "PROMPT_TOO_LONG", "no room for the page's text");
    const short = await extractDocument("short.pdf", await makePdf([lines.slice(0, 2)]), { schema, textModel: lm, maxTokens: CONTEXT - 20 });
    expect(typeof (short.data as { ok: unknown }).ok).toBe("boolean");
  });
});
