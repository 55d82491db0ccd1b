/** Word files in the index: text through mammoth, typed errors for broken or empty ones, searchable end to end. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { extractText } from "../../retrieval/ingest/extract.ts";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { makeDocx } from "../helpers/docx.ts";
import { expectCode } from "../helpers/errors.ts";

const PARAGRAPHS = ["Pump P-7 maintenance manual", "Tighten the flange bolts to 85 N·m in a star pattern.", "Die Pumpe vor dem Start entlüften.", "ポンプの圧力は 31 bar です。"];

describe(".docx ingest", () => {
  it("gives the document's paragraphs, in order, separated by blank lines", async () => {
    const out = await extractText("manual.docx", await makeDocx(PARAGRAPHS));
    expect(out).toEqual({ kind: "docx", text: PARAGRAPHS.join("\n\n") });
  });

  it("a broken file and a document without text are DOCUMENT_UNREADABLE naming the file", async () => {
    const broken = await expectCode(() => extractText("broken.docx", new TextEncoder().encode("not a zip at all")), "DOCUMENT_UNREADABLE");
    expect(broken.message).toContain("broken.docx");
    const empty = await expectCode(async () => extractText("empty.docx", await makeDocx([])), "DOCUMENT_UNREADABLE");
    expect(empty.message).toContain("without any text");
  });

  it("lfm index add takes a .docx and lfm search finds its passages, typed docx", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-docx-"));
    const file = join(dir, "manual.docx");
    writeFileSync(file, await makeDocx(PARAGRAPHS));
    const index = join(dir, "index");
    expect(runLfmJson(["index", "add", "--index", index, "--json", file])).toMatchObject({ indexed: 1 });
    const found = runLfmJson<{ results: Array<{ text: string; source: string; metadata: Record<string, unknown> }> }>(["search", "--index", index, "--json", "flange bolts torque"]);
    expect(found.results.length).toBeGreaterThan(0);
    expect(found.results[0]).toMatchObject({ source: file, metadata: { type: "docx" } });
    expect(found.results.map((r) => r.text).join("\n")).toContain("85 N·m");
    // An explicitly named broken .docx is an error and leaves the index as it was.
    writeFileSync(join(dir, "broken.docx"), "PK not really");
    const r = runLfm(["index", "add", "--index", index, join(dir, "broken.docx")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("error [DOCUMENT_UNREADABLE]");
    expect(runLfmJson(["search", "--index", index, "--json", "flange bolts torque"])).toEqual(found);
  }, 120_000);
});
