/**
 * `extract` on the tiny random-weight models with PDFs made here: a text PDF, an image-only
 * ("scanned") PDF, a mixed one, a 200-page one, and an image file. Every result validates against
 * its schema; pages go the right way; confidences are log-probabilities; bad input is a typed
 * failure for that file while the batch goes on.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExtractResult, type ExtractSuccess, GENERIC_SCHEMA, askDocument, extract, extractDocument, matchesFormat } from "../../pipelines/extract.ts";
import { openPdf, pdfPageText } from "../../retrieval/ingest/extract.ts";
import { TextModel } from "../../text-core/model.ts";
import { VlModel } from "../../vision/vl-model.ts";
import { expectCode } from "../helpers/errors.ts";
import { makePdf, passwordProtected, pngClaiming } from "../helpers/pdfs.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const SCHEMA = {
  type: "object",
  properties: {
    serial: { type: "string", maxLength: 12 },
    pressure_bar: { anyOf: [{ type: "integer", minimum: 0, maximum: 400 }, { type: "null" }] },
    readings: { type: "array", maxItems: 2, items: { type: "integer", minimum: 0, maximum: 99 } },
  },
  required: ["serial", "pressure_bar", "readings"],
  additionalProperties: false,
};
const TEXT_PAGE = ["Pump nameplate", "Serial number: SN-4471", "Pressure: 31 bar"];
const GEN = { maxTokens: 64, temperature: 1, seed: 7, render: { dpi: 36 } };

let vl: VlModel;
let lm: TextModel;
let dir: string;
const files: Record<string, string> = {};
beforeAll(async () => {
  vl = await VlModel.load(join(FIXTURES, "vision/tiny-lfm2-vl"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  lm = await TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  dir = mkdtempSync(join(tmpdir(), "lfm-extract-"));
  const write = (name: string, bytes: Uint8Array) => {
    files[name] = join(dir, name);
    writeFileSync(files[name], bytes);
  };
  write("text.pdf", await makePdf([TEXT_PAGE, ["Inspection report, page 2", "Readings: 12 and 14"]]));
  write("one.pdf", await makePdf([TEXT_PAGE]));
  write("scan.pdf", await makePdf(["scan"]));
  write("mixed.pdf", await makePdf([TEXT_PAGE, "scan", ["Last page: signed by the inspector on site"]]));
  write("photo.jpg", new Uint8Array((await import("node:fs")).readFileSync(join(FIXTURES, "vision/images/photo_320x240.jpg"))));
  const whole = await makePdf([TEXT_PAGE]);
  write("truncated.pdf", whole.subarray(0, Math.floor(whole.length / 3)));
  write("corrupt.pdf", new TextEncoder().encode("%PDF-1.7\nthis is no PDF at all\n%%EOF\n"));
  write("locked.pdf", passwordProtected(whole));
  write("bomb.png", pngClaiming(60_000, 60_000));
  write("noise.png", Uint8Array.from({ length: 300 }, (_, i) => (i * 73) % 256));
});
afterAll(async () => {
  await vl?.release();
  await lm?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function all(results: AsyncIterable<ExtractResult>): Promise<ExtractResult[]> {
  const out: ExtractResult[] = [];
  for await (const r of results) out.push(r);
  return out;
}

function checkConfidence(r: ExtractSuccess): void {
  const values = Object.values(r.confidence);
  expect(values.length).toBeGreaterThan(0);
  for (const c of values) {
    expect(Number.isFinite(c)).toBe(true);
    expect(c).toBeLessThanOrEqual(0);
  }
}

describe("extract", () => {
  it("routes text pages to the text model and scanned pages to LFM2-VL; every result validates", async () => {
    const validate = new Ajv2020({ strict: true }).compile(SCHEMA);
    const routed: string[] = [];
    const results = await all(
      extract([files["text.pdf"], files["scan.pdf"], files["mixed.pdf"], files["photo.jpg"]], {
        ...GEN,
        schema: SCHEMA,
        model: vl,
        textModel: lm,
        onPage: (e) => routed.push(`${e.source.endsWith("mixed.pdf") ? "mixed" : "other"}:${e.page}/${e.pageCount}:${e.route}`),
      }),
    );
    expect(results.map((r) => ("error" in r ? r.error.code : "ok"))).toEqual(["ok", "ok", "ok", "ok"]);
    const [text, scan, mixed, photo] = results as ExtractSuccess[];
    expect(text.pages).toEqual([
      { page: 1, route: "text" },
      { page: 2, route: "text" },
    ]);
    expect(scan.pages).toEqual([{ page: 1, route: "image" }]);
    expect(mixed.pages).toEqual([
      { page: 1, route: "text" },
      { page: 2, route: "image" },
      { page: 3, route: "text" },
    ]);
    expect(photo.pages).toEqual([{ page: 1, route: "image" }]);
    expect(routed.filter((s) => s.startsWith("mixed"))).toEqual(["mixed:1/3:text", "mixed:2/3:image", "mixed:3/3:text"]);
    for (const r of results as ExtractSuccess[]) {
      expect(validate(r.data), `${r.source}: ${JSON.stringify(validate.errors)}`).toBe(true);
      expect(r.sha256).toMatch(/^[0-9a-f]{64}$/);
      checkConfidence(r);
      expect(Object.keys(r.provenance).sort()).toEqual(Object.keys(r.confidence).sort());
      for (const where of Object.values(r.provenance)) expect(r.pages.map((p) => p.page)).toContain(where.page);
    }
    // A span names the value's characters in its page's text layer.
    const pdf = await openPdf("text.pdf", new Uint8Array((await import("node:fs")).readFileSync(files["text.pdf"])));
    for (const r of [text, mixed]) {
      for (const [pointer, where] of Object.entries(r.provenance)) {
        if (!where.span) continue;
        const pageText = await pdfPageText("text.pdf", pdf, where.page);
        const value = pointer.split("/").slice(1).reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], r.data);
        expect(pageText.slice(...where.span)).toBe(typeof value === "string" ? value : String(value));
      }
    }
  });

  it("without a text model, text pages go through the VL model's language core; without a schema, the generic one", async () => {
    const validate = new Ajv2020({ strict: false }).compile(GENERIC_SCHEMA);
    const [r] = (await all(extract([files["one.pdf"]], { maxTokens: 2000, model: vl }))) as ExtractSuccess[];
    expect("error" in r).toBe(false);
    expect(r.pages).toEqual([{ page: 1, route: "text" }]);
    expect(validate(r.data), JSON.stringify(validate.errors)).toBe(true);
  });

  it("a 200-page PDF is read page by page (cancelling on page 3 stops there) and every page is used", async () => {
    const pages = Array.from({ length: 200 }, (_, i) => [`Sheet ${i + 1} of the maintenance log`, `Reading ${i % 90}`]);
    const bytes = await makePdf(pages);
    const tiny = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
    const controller = new AbortController();
    const seen: number[] = [];
    await expectCode(
      extractDocument("long.pdf", bytes, {
        schema: tiny,
        textModel: lm,
        maxTokens: 24,
        signal: controller.signal,
        onPage: (e) => {
          seen.push(e.page);
          if (e.page === 3) controller.abort();
        },
      }),
      "ABORTED",
    );
    expect(seen).toEqual([1, 2, 3]);
    const done = await extractDocument("long.pdf", bytes, { schema: tiny, textModel: lm, maxTokens: 24 });
    expect(done.pages).toHaveLength(200);
    expect(done.pages.every((p, i) => p.page === i + 1 && p.route === "text")).toBe(true);
    expect(typeof (done.data as { ok: unknown }).ok).toBe("boolean");
  }, 120_000);

  it("bad files fail with typed errors while the batch goes on", async () => {
    const results = await all(
      extract([files["truncated.pdf"], files["corrupt.pdf"], files["locked.pdf"], join(dir, "missing.pdf"), dir, files["bomb.png"], files["noise.png"], files["text.pdf"]], { ...GEN, schema: SCHEMA, model: vl, textModel: lm }),
    );
    expect(results.map((r) => ("error" in r ? r.error.code : "ok"))).toEqual([
      "DOCUMENT_UNREADABLE",
      "DOCUMENT_UNREADABLE",
      "DOCUMENT_UNREADABLE",
      "FILE_NOT_FOUND",
      "FILE_NOT_FOUND", // a folder given to the library as a file
      "IMAGE_TOO_LARGE",
      "IMAGE_INVALID",
      "ok",
    ]);
    expect((results[0] as { sha256?: string }).sha256).toMatch(/^[0-9a-f]{64}$/);
    expect((results[2] as { error: { message: string } }).error.message).toContain("password-protected");
  });

  it("askDocument asks every page and answers with a page, or null when no page answers", async () => {
    const bytes = new Uint8Array((await import("node:fs")).readFileSync(files["mixed.pdf"]));
    const r = await askDocument("mixed.pdf", bytes, "What is the serial number?", { ...GEN, maxTokens: 400, model: vl, textModel: lm });
    expect(r.pages.map((p) => p.route)).toEqual(["text", "image", "text"]);
    if (r.answer === null) expect([r.page, r.confidence]).toEqual([null, null]);
    else {
      expect(typeof r.answer).toBe("string");
      expect([1, 2, 3]).toContain(r.page);
      expect(r.confidence).toBeLessThanOrEqual(0);
    }
    await expectCode(askDocument("mixed.pdf", bytes, "  ", { model: vl }), "INVALID_ARGUMENT");
  });

  it("checks a merged result against the schema's grammar (what decides between the merge and the first page)", async () => {
    const format = { type: "json_schema" as const, schema: SCHEMA };
    expect(await matchesFormat(lm, format, '{"serial":"A-1","pressure_bar":null,"readings":[1,2]}')).toBe(true);
    expect(await matchesFormat(lm, format, '{"serial":"A-1","pressure_bar":null,"readings":[1,2,3]}')).toBe(false); // maxItems
    expect(await matchesFormat(lm, format, '{"serial":"A-1","pressure_bar":401,"readings":[]}')).toBe(false);
    expect(await matchesFormat(lm, format, '{"serial":"A-1","pressure_bar":7')).toBe(false); // unfinished
  });

  it("refuses a schema that is not an object schema, and a scanned page with no VL model", async () => {
    await expectCode(all(extract([files["text.pdf"]], { schema: { type: "array" }, model: vl })), "SCHEMA_INVALID");
    const [r] = await all(extract([files["scan.pdf"]], { ...GEN, schema: SCHEMA, textModel: lm }));
    expect("error" in r && r.error.code).toBe("MODEL_REQUIRED");
  });
});
