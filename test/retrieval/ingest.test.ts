/** Ingest: text extraction, chunking, unchanged-file detection, cancellation (with a word-hash encoder). */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { chunkText } from "../../retrieval/ingest/chunker.ts";
import { extractText } from "../../retrieval/ingest/extract.ts";
import { decodeEntities, htmlToText } from "../../retrieval/ingest/html-text.ts";
import { collectFiles, ingestPaths, removePaths } from "../../retrieval/ingest/ingest.ts";
import { WordHashEncoder, minimalPdf } from "./fake-encoder.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-ingest-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
const byWords = { countTokens: words };

describe("chunker", () => {
  const text = Array.from({ length: 40 }, (_, i) => `Sentence number ${i} says something about pump ${i}.`).join(" ");

  it("cuts passages of at most maxTokens that are exact slices, overlapping, covering the text", () => {
    const chunks = chunkText(text, { maxTokens: 30, overlapTokens: 6, ...byWords });
    expect(chunks.length).toBeGreaterThan(8);
    for (const c of chunks) {
      expect(words(c.text)).toBeLessThanOrEqual(30);
      expect(text.slice(c.start, c.end)).toBe(c.text);
    }
    for (let i = 1; i < chunks.length; i++) {
      expect(chunks[i].start).toBeLessThan(chunks[i - 1].end); // overlap
      expect(chunks[i].start).toBeGreaterThan(chunks[i - 1].start); // progress
    }
    expect(chunks[0].start).toBe(0);
    expect(chunks.at(-1)?.end).toBe(text.length);
  });

  it("ends passages at sentence ends and prefers paragraph breaks", () => {
    const chunks = chunkText(text, { maxTokens: 30, overlapTokens: 0, ...byWords });
    for (const c of chunks.slice(0, -1)) expect(c.text.endsWith(".")).toBe(true);
    const paragraphs = "Alpha beta gamma delta epsilon zeta. Eta theta.\n\nIota kappa lambda mu.";
    const [first, second] = chunkText(paragraphs, { maxTokens: 10, overlapTokens: 3, ...byWords });
    expect(first.text).toBe("Alpha beta gamma delta epsilon zeta. Eta theta.");
    expect(second.text).toBe("Iota kappa lambda mu."); // no overlap across a paragraph break
  });

  it("splits text without spaces (CJK) and counts with the given tokenizer", () => {
    const cjk = "泵的密封水流量必须在启动前检查。".repeat(30);
    const chunks = chunkText(cjk, { maxTokens: 40, overlapTokens: 8, countTokens: (s) => Array.from(s.trim()).length });
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks) expect(Array.from(c.text).length).toBeLessThanOrEqual(40);
    expect(chunks.map((c) => c.text).join("").length).toBeGreaterThan(cjk.length); // overlaps
  });

  it("handles empty and tiny texts and rejects bad sizes", () => {
    expect(chunkText("  \n ", { maxTokens: 10, overlapTokens: 2 })).toEqual([]);
    expect(chunkText("one", { maxTokens: 10, overlapTokens: 2 })).toEqual([{ index: 0, text: "one", start: 0, end: 3 }]);
    expect(() => chunkText("x", { maxTokens: 10, overlapTokens: 10 })).toThrow(/overlap/);
    expect(() => chunkText("x", { maxTokens: 0, overlapTokens: 0 })).toThrow(/passage size/);
  });
});

describe("text extraction", () => {
  it("HTML: drops scripts, styles and comments, separates blocks, decodes entities, keeps the title", () => {
    const html = `<!doctype html><html><head><title>Pompe &amp; vanne</title><style>p { color: red }</style><script>alert("x<y")</script></head>
      <body><h1>Pompe P&#45;7</h1><p>Amorcer&nbsp;la pompe<!-- hidden --> avant d&eacute;marrage.</p><div>Couple&#x3A; 45&nbsp;Nm</div><span>in</span><b>line</b>
      <a href="x" title="a > b">lien</a></body></html>`;
    expect(htmlToText(html)).toEqual({ title: "Pompe & vanne", text: "Pompe P-7\n\nAmorcer la pompe avant démarrage.\n\nCouple: 45 Nm\ninline\nlien" });
    expect(decodeEntities("&lt;&gt; &unknown; &#128512; &#0; &amp")).toBe("<> &unknown; 😀 \ufffd &");
  });

  it("PDF: text of every page, the page of each offset, the title", async () => {
    const pdf = minimalPdf(["Pump P-7 priming procedure", "Valve V-12 torque values"], "Plant manual");
    const out = await extractText("manual.pdf", pdf);
    expect(out.kind).toBe("pdf");
    expect(out.title).toBe("Plant manual");
    expect(out.text).toBe("Pump P-7 priming procedure\n\nValve V-12 torque values");
    expect(out.pageStarts).toEqual([0, 28]);
  });

  it("reports unreadable files with DOCUMENT_UNREADABLE and unknown types with UNSUPPORTED_FILE_TYPE", async () => {
    await expect(extractText("broken.pdf", new TextEncoder().encode("%PDF-1.4 garbage"))).rejects.toMatchObject({ code: "DOCUMENT_UNREADABLE" });
    await expect(extractText("bin.txt", Uint8Array.from([0x41, 0, 0x42]))).rejects.toMatchObject({ code: "DOCUMENT_UNREADABLE" });
    await expect(extractText("x.odt", new Uint8Array(1))).rejects.toMatchObject({ code: "UNSUPPORTED_FILE_TYPE" });
    expect((await extractText("latin1.txt", Uint8Array.from([0x63, 0x61, 0x66, 0xe9]))).text).toBe("café");
  });
});

describe("ingest", () => {
  const docs = join(root, "docs");
  mkdirSync(join(docs, "sub"), { recursive: true });
  mkdirSync(join(docs, ".hidden"), { recursive: true });
  const long = Array.from({ length: 30 }, (_, i) => `Step ${i}: open valve ${i} and check the gauge.`).join(" ");
  writeFileSync(join(docs, "pump.txt"), `Pump P-7 must be primed before start-up.\n\n${long}`);
  writeFileSync(join(docs, "sub", "valve.md"), "# Valve V-12\n\nReplace the gland packing every 2000 hours.");
  writeFileSync(join(docs, "sub", "compresseur.html"), "<p>Vidanger l&apos;huile du compresseur toutes les 500 heures.</p>");
  const page = (topic: string) => Array.from({ length: 4 }, (_, i) => `Boiler B-2 ${topic} step ${i}.`).join(" ");
  writeFileSync(join(docs, "sub", "manual.pdf"), minimalPdf([page("blowdown"), page("water treatment")], "Boiler"));
  writeFileSync(join(docs, "sub", "broken.pdf"), "%PDF-1.4 nothing");
  writeFileSync(join(docs, "image.png"), "not indexed");
  writeFileSync(join(docs, ".hidden", "secret.txt"), "skipped");
  const chunk = { maxTokens: 24, overlapTokens: 4, countTokens: words };

  it("indexes supported files in whole-file commits, skips unchanged files, replaces changed ones", async () => {
    const dir = join(root, "index-a");
    const encoder = new WordHashEncoder();
    expect(collectFiles([docs]).files.map((f) => f.slice(docs.length + 1))).toEqual(["pump.txt", "sub/broken.pdf", "sub/compresseur.html", "sub/manual.pdf", "sub/valve.md"]);
    const writer = await IndexWriter.open(dir, { create: { dim: encoder.dim } });
    const first = await ingestPaths(writer, encoder, [docs], { chunk, commitEvery: 4, metadata: { site: "north" } });
    expect(first).toMatchObject({ files: 5, unchanged: 0, indexed: 4, cancelled: false });
    expect(first.skipped.map((s) => s.path)).toEqual([join(docs, "sub", "broken.pdf")]);
    expect(first.generation).toBeGreaterThan(1); // several commits
    const passages = first.passages;

    const again = await ingestPaths(writer, encoder, [docs], { chunk, commitEvery: 4, metadata: { site: "north" } });
    expect(again).toMatchObject({ unchanged: 4, indexed: 0, passages: 0, generation: first.generation });

    writeFileSync(join(docs, "pump.txt"), "Pump P-7 must be primed before start-up.");
    const changed = await ingestPaths(writer, encoder, [docs], { chunk, metadata: { site: "north" } });
    expect(changed).toMatchObject({ unchanged: 3, indexed: 1, passages: 1 });
    expect(changed.removed).toBeGreaterThan(0); // the longer version's extra passages

    const reader = await IndexReader.open(dir);
    expect(reader.stats().documents).toBe(passages - changed.removed);
    const [q] = await encoder.encodeQueries(["boiler water treatment"]);
    const [hit] = await reader.search(q, { k: 1 });
    expect(hit).toMatchObject({ source: join(docs, "sub", "manual.pdf"), metadata: { type: "pdf", title: "Boiler", page: 2, site: "north" } });
    const [fr] = await reader.search((await encoder.encodeQueries(["huile"]))[0], { k: 1, filter: { type: "html" } });
    expect(fr.text).toBe("Vidanger l'huile du compresseur toutes les 500 heures.");
    await reader.close();

    const removed = removePaths(writer, [join(docs, "sub")]);
    expect(removed.sources).toBe(3);
    await writer.commit();
    expect([...writer.documents()].every((d) => d.source === join(docs, "pump.txt"))).toBe(true);
    await writer.close();
  });

  it("cancelling keeps the batches already committed and nothing of the one in progress", async () => {
    const dir = join(root, "index-b");
    const encoder = new WordHashEncoder();
    const controller = new AbortController();
    const writer = await IndexWriter.open(dir, { create: { dim: encoder.dim } });
    const sizes = new Map<string, number>();
    for (const f of collectFiles([docs]).files) sizes.set(f, 0);
    encoder.beforeEach = (n) => n === 3 && controller.abort(); // during the second batch
    const report = await ingestPaths(writer, encoder, [docs], { chunk, commitEvery: 2, signal: controller.signal });
    expect(report.cancelled).toBe(true);
    expect(writer.pendingChanges).toEqual({ upserts: 0, deletes: 0 });
    await writer.close();
    const reader = await IndexReader.open(dir);
    const committed = [...reader.documents()];
    expect(committed.length).toBe(report.passages);
    expect(report.indexed).toBeGreaterThan(0);
    // Whole files only: every committed file has all its passages.
    for (const source of new Set(committed.map((d) => d.source))) {
      const ids = committed.filter((d) => d.source === source).map((d) => Number(d.id.split("#")[1]));
      expect(ids.sort((a, b) => a - b)).toEqual(ids.map((_, i) => i));
    }
    await reader.close();
  });
});
