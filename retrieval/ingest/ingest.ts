/**
 * Files → passages → token vectors → index commits.
 *
 *   1. collect: the files named, and the supported files under the folders named (hidden ones,
 *      `node_modules` and links inside folders skipped). A file named explicitly must be a regular
 *      file of a supported type that reads and extracts, or the add fails with its typed error
 *      before anything is committed. Files found in folders that cannot be indexed are skipped and
 *      reported (`strict`: they fail the add instead, also before any commit);
 *   2. read each file (regular files only, at most `maxFileSize` bytes: source-file.ts) and hash it
 *      (its bytes plus the passage settings and metadata); a file whose passages are all in the
 *      index at that hash is unchanged and skipped;
 *   3. extract and chunk the changed files;
 *   4. encode and commit: small files whole, several per commit (up to `commitEvery` passages); a
 *      file with more passages is committed in parts of `commitEvery`, and whatever is encoded is
 *      committed once `commitSeconds` have passed, so an interrupted add of one huge file keeps
 *      what it did.
 *
 * Each passage records its file's version as `<hash>:<passages in the file>`: a file is complete
 * when the index holds that many passages of that version. A file's first commit also removes its
 * passages of other versions (the index never mixes two versions of one file); a file left part
 * committed (by a cancel) is completed by the next add, which encodes only its missing passages.
 *
 * Cancelling (the AbortSignal, i.e. Ctrl-C in the CLI) keeps every commit made and drops what was
 * encoded since the last one.
 */
import { createHash } from "node:crypto";
import { type Dirent, readdirSync, statSync } from "node:fs";
import { join, resolve, sep } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import type { Metadata } from "../index/format.ts";
import type { IndexWriter, NewDocument } from "../index/writer.ts";
import { type ChunkOptions, chunkText } from "./chunker.ts";
import { KIND_OF_EXTENSION, extractText, kindOf, pageAt } from "./extract.ts";
import { DEFAULT_MAX_FILE_SIZE, MAX_FILE_SIZE_LIMIT, notRegular, readSourceFile } from "./source-file.ts";

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
  /** Passages per commit (default 128): smaller files are grouped whole, a bigger one split. */
  commitEvery?: number;
  /** Seconds after which the passages encoded so far are committed, even fewer than `commitEvery` (default 60; 0: after every few passages). */
  commitSeconds?: number;
  /** Files bigger than this many bytes are not read (default DEFAULT_MAX_FILE_SIZE, 256 MiB). */
  maxFileSize?: number;
  /** Files found in folders that cannot be indexed fail the add (FILES_SKIPPED) instead of being skipped. */
  strict?: boolean;
  signal?: AbortSignal;
  onProgress?: (event: IngestProgress) => void;
}

export type IngestProgress =
  | { phase: "reading"; done: number; total: number; path: string }
  /** `done`/`total` passages; `files` of `totalFiles` (the files to encode) have all their passages encoded. */
  | { phase: "encoding"; done: number; total: number; files: number; totalFiles: number }
  | { phase: "committing"; stage: string };

/** Why a file found in a folder was not indexed. */
export type SkipKind = "unreadable" | "too-large" | "not-regular";

export interface SkippedFile {
  path: string;
  reason: string;
  kind: SkipKind;
}

export interface IngestReport {
  /** Supported files found under the paths. */
  files: number;
  unchanged: number;
  /** Files whose passages were (re)committed, all of them. */
  indexed: number;
  /** Passages committed. */
  passages: number;
  /** Old passages of changed files removed. */
  removed: number;
  skipped: SkippedFile[];
  cancelled: boolean;
  generation: number;
}

type Passage = Omit<NewDocument, "embeddings">;

interface PreparedFile {
  path: string;
  /** Passages to encode: all of the file's, or those a cancelled add did not commit. */
  todo: Passage[];
  /** Committed passages of the file's other versions: removed by its first commit. */
  stale: string[];
  /** Of `stale`, those that no new passage replaces. */
  removed: number;
}

const DEFAULT_COMMIT_EVERY = 128;
const DEFAULT_COMMIT_SECONDS = 60;
/** Passages encoded per encoder call: how often the commit clock is looked at. */
const ENCODE_GROUP = 16;

export interface CollectedFiles {
  /** Absolute paths, sorted. */
  files: string[];
  /** Of `files`, those named explicitly (their failures are errors, not skips). */
  named: Set<string>;
  /** Entries found in folders that are not read (special files, folders that cannot be listed). */
  skipped: SkippedFile[];
}

/**
 * The files under `paths` that ingest reads. A path named explicitly that does not exist, is not a
 * regular file or folder, or is of an unsupported type is an error (FILE_NOT_FOUND,
 * NOT_A_REGULAR_FILE, UNSUPPORTED_FILE_TYPE).
 */
export function collectFiles(paths: string[]): CollectedFiles {
  const files = new Set<string>();
  const named = new Set<string>();
  const skipped: SkippedFile[] = [];
  const walk = (dir: string, explicit: boolean) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      if (explicit) throw new LfmError("DOCUMENT_UNREADABLE", `cannot list the folder ${dir}: ${(e as Error).message}.`, { cause: e });
      skipped.push({ path: dir, reason: `cannot list this folder: ${(e as Error).message}`, kind: "unreadable" });
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path, false);
      // Links inside folders are not followed: no cycles, no link to /dev/zero read by surprise.
      else if (entry.isSymbolicLink() || !kindOf(path)) continue;
      else if (entry.isFile()) files.add(path);
      else skipped.push({ path, reason: notRegular(path, entry).message, kind: "not-regular" });
    }
  };
  for (const p of paths) {
    const abs = resolve(p);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") throw new LfmError("FILE_NOT_FOUND", `${p} does not exist.`);
      throw new LfmError("DOCUMENT_UNREADABLE", `cannot read ${p}: ${(e as Error).message}.`, { cause: e });
    }
    if (st.isDirectory()) walk(abs, true);
    else if (!st.isFile()) throw notRegular(p, st);
    else if (!kindOf(abs)) {
      throw new LfmError("UNSUPPORTED_FILE_TYPE", `${p}: only ${Object.keys(KIND_OF_EXTENSION).join(", ")} files can be indexed. Convert it to one of those (e.g. plain text), or leave it out.`);
    } else {
      files.add(abs);
      named.add(abs);
    }
  }
  return { files: [...files].sort(), named, skipped };
}

/** "3 files (2 unreadable, 1 too large)". */
export function describeSkipped(skipped: SkippedFile[]): string {
  const labels: Record<SkipKind, string> = { unreadable: "unreadable", "too-large": "too large", "not-regular": "not regular files" };
  const counts = (Object.keys(labels) as SkipKind[]).map((k) => [k, skipped.filter((s) => s.kind === k).length] as const).filter(([, n]) => n > 0);
  return `${skipped.length} file${skipped.length === 1 ? "" : "s"} (${counts.map(([k, n]) => `${n} ${labels[k]}`).join(", ")})`;
}

export async function ingestPaths(writer: IndexWriter, encoder: TokenEncoder, paths: string[], opts: IngestOptions): Promise<IngestReport> {
  const commitEvery = opts.commitEvery ?? DEFAULT_COMMIT_EVERY;
  const commitSeconds = opts.commitSeconds ?? DEFAULT_COMMIT_SECONDS;
  const maxFileSize = opts.maxFileSize ?? DEFAULT_MAX_FILE_SIZE;
  if (!Number.isInteger(commitEvery) || commitEvery < 1) throw new LfmError("INVALID_ARGUMENT", `passages per commit must be a positive integer, got ${commitEvery}.`);
  if (!(commitSeconds >= 0 && Number.isFinite(commitSeconds))) throw new LfmError("INVALID_ARGUMENT", `seconds between commits must be 0 or more, got ${commitSeconds}.`);
  if (!Number.isInteger(maxFileSize) || maxFileSize < 1 || maxFileSize > MAX_FILE_SIZE_LIMIT) {
    throw new LfmError("INVALID_ARGUMENT", `the file size limit must be a whole number of bytes from 1 to ${MAX_FILE_SIZE_LIMIT}, got ${maxFileSize}.`);
  }
  const { files, named, skipped } = collectFiles(paths);
  const report: IngestReport = { files: files.length, unchanged: 0, indexed: 0, passages: 0, removed: 0, skipped, cancelled: false, generation: writer.generation };
  const settings = JSON.stringify({ max: opts.chunk.maxTokens, overlap: opts.chunk.overlapTokens, metadata: opts.metadata ?? {} });
  /** source → passage id → the file version it belongs to. */
  const indexed = new Map<string, Map<string, string>>();
  for (const d of writer.documents()) {
    if (d.source === "") continue;
    const passages = indexed.get(d.source) ?? new Map<string, string>();
    passages.set(d.id, d.sourceHash);
    indexed.set(d.source, passages);
  }

  // Read, hash, extract, chunk: every failure is known before the first commit.
  const prepared: PreparedFile[] = [];
  for (let i = 0; i < files.length; i++) {
    if (opts.signal?.aborted) return { ...report, cancelled: true };
    const path = files[i];
    opts.onProgress?.({ phase: "reading", done: i, total: files.length, path });
    try {
      const { bytes, modified } = readSourceFile(path, maxFileSize);
      const hash = createHash("sha256").update(bytes).update(settings).digest("hex").slice(0, 32);
      const before = indexed.get(path);
      if (before && isComplete(before, hash)) {
        report.unchanged++;
        continue;
      }
      prepared.push(planFile(path, await passagesOf(path, bytes, hash, modified, opts), before));
    } catch (e) {
      const kind = skipKind(e);
      if (kind === null || named.has(path)) throw e;
      skipped.push({ path, reason: (e as Error).message, kind });
    }
  }
  opts.onProgress?.({ phase: "reading", done: files.length, total: files.length, path: "" });
  if (opts.strict && skipped.length > 0) {
    const listed = skipped.slice(0, 5).map((s) => `${s.path} (${s.reason})`).join("; ");
    throw new LfmError(
      "FILES_SKIPPED",
      `${describeSkipped(skipped)} found in the folders cannot be indexed: ${listed}${skipped.length > 5 ? "; …" : ""}. Nothing was committed (strict); fix or remove them, or leave out --strict to skip them.`,
    );
  }

  // Encode and commit.
  const total = prepared.reduce((n, f) => n + f.todo.length, 0);
  let encoded = 0;
  let filesEncoded = 0;
  const batch = { passages: 0, removed: 0, files: 0, changes: false, since: Date.now() };
  const commit = async () => {
    if (!batch.changes) return;
    opts.onProgress?.({ phase: "committing", stage: "committing" });
    const result = await writer.commit({ signal: opts.signal, onProgress: (stage) => opts.onProgress?.({ phase: "committing", stage }) });
    report.passages += batch.passages;
    report.removed += batch.removed;
    report.indexed += batch.files;
    report.generation = result.generation;
    Object.assign(batch, { passages: 0, removed: 0, files: 0, changes: false, since: Date.now() });
  };
  try {
    for (const f of prepared) {
      // Small files stay whole: commit what is pending before a file that would overflow the batch.
      if (batch.passages > 0 && batch.passages + f.todo.length > commitEvery) await commit();
      if (f.stale.length > 0) {
        writer.delete(f.stale);
        batch.removed += f.removed;
      }
      batch.changes = true;
      if (f.todo.length === 0) {
        batch.files++;
        filesEncoded++;
      }
      for (let i = 0; i < f.todo.length; ) {
        const group = f.todo.slice(i, i + Math.min(ENCODE_GROUP, commitEvery - batch.passages));
        const vectors = await encoder.encodeDocuments(
          group.map((d) => d.text),
          { signal: opts.signal, onProgress: (done) => opts.onProgress?.({ phase: "encoding", done: encoded + done, total, files: filesEncoded, totalFiles: prepared.length }) },
        );
        group.forEach((d, k) => writer.upsert({ ...d, embeddings: vectors[k] }));
        batch.changes = true;
        i += group.length;
        encoded += group.length;
        batch.passages += group.length;
        if (i === f.todo.length) {
          batch.files++;
          filesEncoded++;
        }
        if (batch.passages >= commitEvery || Date.now() - batch.since >= commitSeconds * 1000) await commit();
      }
    }
    await commit();
  } catch (e) {
    writer.rollback();
    if (e instanceof LfmError && e.code === "ABORTED") return { ...report, cancelled: true };
    throw e;
  }
  return report;
}

/** All the file's passages are in the index, at the version `hash`. */
function isComplete(passages: Map<string, string>, hash: string): boolean {
  const versions = new Set(passages.values());
  if (versions.size !== 1) return false;
  const [version] = versions;
  // A bare hash: written when files were only ever committed whole.
  if (version === hash) return true;
  const colon = version.indexOf(":");
  return version.slice(0, colon) === hash && Number(version.slice(colon + 1)) === passages.size;
}

function planFile(path: string, docs: Passage[], before: Map<string, string> | undefined): PreparedFile {
  const version = docs[0]?.sourceHash;
  const todo = docs.filter((d) => before?.get(d.id) !== version);
  const fresh = new Set(docs.map((d) => d.id));
  const stale = [...(before ?? [])].filter(([, v]) => v !== version).map(([id]) => id);
  return { path, todo, stale, removed: stale.filter((id) => !fresh.has(id)).length };
}

/** A failure that skips a file found in a folder; null: one that stops the add. */
function skipKind(e: unknown): SkipKind | null {
  if (!(e instanceof LfmError)) return null;
  switch (e.code) {
    case "FILE_TOO_LARGE":
      return "too-large";
    case "NOT_A_REGULAR_FILE":
      return "not-regular";
    case "DOCUMENT_UNREADABLE":
    case "UNSUPPORTED_FILE_TYPE":
    case "FILE_NOT_FOUND": // removed since the folder was listed
      return "unreadable";
    default:
      return null;
  }
}

/** `modified`: the file's modification time, kept as metadata (ISO 8601, UTC, to the second) for date filters. */
async function passagesOf(path: string, bytes: Uint8Array, hash: string, modified: Date, opts: IngestOptions): Promise<Passage[]> {
  const extracted = await extractText(path, bytes);
  const chunks = chunkText(extracted.text, opts.chunk);
  const version = `${hash}:${chunks.length}`;
  const date = Number.isNaN(modified.getTime()) ? null : `${modified.toISOString().slice(0, 19)}Z`;
  return chunks.map((c) => {
    const metadata: Metadata = { type: extracted.kind };
    if (date !== null) metadata.modified = date;
    if (extracted.title) metadata.title = extracted.title;
    if (extracted.pageStarts) metadata.page = pageAt(extracted.pageStarts, c.start);
    return { id: `${path}#${c.index}`, text: c.text, source: path, start: c.start, end: c.end, sourceHash: version, metadata: { ...metadata, ...opts.metadata } };
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
