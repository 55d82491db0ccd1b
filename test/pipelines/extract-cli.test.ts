/**
 * `lfm extract` end to end on the tiny models: the --json contract (one line per document, a
 * failing one reported in its line, exit 2), --out + --resume by content hash, and Ctrl-C leaving
 * only whole lines.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LFM_BIN, runLfm } from "../helpers/cli.ts";
import { makePdf } from "../helpers/pdfs.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const SCHEMA = {
  type: "object",
  properties: { serial: { type: "string", maxLength: 8 }, ok: { type: "boolean" } },
  required: ["serial", "ok"],
  additionalProperties: false,
};
const MODELS = ["--model", join(FIXTURES, "vision/tiny-lfm2-vl"), "--text-model", join(FIXTURES, "text/tiny-lfm2")];
const FAST = ["--precision", "fp32", "--threads", "2", "--temperature", "0", "--max-tokens", "48", "--dpi", "36"];

let dir: string;
let docs: string;
let schemaFile: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lfm-extract-cli-"));
  docs = join(dir, "docs");
  mkdirSync(docs);
  writeFileSync(join(docs, "a-text.pdf"), await makePdf([["Serial number: SN-4471", "Status: ok"]]));
  writeFileSync(join(docs, "b-scan.pdf"), await makePdf(["scan"]));
  writeFileSync(join(docs, "c-broken.pdf"), new TextEncoder().encode("%PDF-1.7\nnot really\n"));
  writeFileSync(join(docs, "notes.txt"), "not a document type: skipped in a folder");
  schemaFile = join(dir, "schema.json");
  writeFileSync(schemaFile, JSON.stringify(SCHEMA));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const lines = (text: string) => text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);

describe("lfm extract", () => {
  it("--json prints one line per document; a failing one says why and the exit status is 2", () => {
    const r = runLfm(["extract", ...MODELS, "--schema", schemaFile, "--json", ...FAST, docs]);
    expect(r.status, r.stderr).toBe(2);
    const rows = lines(r.stdout);
    expect(rows.map((row) => (row.source as string).split("/").pop())).toEqual(["a-text.pdf", "b-scan.pdf", "c-broken.pdf"]);
    const validate = new Ajv2020({ strict: true }).compile(SCHEMA);
    for (const row of rows.slice(0, 2)) {
      expect(validate(row.data), JSON.stringify(row)).toBe(true);
      expect(Object.keys(row)).toEqual(["source", "sha256", "data", "confidence", "provenance", "pages"]);
      for (const c of Object.values(row.confidence as Record<string, number>)) expect(c).toBeLessThanOrEqual(0);
    }
    expect(rows[0].pages).toEqual([{ page: 1, route: "text" }]);
    expect(rows[1].pages).toEqual([{ page: 1, route: "image" }]);
    expect((rows[2].error as { code: string }).code).toBe("DOCUMENT_UNREADABLE");
  });

  it("--out appends lines and --resume skips the documents already there by content hash", () => {
    const out = join(dir, "results.jsonl");
    const first = runLfm(["extract", ...MODELS, "--schema", schemaFile, "--out", out, ...FAST, docs]);
    expect(first.status, first.stderr).toBe(2);
    expect(first.stdout).toBe("");
    const before = lines(readFileSync(out, "utf8"));
    expect(before).toHaveLength(3);
    for (const row of before) expect(row.sha256).toMatch(/^[0-9a-f]{64}$/);
    // A line cut short by a killed writer: the next run starts on a fresh line and ignores it.
    writeFileSync(out, `${readFileSync(out, "utf8")}{"source":"cut-sh`);
    // A copy of a finished document under another name is the same content: skipped too.
    writeFileSync(join(docs, "d-copy.pdf"), readFileSync(join(docs, "a-text.pdf")));
    const again = runLfm(["extract", ...MODELS, "--schema", schemaFile, "--out", out, "--resume", ...FAST, docs]);
    rmSync(join(docs, "d-copy.pdf"));
    expect(again.status, again.stderr).toBe(2); // the broken file is tried again and fails again
    const afterLines = readFileSync(out, "utf8").split("\n").filter((l) => l !== "");
    expect(afterLines[3]).toBe('{"source":"cut-sh');
    const after = [...afterLines.slice(0, 3), ...afterLines.slice(4)].map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(after.slice(0, 3)).toEqual(before);
    expect(after.slice(3).map((row) => (row.source as string).split("/").pop())).toEqual(["c-broken.pdf"]);
  });

  it("ask-doc --json answers with the page, and refuses a missing file", () => {
    const r = runLfm(["ask-doc", ...MODELS, "--json", ...FAST, "--max-tokens", "400", join(docs, "a-text.pdf"), "What is the serial number?"]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(out).filter((k) => k !== "span")).toEqual(["source", "sha256", "question", "answer", "page", "confidence", "pages"]);
    expect(out.pages).toEqual([{ page: 1, route: "text" }]);
    expect(out.answer === null ? out.page === null : out.page === 1).toBe(true);
    const missing = runLfm(["ask-doc", ...MODELS, join(docs, "nope.pdf"), "Why?"]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("FILE_NOT_FOUND");
  });

  it("Ctrl-C leaves only whole lines and exits 130", async () => {
    const many = join(dir, "many");
    mkdirSync(many);
    for (let i = 0; i < 12; i++) writeFileSync(join(many, `doc-${String(i).padStart(2, "0")}.pdf`), await makePdf([[`Serial number: SN-${i}`, "Status: ok"]]));
    const out = join(dir, "interrupted.jsonl");
    const child = spawn(process.execPath, [LFM_BIN, "extract", ...MODELS, "--schema", schemaFile, "--out", out, ...FAST, many], {
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const deadline = Date.now() + 90_000;
    while (!(existsSync(out) && readFileSync(out, "utf8").length > 0)) {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`no line appeared: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    const text = readFileSync(out, "utf8");
    expect(text.endsWith("\n")).toBe(true);
    const rows = lines(text);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(12);
    for (const row of rows) expect(row.data).toBeDefined();
  }, 120_000);
});
