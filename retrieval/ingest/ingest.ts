/**
 * Files → passages → token vectors → index commits.
 *
 *   1. collect: the files named, and the supported files under the folders named (hidden ones skipped);
 *   2. hash each file (its bytes plus the passage settings and metadata): a file whose passages
 *      all carry that hash is unchanged and skipped;
 *   3. extract and chunk the changed files;
 *   4. encode and commit in batches of whole files (≈ `commitEvery` passages): a file's new
 *      passages and the removal of its old ones are always in the same commit.
 *
 * Cancelling (the AbortSignal, i.e. Ctrl-C in the CLI) keeps every batch already committed and
 * commits nothing of the batch in progress: the index never holds part of a file's new version.
 */
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, resolve, sep } from "node:path";
import { LfmError, isLfmError } from "../../text-core/errors.ts";
import type { Metadata } from "../index/format.ts";
import type { IndexWriter, NewDocument } from "../index/writer.ts";
import { type ChunkOptions, chunkText } from "./chunker.ts";
import { extractText, kindOf, pageAt } from "./extract.ts";

/** What ingest needs of an encoder (`ColbertEncoder` fits). */
export interface TokenEncoder {
  readonly dim: number;
  encodeQueries(texts: string[], opts?: { signal?: AbortSignal }): Promise<Array<{ rows: number; dim: number; data: Float32Array }>>;
  encodeDocuments(
    texts: string[],
    opts?: { signal?: AbortSignal; batchSize?: number; onProgress?: (done: number, total: number) => void },
  ): Promise<Array<{ rows: number; dim: number; data: Float32Array }>>;
}

export interface IngestOptions {
  chunk: ChunkOptions;
  /** Added to every passage's metadata. */
  metadata?: Metadata;
  /** Passages per commit, in whole files (default 128). */
  commitEvery?: number;
  signal?: AbortSignal;
  onProgress?: (event: IngestProgress) => void;
}

export type IngestProgress =
  | { phase: "reading"; done: number; total: number }
  | { phase: "encoding"; done: number; total: number }
  | { phase: "committing"; stage: string };

export interface IngestReport {
  /** Supported files found under the paths. */
  files: number;
  unchanged: number;
  /** Files whose passages were (re)committed. */
  indexed: number;
  /** Passages committed. */
  passages: number;
  /** Old passages of changed files removed. */
  removed: number;
  skipped: Array<{ path: string; reason: string }>;
  cancelled: boolean;
  generation: number;
}

interface PreparedFile {
  path: string;
  hash: string;
  docs: Array<Omit<NewDocument, "embeddings">>;
  /** Ids of this file's passages now in the index. */
  previous: string[];
}

const DEFAULT_COMMIT_EVERY = 128;

/** Files under `paths` that ingest reads, sorted; unsupported files named explicitly are reported. */
export function collectFiles(paths: string[]): { files: string[]; skipped: Array<{ path: string; reason: string }> } {
  const files = new Set<string>();
  const skipped: Array<{ path: string; reason: string }> = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && kindOf(path)) files.add(path);
    }
  };
  for (const p of paths) {
    const abs = resolve(p);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(abs);
    } catch {
      throw new LfmError("FILE_NOT_FOUND", `${p} does not exist.`);
    }
    if (st.isDirectory()) walk(abs);
    else if (kindOf(abs)) files.add(abs);
    else skipped.push({ path: abs, reason: "unsupported file type (.txt, .md, .html, .pdf are indexed)" });
  }
  return { files: [...files].sort(), skipped };
}

export async function ingestPaths(writer: IndexWriter, encoder: TokenEncoder, paths: string[], opts: IngestOptions): Promise<IngestReport> {
  const { files, skipped } = collectFiles(paths);
  const report: IngestReport = { files: files.length, unchanged: 0, indexed: 0, passages: 0, removed: 0, skipped, cancelled: false, generation: writer.generation };
  const settings = JSON.stringify({ max: opts.chunk.maxTokens, overlap: opts.chunk.overlapTokens, metadata: opts.metadata ?? {} });
  const indexed = new Map<string, { hashes: Set<string>; ids: string[] }>();
  for (const d of writer.documents()) {
    if (d.source === "") continue;
    const entry = indexed.get(d.source) ?? { hashes: new Set(), ids: [] };
    entry.hashes.add(d.sourceHash);
    entry.ids.push(d.id);
    indexed.set(d.source, entry);
  }

  // Read, hash, extract, chunk.
  const prepared: PreparedFile[] = [];
  for (let i = 0; i < files.length; i++) {
    if (opts.signal?.aborted) return { ...report, cancelled: true };
    opts.onProgress?.({ phase: "reading", done: i, total: files.length });
    const path = files[i];
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      skipped.push({ path, reason: `cannot read it: ${(e as Error).message}` });
      continue;
    }
    const hash = createHash("sha256").update(bytes).update(settings).digest("hex").slice(0, 32);
    const before = indexed.get(path);
    if (before && before.hashes.size === 1 && before.hashes.has(hash)) {
      report.unchanged++;
      continue;
    }
    try {
      prepared.push({ path, hash, docs: await passagesOf(path, bytes, hash, opts), previous: before?.ids ?? [] });
    } catch (e) {
      if (!isLfmError(e, "DOCUMENT_UNREADABLE") && !isLfmError(e, "UNSUPPORTED_FILE_TYPE")) throw e;
      skipped.push({ path, reason: e.message });
    }
  }
  opts.onProgress?.({ phase: "reading", done: files.length, total: files.length });

  // Encode and commit, whole files per batch.
  const total = prepared.reduce((n, f) => n + f.docs.length, 0);
  const commitEvery = opts.commitEvery ?? DEFAULT_COMMIT_EVERY;
  let encoded = 0;
  for (let first = 0; first < prepared.length; ) {
    let last = first;
    let passages = prepared[first].docs.length;
    while (last + 1 < prepared.length && passages + prepared[last + 1].docs.length <= commitEvery) passages += prepared[++last].docs.length;
    const batch = prepared.slice(first, last + 1);
    try {
      const texts = batch.flatMap((f) => f.docs.map((d) => d.text));
      const vectors = texts.length === 0 ? [] : await encoder.encodeDocuments(texts, {
        signal: opts.signal,
        onProgress: (done) => opts.onProgress?.({ phase: "encoding", done: encoded + done, total }),
      });
      let v = 0;
      let removed = 0;
      for (const f of batch) {
        const fresh = new Set(f.docs.map((d) => d.id));
        removed += writer.delete(f.previous.filter((id) => !fresh.has(id)));
        for (const d of f.docs) writer.upsert({ ...d, embeddings: vectors[v++] });
      }
      opts.onProgress?.({ phase: "committing", stage: "committing" });
      const result = await writer.commit({ signal: opts.signal, onProgress: (stage) => opts.onProgress?.({ phase: "committing", stage }) });
      encoded += texts.length;
      report.indexed += batch.length;
      report.passages += texts.length;
      report.removed += removed;
      report.generation = result.generation;
    } catch (e) {
      writer.rollback();
      if (isLfmError(e, "ABORTED")) return { ...report, cancelled: true };
      throw e;
    }
    first = last + 1;
  }
  return report;
}

async function passagesOf(path: string, bytes: Uint8Array, hash: string, opts: IngestOptions): Promise<Array<Omit<NewDocument, "embeddings">>> {
  const extracted = await extractText(path, bytes);
  return chunkText(extracted.text, opts.chunk).map((c) => {
    const metadata: Metadata = { type: extracted.kind };
    if (extracted.title) metadata.title = extracted.title;
    if (extracted.pageStarts) metadata.page = pageAt(extracted.pageStarts, c.start);
    return { id: `${path}#${c.index}`, text: c.text, source: path, start: c.start, end: c.end, sourceHash: hash, metadata: { ...metadata, ...opts.metadata } };
  });
}

/** Deletes (pending a commit) every passage whose source is one of `paths` or lies under one; returns how many. */
export function removePaths(writer: IndexWriter, paths: string[]): { passages: number; sources: number } {
  const targets = paths.map((p) => resolve(p));
  const ids: string[] = [];
  const sources = new Set<string>();
  for (const d of writer.documents()) {
    if (d.source !== "" && targets.some((t) => d.source === t || d.source.startsWith(t.endsWith(sep) ? t : t + sep))) {
      ids.push(d.id);
      sources.add(d.source);
    }
  }
  writer.delete(ids);
  return { passages: ids.length, sources: sources.size };
}
