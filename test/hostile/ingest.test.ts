/**
 * Hostile input to `lfm index add` / `lfm search` (issue 15): special files named `.txt` (a FIFO
 * hung the add, a link to /dev/zero read without end), files that cannot be read named explicitly
 * (a fake PDF made an empty index and exit 0) or found in folders, terminal escapes in a corpus
 * and in file names, UTF-16 text (rejected as binary), `--index` naming a file (reported as
 * INDEX_LOCKED), a damaged index (whose advice did not work), and an interrupted add of one big
 * file (which lost all of it). "Big" is simulated with small commit intervals and size caps.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { IndexWriter } from "../../retrieval/index/writer.ts";
import { chunkText } from "../../retrieval/ingest/chunker.ts";
import { extractText } from "../../retrieval/ingest/extract.ts";
import { type IngestProgress, ingestPaths } from "../../retrieval/ingest/ingest.ts";
import { parseByteSize, readRegularFile } from "../../retrieval/ingest/source-file.ts";
import { LFM_BIN, runLfm, runLfmJson } from "../helpers/cli.ts";
import { expectCode } from "../helpers/errors.ts";
import { TEST_CACHE } from "../helpers/reference.ts";
import { WordHashEncoder, minimalPdf } from "../retrieval/fake-encoder.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-hostile-ingest-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
const chunk = { maxTokens: 24, overlapTokens: 4, countTokens: words };
/** A text of `n` sentences of 8 words: about n / 3 passages of 24 words. */
const sentences = (n: number, topic = "pump") => Array.from({ length: n }, (_, i) => `Step ${i} of the ${topic} check reads gauge ${i}.`).join(" ");

function folder(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function searchFor(index: string, encoder: WordHashEncoder, query: string, k = 5) {
  const reader = await IndexReader.open(index);
  try {
    return await reader.search((await encoder.encodeQueries([query]))[0], { k });
  } finally {
    await reader.close();
  }
}

describe("special files and the size cap", () => {
  const dir = folder("special");
  const fifo = join(dir, "pipe.txt");
  execFileSync("mkfifo", [fifo]);
  const zero = join(dir, "zero.txt");
  symlinkSync("/dev/zero", zero);
  writeFileSync(join(dir, "pump.txt"), "Pump P-7 must be primed before start-up.");

  it("a FIFO named .txt given explicitly fails at once with NOT_A_REGULAR_FILE and creates no index", () => {
    const index = join(root, "idx-fifo", "nested");
    const r = runLfm(["index", "add", "--index", index, fifo], { timeoutMs: 60_000 });
    expect(r.status, r.stderr).toBe(2); // null: killed by the timeout, i.e. it hung on the FIFO
    expect(r.stderr).toContain("error [NOT_A_REGULAR_FILE]");
    expect(r.stderr).toContain("named pipe");
    expect(existsSync(join(root, "idx-fifo"))).toBe(false); // not even the parent it would have made
  });

  it("a link to /dev/zero named .txt given explicitly fails with NOT_A_REGULAR_FILE, nothing read", () => {
    const index = join(root, "idx-zero");
    const r = runLfm(["index", "add", "--index", index, zero], { timeoutMs: 60_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain("error [NOT_A_REGULAR_FILE]");
    expect(r.stderr).toContain("character device");
    expect(existsSync(index)).toBe(false);
  });

  it("the reader itself refuses both (checked on the open descriptor) and never reads past the cap", () => {
    expectCode(() => readRegularFile(fifo, 1024), "NOT_A_REGULAR_FILE", "named pipe");
    expectCode(() => readRegularFile(zero, 1024), "NOT_A_REGULAR_FILE", "character device");
    const big = join(root, "big.bin.txt");
    writeFileSync(big, "x".repeat(5000));
    expectCode(() => readRegularFile(big, 4999), "FILE_TOO_LARGE", "--max-file-size");
    expect(readRegularFile(big, 5000).length).toBe(5000);
  });

  it("in a walked folder: the FIFO is skipped as not regular, the link not followed, the rest indexed", async () => {
    const encoder = new WordHashEncoder();
    const writer = await IndexWriter.open(join(root, "idx-special-walk"), { create: { dim: encoder.dim } });
    const report = await ingestPaths(writer, encoder, [dir], { chunk });
    await writer.close();
    expect(report).toMatchObject({ indexed: 1, passages: 1, files: 1 });
    expect(report.skipped).toEqual([{ path: fifo, kind: "not-regular", reason: expect.stringContaining("named pipe") }]);
  });

  it("--max-file-size: a bigger file named explicitly is FILE_TOO_LARGE (exit 2, no index); in a folder it is skipped", async () => {
    const docs = folder("sized");
    writeFileSync(join(docs, "small.txt"), "Valve V-12 packing.");
    writeFileSync(join(docs, "large.txt"), sentences(60)); // 2.4 KiB
    const index = join(root, "idx-sized");
    const r = runLfm(["index", "add", "--index", index, "--max-file-size", "1K", join(docs, "large.txt")]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain("error [FILE_TOO_LARGE]");
    expect(r.stderr).toContain("1 KiB limit");
    expect(existsSync(index)).toBe(false);

    const encoder = new WordHashEncoder();
    const writer = await IndexWriter.open(index, { create: { dim: encoder.dim } });
    const report = await ingestPaths(writer, encoder, [docs], { chunk, maxFileSize: 1024 });
    await writer.close();
    expect(report).toMatchObject({ indexed: 1, passages: 1 });
    expect(report.skipped.map((s) => [s.path, s.kind])).toEqual([[join(docs, "large.txt"), "too-large"]]);
  });

  it("--max-file-size takes units, within bounds; bad values are INVALID_ARGUMENT before anything runs", () => {
    expect(parseByteSize("50M", "--max-file-size")).toBe(50 * 1024 ** 2);
    expect(parseByteSize("2G", "--max-file-size")).toBe(2 * 1024 ** 3);
    expect(parseByteSize("512k", "--max-file-size")).toBe(512 * 1024);
    expect(parseByteSize("1.5MiB", "--max-file-size")).toBe(1.5 * 1024 ** 2);
    expect(parseByteSize("1048576", "--max-file-size")).toBe(1048576);
    for (const bad of ["0", "-1", "3G", "10T", "abc", "", "1e9", "0.5"]) expectCode(() => parseByteSize(bad, "--max-file-size"), "INVALID_ARGUMENT", "--max-file-size");
    const r = runLfm(["index", "add", "--index", join(root, "idx-bad-size"), "--max-file-size", "5X", join(root, "special", "pump.txt")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("error [INVALID_ARGUMENT]: --max-file-size expects a size");
    expect(existsSync(join(root, "idx-bad-size"))).toBe(false);
  });
});

describe("files that cannot be read", () => {
  const docs = folder("mixed");
  writeFileSync(join(docs, "pump.txt"), "The centrifugal pump P-7 must be primed before start-up.");
  const fake = join(docs, "manual.pdf");
  writeFileSync(fake, "this is not a PDF at all");

  it("a fake PDF given explicitly: DOCUMENT_UNREADABLE, exit 2, no index folder created", () => {
    const index = join(root, "idx-fake-pdf");
    const r = runLfm(["index", "add", "--index", index, fake]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain("error [DOCUMENT_UNREADABLE]");
    expect(r.stderr).not.toContain("skipped");
    expect(existsSync(index)).toBe(false);
  });

  it("an empty or text-less PDF is unreadable too; an explicit unsupported type is an error, not a skip", async () => {
    await expectCode(extractText("empty.pdf", new Uint8Array(0)), "DOCUMENT_UNREADABLE");
    await expectCode(extractText("scan.pdf", minimalPdf([""], "Scan")), "DOCUMENT_UNREADABLE", "without any text");
    const png = join(docs, "photo.png");
    writeFileSync(png, "png");
    const r = runLfm(["index", "add", "--index", join(root, "idx-png"), png]);
    rmSync(png);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("error [UNSUPPORTED_FILE_TYPE]");
    expect(existsSync(join(root, "idx-png"))).toBe(false);
  });

  it("the same fake PDF in a walked folder: skipped with a summary line, exit 0; --strict: exit 2, nothing created", () => {
    const index = join(root, "idx-walk");
    const strict = runLfm(["index", "add", "--index", index, "--strict", docs]);
    expect(strict.status, strict.stderr).toBe(2);
    expect(strict.stderr).toContain("error [FILES_SKIPPED]");
    expect(strict.stderr).toContain(fake);
    expect(existsSync(index)).toBe(false);

    const r = runLfm(["index", "add", "--index", index, docs]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain("skipped 1 file (1 unreadable); --strict to fail on them\n");
    expect(r.stdout).toContain("1 file(s) indexed (1 passages)");
    expect(r.stdout).toContain("1 skipped");
  });
});

describe("terminal escapes in the corpus and in file names", () => {
  const docs = folder("escapes");
  writeFileSync(join(docs, "evil.txt"), "x \x1b]0;pwned\x07 the pump P-7 \x1b[2J primed\n");
  const newlineName = join(docs, "new\nline.txt");
  writeFileSync(newlineName, "the valve V-12 needs new packing\n");
  const index = join(root, "idx-escapes");

  it("lfm search shows control characters as visible escapes; --json keeps the exact text and names", () => {
    const added = runLfm(["index", "add", "--index", index, "--json", docs]);
    expect(added.status, added.stderr).toBe(0);

    const shown = runLfm(["search", "--index", index, "-k", "2", "pump valve"]);
    expect(shown.status, shown.stderr).toBe(0);
    expect(shown.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/); // no raw control character reaches the terminal
    expect(shown.stdout).toContain("x \\x1b]0;pwned\\x07 the pump P-7 \\x1b[2J primed");
    // Line-based output holds: a header line per hit ("N. score  source") and one snippet line.
    const lines = shown.stdout.trimEnd().split("\n");
    expect(lines.length).toBe(4);
    expect(lines.filter((l) => /^ {1}\d\. /.test(l)).length).toBe(2);
    expect(shown.stdout).toContain(`${join(docs, "new")}\\nline.txt`);

    const json = runLfm(["search", "--index", index, "-k", "2", "--json", "pump valve"]);
    const results = (JSON.parse(json.stdout) as { results: Array<{ text: string; source: string }> }).results;
    expect(results.map((h) => h.source).sort()).toEqual([join(docs, "evil.txt"), newlineName]);
    expect(results.find((h) => h.source.endsWith("evil.txt"))?.text).toBe("x \x1b]0;pwned\x07 the pump P-7 \x1b[2J primed");
  });

  it("file names in the skipped summary are escaped too", () => {
    const bad = folder("escapes-bad");
    writeFileSync(join(bad, "fake\x1b]0;owned\x07.pdf"), "not a pdf");
    writeFileSync(join(bad, "ok.txt"), "the pump P-7");
    const r = runLfm(["index", "add", "--index", join(root, "idx-escapes-bad"), bad]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain("fake\\x1b]0;owned\\x07.pdf");
    expect(r.stderr).not.toContain("\x1b");
  });
});

describe("UTF-16 text files", () => {
  const utf16le = (text: string) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]);
  const utf16be = (text: string) => utf16le(text).swap16();

  it("decodes UTF-16 LE and BE with a byte-order mark (not rejected as binary)", async () => {
    expect((await extractText("le.txt", utf16le("Pompe P-7 : amorçage 😀\r\nfin"))).text).toBe("Pompe P-7 : amorçage 😀\nfin");
    expect((await extractText("be.md", utf16be("# Vanne\n\nJoint de presse-étoupe"))).text).toBe("# Vanne\n\nJoint de presse-étoupe");
    expect((await extractText("be.html", utf16be("<p>Huile &amp; filtre</p>"))).text).toBe("Huile & filtre");
    await expectCode(extractText("odd.txt", Buffer.from([0xff, 0xfe, 0x41])), "DOCUMENT_UNREADABLE", "odd number of bytes");
  });

  it("UTF-16 files are indexed and found", async () => {
    const docs = folder("utf16");
    writeFileSync(join(docs, "le.txt"), utf16le("Windows Notepad wrote this pump manual"));
    writeFileSync(join(docs, "be.txt"), utf16be("big endian valve manual"));
    const encoder = new WordHashEncoder();
    const index = join(root, "idx-utf16");
    const writer = await IndexWriter.open(index, { create: { dim: encoder.dim } });
    const report = await ingestPaths(writer, encoder, [docs], { chunk });
    await writer.close();
    expect(report).toMatchObject({ indexed: 2, skipped: [] });
    expect((await searchFor(index, encoder, "pump", 1))[0]).toMatchObject({ source: join(docs, "le.txt"), text: "Windows Notepad wrote this pump manual" });
    expect((await searchFor(index, encoder, "valve", 1))[0]).toMatchObject({ source: join(docs, "be.txt"), text: "big endian valve manual" });
  });
});

describe("the index folder", () => {
  it("--index naming a file: INDEX_NOT_A_FOLDER for add, search and stats; the file untouched", async () => {
    const file = join(root, "not-a-folder.txt");
    writeFileSync(file, "my notes");
    for (const args of [["index", "add", "--index", file, join(root, "special", "pump.txt")], ["search", "--index", file, "pump"], ["index", "stats", "--index", file]]) {
      const r = runLfm(args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain("error [INDEX_NOT_A_FOLDER]");
      expect(r.stderr).toContain("is a file, not an index folder");
    }
    expect(readFileSync(file, "utf8")).toBe("my notes");
    await expectCode(IndexWriter.open(join(file, "sub"), { create: { dim: 4 } }), "INDEX_NOT_A_FOLDER", "a part of that path is a file");
  });

  it("a damaged index says how to repair it, and that advice works", async () => {
    const docs = folder("to-damage");
    writeFileSync(join(docs, "pump.txt"), sentences(9));
    const index = join(root, "idx-damaged");
    const encoder = new WordHashEncoder();
    const build = async () => {
      const writer = await IndexWriter.open(index, { create: { dim: encoder.dim } });
      await ingestPaths(writer, encoder, [docs], { chunk });
      await writer.close();
    };
    await build();
    const flipLastByte = (suffix: string) => {
      const name = readdirSync(index).find((f) => f.endsWith(suffix)) as string;
      const bytes = readFileSync(join(index, name));
      bytes[bytes.length - 1] ^= 0xff;
      writeFileSync(join(index, name), bytes);
    };

    // A damaged graph: compact rebuilds it from the stored vectors.
    flipLastByte(".hnsw");
    const graphError = await expectCode(IndexReader.open(index), "INDEX_CORRUPT");
    expect(graphError.message).toContain(`lfm index compact --index ${index}`);
    const writer = await IndexWriter.open(index);
    await writer.compact();
    await writer.close();
    expect((await searchFor(index, encoder, "gauge 3", 1))[0].text).toContain("gauge 3");

    // Damaged passages: `lfm index add` alone refuses the folder; the advice removes it first.
    flipLastByte(".docs.json");
    const docsError = await expectCode(IndexReader.open(index), "INDEX_CORRUPT");
    expect(docsError.message).toContain(`rm -r ${index} && lfm index add --index ${index} FILES…`);
    expect(docsError.message).not.toContain("rebuild it (lfm index add)");
    await expectCode(IndexWriter.open(index, { create: { dim: encoder.dim } }), "INDEX_CORRUPT");
    rmSync(index, { recursive: true });
    await build();
    expect((await searchFor(index, encoder, "gauge 3", 1))[0].text).toContain("gauge 3");
  });
});

describe("an interrupted add of a big file", () => {
  const docs = folder("big");
  const big = join(docs, "big.txt");
  const index = join(root, "idx-big");
  const passagesOf = (reader: IndexReader) => [...reader.documents()].filter((d) => d.source === big);
  /** Writes the big file; returns how many passages it makes. */
  const writeBig = (text: string) => {
    writeFileSync(big, text);
    return chunkText(text, chunk).length;
  };

  it("keeps the commits made within the file; the next add encodes only the rest", async () => {
    const total = writeBig(sentences(60));
    expect(total).toBeGreaterThan(12);
    const encoder = new WordHashEncoder();
    const controller = new AbortController();
    encoder.beforeEach = (n) => n === 9 && controller.abort(); // after the commits of passages 0–3 and 4–7
    const writer = await IndexWriter.open(index, { create: { dim: encoder.dim } });
    const events: IngestProgress[] = [];
    const cut = await ingestPaths(writer, encoder, [docs], { chunk, commitEvery: 4, signal: controller.signal, onProgress: (e) => events.push(e) });
    expect(cut).toMatchObject({ cancelled: true, passages: 8, indexed: 0, generation: 2 });
    expect(writer.pendingChanges).toEqual({ upserts: 0, deletes: 0 });
    await writer.close();
    const encoding = events.filter((e) => e.phase === "encoding");
    expect(encoding.at(-1)).toMatchObject({ files: 0, totalFiles: 1, total });

    let reader = await IndexReader.open(index);
    expect(passagesOf(reader).map((d) => d.id).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `${big}#${i}`).sort());
    await reader.close();

    const resumed = new WordHashEncoder();
    const writer2 = await IndexWriter.open(index);
    const rest = await ingestPaths(writer2, resumed, [docs], { chunk, commitEvery: 4 });
    expect(rest).toMatchObject({ cancelled: false, indexed: 1, passages: total - 8, unchanged: 0 });
    expect(resumed.encoded).toBe(total - 8);
    const again = await ingestPaths(writer2, resumed, [docs], { chunk, commitEvery: 4 });
    expect(again).toMatchObject({ unchanged: 1, indexed: 0, passages: 0 });
    await writer2.close();
    reader = await IndexReader.open(index);
    const all = passagesOf(reader);
    expect(all.length).toBe(total);
    expect(new Set(all.map((d) => d.sourceHash)).size).toBe(1);
    await reader.close();
  });

  it("Ctrl-C (SIGINT) in lfm index add of one big file keeps the commits made within it (exit 130)", async () => {
    const dir = folder("big-cli");
    writeFileSync(join(dir, "big.txt"), sentences(3000));
    const idx = join(root, "idx-big-cli");
    const child = spawn(process.execPath, [LFM_BIN, "index", "add", "--index", idx, "--commit-every", "20", dir], {
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    const generation = () => {
      try {
        return (JSON.parse(readFileSync(join(idx, "manifest.json"), "utf8")) as { body: { generation: number } }).body.generation;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 90_000;
    while (generation() < 2) {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`no commit appeared: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    expect(stdout).toMatch(/^cancelled — committed so far: 0 file\(s\) indexed \(\d+ passages\)/);
    const stats = runLfmJson<{ documents: number; generation: number }>(["index", "stats", "--index", idx, "--json"]);
    expect(stats.documents).toBeGreaterThanOrEqual(40);
    expect(stats.generation).toBeGreaterThanOrEqual(2);
  });

  it("a changed big file, interrupted: its old version is gone with the first commit, never mixed with the new", async () => {
    expect(writeBig(sentences(30, "valve"))).toBeGreaterThan(5); // other words
    const encoder = new WordHashEncoder();
    const controller = new AbortController();
    encoder.beforeEach = (n) => n === 5 && controller.abort();
    const writer = await IndexWriter.open(index);
    const cut = await ingestPaths(writer, encoder, [docs], { chunk, commitEvery: 4, signal: controller.signal });
    await writer.close();
    expect(cut).toMatchObject({ cancelled: true, passages: 4 });
    const reader = await IndexReader.open(index);
    const left = passagesOf(reader);
    await reader.close();
    expect(left.length).toBe(4);
    expect(left.every((d) => d.text.includes("valve"))).toBe(true);
  });

  it("commits after commitSeconds even below commitEvery", async () => {
    const total = writeBig(sentences(120));
    expect(total).toBeGreaterThan(32);
    const encoder = new WordHashEncoder();
    const writer = await IndexWriter.open(join(root, "idx-timed"), { create: { dim: encoder.dim } });
    const report = await ingestPaths(writer, encoder, [docs], { chunk, commitEvery: 1000, commitSeconds: 0 });
    await writer.close();
    expect(report).toMatchObject({ indexed: 1, passages: total });
    expect(report.generation).toBeGreaterThanOrEqual(3); // several commits within the one file
  });

  it("an index written before part commits (bare file hashes) still counts its files as unchanged", async () => {
    const dir = folder("legacy");
    writeFileSync(join(dir, "old.txt"), sentences(6));
    const encoder = new WordHashEncoder();
    const writer = await IndexWriter.open(join(root, "idx-legacy"), { create: { dim: encoder.dim } });
    await ingestPaths(writer, encoder, [dir], { chunk });
    for (const d of [...writer.documents()]) {
      const [embeddings] = await encoder.encodeDocuments([d.text]);
      writer.upsert({ ...d, embeddings, sourceHash: d.sourceHash.split(":")[0] });
    }
    await writer.commit();
    const before = encoder.encoded;
    expect(await ingestPaths(writer, encoder, [dir], { chunk })).toMatchObject({ unchanged: 1, indexed: 0 });
    expect(encoder.encoded).toBe(before);
    await writer.close();
  });
});

describe("progress", () => {
  const docs = folder("progress");
  writeFileSync(join(docs, "a.txt"), sentences(9));
  writeFileSync(join(docs, "b.md"), "# Valve\n\nReplace the packing.");

  const onTerminal = (args: string[]) => {
    const r = spawnSync("python3", [join(import.meta.dirname, "..", "helpers", "pty-run.py"), "120", process.execPath, LFM_BIN, ...args], {
      encoding: "utf8",
      timeout: 180_000,
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
    });
    expect(r.status, r.stderr).toBe(0);
    const { status, output } = JSON.parse(r.stdout) as { status: number | null; output: string };
    return { exit_status: status, output: Buffer.from(output, "hex").toString("utf8") };
  };

  it("a terminal shows files and passages done; --json shows none", () => {
    const shown = onTerminal(["index", "add", "--index", join(root, "idx-progress"), docs]);
    expect(shown.exit_status, shown.output).toBe(0);
    expect(shown.output).toMatch(/indexing .*\d+\/2 files {2}\d+\/\d+ passages/);
    const quiet = onTerminal(["index", "add", "--index", join(root, "idx-progress-json"), "--json", docs]);
    expect(quiet.exit_status, quiet.output).toBe(0);
    expect(quiet.output).not.toContain("indexing");
    expect(quiet.output).not.toContain("\x1b[2K"); // the bar's clear-line
  });
});
