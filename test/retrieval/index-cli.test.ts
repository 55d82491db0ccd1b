/** `lfm index` and `lfm search` end to end on the bundled tiny ColBERT model, as a script would run them. */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-index-cli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const docs = join(root, "docs");
mkdirSync(join(docs, "fr"), { recursive: true });
writeFileSync(join(docs, "pump.txt"), "The centrifugal pump P-7 must be primed before start-up.\n\nIf the pump cavitates, reduce the suction lift.");
writeFileSync(join(docs, "valve.md"), "# Valve V-12\n\nReplace the gland packing of valve V-12 every 2000 hours.");
writeFileSync(join(docs, "fr", "compresseur.html"), "<title>Compresseur</title><p>Vidanger l&apos;huile du compresseur toutes les 500 heures.</p>");
const index = join(root, "index");

interface SearchJson {
  results: Array<{ id: string; score: number; text: string; source: string; metadata: Record<string, unknown> }>;
}

describe("lfm index / lfm search", () => {
  it("indexes files, skips them when unchanged, and searches with the stable --json contract", async () => {
    const added = runLfmJson<{ indexed: number; passages: number }>(["index", "add", "--index", index, "--precision", "fp32", "--meta", "site=north", "--json", docs]);
    expect(added).toMatchObject({ indexed: 3, passages: 4, cancelled: false });
    expect(runLfmJson(["index", "add", "--index", index, "--precision", "fp32", "--meta", "site=north", "--json", docs])).toMatchObject({ indexed: 0, unchanged: 3 });

    const query = "pump cavitation";
    const out = runLfmJson<SearchJson>(["search", "--index", index, "--precision", "fp32", "-k", "3", "--json", query]);
    expect(Object.keys(out)).toEqual(["results"]);
    expect(out.results.length).toBe(3);
    for (const r of out.results) expect(Object.keys(r)).toEqual(["id", "score", "text", "source", "metadata"]);
    expect(out.results[0].metadata).toMatchObject({ site: "north" });
    const scores = out.results.map((r) => r.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);

    // The same as the library computes: query encoded in-process, scored exhaustively.
    const encoder = await ColbertEncoder.load(join(FIXTURES, "retrieval/tiny-lfm2-colbert"), { precision: "fp32", cacheDir: TEST_CACHE });
    const [q] = await encoder.encodeQueries([query]);
    await encoder.release();
    const reader = await IndexReader.open(index);
    const exact = await reader.search(q, { k: 3, exhaustive: true });
    await reader.close();
    expect(out.results.map((r) => r.id)).toEqual(exact.map((h) => h.id));
    out.results.forEach((r, i) => expect(r.score).toBeCloseTo(exact[i].score, 4));

    // The index recorded that its vectors were made at fp32, so a search without --precision
    // encodes the query at fp32 too (not at the encoder's default q8).
    const byDefault = runLfmJson<SearchJson>(["search", "--index", index, "-k", "3", "--json", query]);
    expect(byDefault.results.map((r) => r.score)).toEqual(scores);
    const atQ4 = runLfmJson<SearchJson>(["search", "--index", index, "--precision", "q4", "-k", "3", "--json", query]);
    expect(atQ4.results.map((r) => r.score)).not.toEqual(scores);

    const html = runLfmJson<SearchJson>(["search", "--index", index, "--precision", "fp32", "--filter", "type=html", "--json", "huile"]);
    expect(html.results.map((r) => r.source)).toEqual([join(docs, "fr", "compresseur.html")]);
    expect(html.results[0].metadata).toMatchObject({ type: "html", title: "Compresseur" });
  });

  it("removes files, reports stats, compacts, and fails with typed errors", () => {
    const removed = runLfmJson<{ passages: number; sources: number }>(["index", "rm", "--index", index, "--json", join(docs, "fr")]);
    expect(removed).toMatchObject({ passages: 1, sources: 1 });
    expect(runLfmJson(["index", "compact", "--index", index, "--json"])).toMatchObject({ segments: 1 });
    const stats = runLfmJson<Record<string, unknown>>(["index", "stats", "--index", index, "--json"]);
    expect(stats).toMatchObject({ documents: 3, deletedDocuments: 0, sources: 2, dim: 16, storage: "float16", model: { name: "tiny-lfm2-colbert", precision: "fp32" } });

    const missing = runLfm(["search", "--index", join(root, "nothing"), "x"]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("error [INDEX_NOT_FOUND]");
    const otherModel = runLfm(["index", "add", "--index", index, "--model", join(FIXTURES, "text/tiny-lfm2"), docs]);
    expect(otherModel.status).toBe(2);
    expect(otherModel.stderr).toContain("error [INDEX_MODEL_MISMATCH]");
    expect(runLfm(["index", "add", "--index", index]).stderr).toContain("error [INVALID_ARGUMENT]");
    expect(runLfm(["search", "--index", index, "--precision", "q3", "x"]).stderr).toContain("error [INVALID_ARGUMENT]");
  });

  it("filters by path prefix and modification date (--path-prefix, --filter KEY^=, --after, --before), and refuses bad dates", () => {
    const dated = join(root, "dated");
    mkdirSync(join(dated, "manuals"), { recursive: true });
    mkdirSync(join(dated, "notes"));
    const files = { "manuals/pump.txt": "2024-03-05T10:00:00Z", "manuals/valve.txt": "2023-07-01T08:00:00Z", "notes/pump-log.txt": "2024-11-20T16:30:00Z" };
    for (const [name, when] of Object.entries(files)) {
      writeFileSync(join(dated, name), `Pump P-7 maintenance note for ${name}: check the seals and prime the pump.`);
      utimesSync(join(dated, name), new Date(when), new Date(when));
    }
    const idx = join(root, "dated-index");
    runLfmJson(["index", "add", "--index", idx, "--json", dated]);
    const sources = (...flags: string[]) => runLfmJson<SearchJson>(["search", "--index", idx, "--json", ...flags, "pump seals"]).results.map((r) => r.source.slice(dated.length + 1)).sort();
    const all = runLfmJson<SearchJson>(["search", "--index", idx, "--json", "pump seals"]).results;
    expect(all.find((r) => r.source.endsWith("valve.txt"))?.metadata.modified).toBe("2023-07-01T08:00:00Z");
    expect(sources("--path-prefix", `${join(dated, "manuals")}/`)).toEqual(["manuals/pump.txt", "manuals/valve.txt"]);
    expect(sources("--filter", `source^=${join(dated, "notes")}/`)).toEqual(["notes/pump-log.txt"]);
    expect(sources("--after", "2024-01-01", "--before", "2025-01-01")).toEqual(["manuals/pump.txt", "notes/pump-log.txt"]);
    expect(sources("--after", "2024-01-01", "--path-prefix", join(dated, "manuals"))).toEqual(["manuals/pump.txt"]);
    expect(sources("--before", "2024-03-05T10:00:00Z")).toEqual(["manuals/valve.txt"]);
    const bad = runLfm(["search", "--index", idx, "--after", "2024-02-30", "pump"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("error [INVALID_ARGUMENT]: --after must be a date");
    const backwards = runLfm(["search", "--index", idx, "--after", "2025-01-01", "--before", "2024-01-01", "pump"]);
    expect(backwards.status).toBe(2);
    expect(backwards.stderr).toContain("must be later than --after");
  });

  it("a new index without --precision records the encoder's default, q8", () => {
    const fresh = join(root, "fresh");
    runLfmJson(["index", "add", "--index", fresh, "--json", join(docs, "valve.md")]);
    expect(runLfmJson<Record<string, unknown>>(["index", "stats", "--index", fresh, "--json"])).toMatchObject({ model: { precision: "q8" } });
    expect(runLfm(["index", "stats", "--index", fresh]).stdout).toContain("vectors made at q8");
  });
});
