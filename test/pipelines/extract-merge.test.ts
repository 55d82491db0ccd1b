/**
 * The pieces of document extraction that need no model: the multi-page merge rule, and the value
 * spans and confidences read off a generated JSON text.
 */
import { describe, expect, it } from "vitest";
import { type PageExtraction, mergePages, mergedKeyOrder } from "../../pipelines/extract-merge.ts";
import { bestAnswer, checkObjectSchema, isPdf } from "../../pipelines/extract.ts";
import { jsonLeafSpans, leafConfidence } from "../../pipelines/json-spans.ts";
import { expectCode } from "../helpers/errors.ts";

function page(n: number, data: unknown, confidence: Record<string, number> = {}): PageExtraction {
  const provenance = Object.fromEntries(Object.keys(confidence).map((p) => [p, { page: n }]));
  return { page: n, data, confidence, provenance };
}

describe("mergePages", () => {
  it("takes the first non-null value per field and concatenates arrays, re-keying their items", () => {
    const merged = mergePages([
      page(1, { vendor: null, total: 12.5, items: [{ sku: "A" }], note: "first" }, { "/vendor": -3, "/total": -0.5, "/items/0/sku": -0.1, "/note": -1 }),
      page(2, { vendor: "ACME", total: 99, items: [{ sku: "B" }, { sku: "C" }], note: null }, { "/vendor": -0.2, "/total": -0.3, "/items/0/sku": -0.4, "/items/1/sku": -0.6, "/note": -2 }),
    ]);
    expect(merged.data).toEqual({ vendor: "ACME", total: 12.5, items: [{ sku: "A" }, { sku: "B" }, { sku: "C" }], note: "first" });
    expect(merged.confidence).toEqual({ "/vendor": -0.2, "/total": -0.5, "/items/0/sku": -0.1, "/items/1/sku": -0.4, "/items/2/sku": -0.6, "/note": -1 });
    expect(merged.provenance["/vendor"]).toEqual({ page: 2 });
    expect(merged.provenance["/items/2/sku"]).toEqual({ page: 2 });
    expect(merged.provenance["/total"]).toEqual({ page: 1 });
  });

  it("merges nested objects key by key, and keeps null only when every page has null", () => {
    const merged = mergePages([page(1, { pump: { id: null, site: "North" }, serial: null }), page(2, { pump: { id: 7, site: "South" }, serial: null }), page(3, { pump: null, serial: null })]);
    expect(merged.data).toEqual({ pump: { id: 7, site: "North" }, serial: null });
    expect(merged.provenance["/serial"]).toEqual({ page: 1 });
  });

  it("orders keys as the pages do: a key first seen later goes after the key it follows there", () => {
    expect(mergedKeyOrder([["a", "c"], ["a", "b", "c"], ["d"]])).toEqual(["a", "b", "c", "d"]);
    const merged = mergePages([page(1, { a: 1, c: 3 }), page(2, { a: 2, b: 2, c: 4 })]);
    expect(Object.keys(merged.data as object)).toEqual(["a", "b", "c"]);
  });

  it("keeps the first page's value where kinds differ, and gives null data for no pages", () => {
    expect(mergePages([page(1, { x: "text" }), page(2, { x: [1] })]).data).toEqual({ x: "text" });
    expect(mergePages([]).data).toBeNull();
  });
});

describe("jsonLeafSpans / leafConfidence", () => {
  it("finds every scalar's span by JSON pointer, escapes included", () => {
    const text = '{"a":"x\\"y","b/c":[1,true,null],"d":{"~e":-2.5e3}}';
    const leaves = jsonLeafSpans(text);
    expect(leaves.map((l) => [l.pointer, text.slice(l.start, l.end), l.value])).toEqual([
      ["/a", '"x\\"y"', 'x"y'],
      ["/b~1c/0", "1", 1],
      ["/b~1c/1", "true", true],
      ["/b~1c/2", "null", null],
      ["/d/~0e", "-2.5e3", -2500],
    ]);
  });

  it("refuses an unfinished JSON text with OUTPUT_INCOMPLETE", () => {
    expectCode(() => jsonLeafSpans('{"a":"x'), "OUTPUT_INCOMPLETE");
    expectCode(() => jsonLeafSpans('{"a":1'), "OUTPUT_INCOMPLETE");
  });

  it("averages the log-probabilities of the tokens overlapping each value", () => {
    // {"a":"xy","b":7} written as tokens: `{"a":"` `xy` `","b":` `7` `}`
    const text = '{"a":"xy","b":7}';
    const tokens: Array<[number, number]> = [
      [0, 6],
      [6, 8],
      [8, 14],
      [14, 15],
      [15, 16],
    ];
    const conf = leafConfidence(jsonLeafSpans(text), tokens, [0, -1, -0.5, -2, 0]);
    // "/a" spans `"xy"` (5..9): tokens 0, 1 and 2 overlap it.
    expect(conf["/a"]).toBeCloseTo((0 - 1 - 0.5) / 3, 12);
    expect(conf["/b"]).toBe(-2);
  });
});

describe("bestAnswer", () => {
  it("picks the non-null answer with the highest confidence, the earliest page on a tie", () => {
    const pages = [
      page(1, { answer: null }, { "/answer": -0.01 }),
      page(2, { answer: "SN-1" }, { "/answer": -0.9 }),
      page(3, { answer: "SN-2" }, { "/answer": -0.2 }),
      page(4, { answer: "SN-3" }, { "/answer": -0.2 }),
    ];
    const best = bestAnswer(pages)!;
    expect([best.answer, best.page.page, best.confidence]).toEqual(["SN-2", 3, -0.2]);
    expect(bestAnswer([pages[0]])).toBeUndefined();
  });
});

describe("input checks", () => {
  it("an extraction schema must be an object schema", () => {
    for (const bad of [{ type: "string" }, [], null, "x", { properties: {} }]) expectCode(() => checkObjectSchema(bad), "SCHEMA_INVALID");
    expect(() => checkObjectSchema({ type: "object", properties: {} })).not.toThrow();
  });

  it("a PDF is recognised by its header, images are not", () => {
    expect(isPdf(new TextEncoder().encode("%PDF-1.7\n..."))).toBe(true);
    expect(isPdf(Uint8Array.from([0x89, 0x50, 0x4e, 0x47]))).toBe(false);
  });
});
