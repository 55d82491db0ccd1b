/**
 * The one writer of an index folder. Changes (`upsert`, `delete`) are held in memory until
 * `commit()`, which makes all of them durable at once or none of them:
 *
 *   1. new files only — a segment for the added documents (`seg-<gen>.*`) and new deletion lists
 *      for segments that lost documents — each written and fsynced;
 *   2. the manifest naming them is written to a temporary file, fsynced, and renamed over
 *      `manifest.json` (the commit point), and the folder is fsynced;
 *   3. files no manifest references any more are removed.
 *
 * A process killed anywhere before the rename leaves the previous manifest in place and some
 * unreferenced files (removed when the next writer opens); killed after it, the commit is whole.
 * Committed files are never modified, so readers that opened an older manifest keep working.
 *
 * Segments merge as they accumulate (log-structured, factor 8): a commit also absorbs the youngest
 * segments whose live rows are at most 8× the rows it merges so far. In an hnsw index the oldest
 * of those segments is the *base*: its graph file is copied and only the other rows are inserted
 * into it, so most rows are inserted into a graph once or twice however many commits add up. In a
 * plaid index every written segment trains its own centroids on its rows and compresses them
 * (centroid-codec.ts), so a merge, a compaction or an upgrade recompresses what it merges.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { CentroidAssigner, type CodecSettings, DEFAULT_CODEC, NBITS_CHOICES, buildLists, encodeBlock, residualBytesPerRow, serializeCompressed, trainCodec } from "./centroid-codec.ts";
import { join, resolve } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import { checkIndexFolder, fsyncDir, readVerified, replaceAtomically, verifyFile, writeDurable } from "./durable-fs.ts";
import {
  type GraphSettings,
  INDEX_FILE_PATTERN,
  type IndexLayout,
  MANIFEST_FILE,
  type ManifestBody,
  ManifestView,
  type Metadata,
  type ModelIdentity,
  type SegmentEntry,
  type StoredDocument,
  layoutOf,
  parseManifest,
  segmentFile,
  serializeDocuments,
  serializeManifest,
} from "./format.ts";
import { GraphBuilderThread } from "./graph-build.ts";
import { verifyIndex } from "./reader.ts";
import { WriterLock } from "./writer-lock.ts";
import { sameModel } from "./model-identity.ts";
import { type SegmentDocs, readSegmentDocs, segmentDocs } from "./segment.ts";
import { type StoredRows, type VectorStorage, decodeRows, encodeRows, gatherRows, rowsFromBytes, rowsToBytes } from "./vector-codec.ts";

/** A passage to index: its token vectors (one L2-normalised row per kept token) and what to return. */
export interface NewDocument {
  id: string;
  embeddings: { rows: number; dim: number; data: Float32Array };
  text: string;
  source?: string;
  start?: number;
  end?: number;
  metadata?: Metadata;
  sourceHash?: string;
}

export interface CreateOptions {
  dim: number;
  /** Default "float16". */
  storage?: VectorStorage;
  model?: ModelIdentity | null;
  graph?: Partial<GraphSettings>;
  /** "hnsw" (default here; format version 1) or "plaid" (compressed, version 2: what `lfm index add` creates). */
  layout?: IndexLayout;
  /** How plaid segments are compressed (DEFAULT_CODEC for what is not given). */
  codec?: Partial<CodecSettings>;
}

export interface WriterOptions {
  /** Create the index when the folder has none (the folder may be missing or empty). */
  create?: CreateOptions;
  /** The model about to add documents: refused (INDEX_MODEL_MISMATCH) unless it built the index. */
  model?: ModelIdentity;
  /** Check every file's CRC-32 when opening (default true). */
  verify?: boolean;
}

export interface CommitOptions {
  signal?: AbortSignal;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface CommitResult {
  generation: number;
  added: number;
  deleted: number;
  segments: number;
  /** Segments folded into the new one. */
  merged: number;
}

/** hnswlib's M 16 and efConstruction 64 reach recall@10 ≥ 0.97 in bench/retrieval.ts. */
export const DEFAULT_GRAPH: GraphSettings = { m: 16, efConstruction: 64, seed: 100, dedupCosine: 0.9 };
const MERGE_FACTOR = 8;
const MAX_SEGMENTS = 16;
/** A segment with more deleted rows than this share is rebuilt rather than reused as a merge base. */
const BASE_MAX_DELETED = 0.25;

interface Pending {
  doc: StoredDocument;
  rows: StoredRows;
}

/** Rows [start, start + count) of a block of stored rows: one document's, to be gathered. */
type RowPart = { rows: StoredRows; start: number; count: number };

interface Location {
  segment: SegmentDocs;
  ordinal: number;
}

export class IndexWriter extends ManifestView {
  private segments: SegmentDocs[];
  private readonly live = new Map<string, Location>();
  private readonly pending = new Map<string, Pending>();
  /** Committed documents to delete at the next commit. */
  private readonly doomed = new Map<string, Location>();
  private closed = false;
  private readonly graphBuilder = new GraphBuilderThread();
  /** Nearest-centroid sessions for plaid segments, made at the first plaid write and kept. */
  private assigner: Promise<CentroidAssigner> | null = null;

  private constructor(
    readonly dir: string,
    private readonly lock: WriterLock,
    manifest: ManifestBody,
    segments: SegmentDocs[],
  ) {
    super();
    this.manifest = manifest;
    this.segments = segments;
    for (const s of segments) s.docs.forEach((d, ordinal) => s.deleted[ordinal] === 0 && this.live.set(d.id, { segment: s, ordinal }));
  }

  static async open(dir: string, opts: WriterOptions = {}): Promise<IndexWriter> {
    const root = resolve(dir);
    const manifestPath = join(root, MANIFEST_FILE);
    const notFound = () => new LfmError("INDEX_NOT_FOUND", `no index in ${root} (no ${MANIFEST_FILE}). Create one with lfm index add --index ${dir} FILES…`);
    checkIndexFolder(root);
    if (!existsSync(root)) {
      if (!opts.create) throw notFound();
      try {
        mkdirSync(root, { recursive: true });
      } catch (e) {
        throw new LfmError("OUTPUT_UNWRITABLE", `cannot create the index folder ${root}: ${(e as Error).message}.`, { cause: e });
      }
    }
    const lock = WriterLock.acquire(root);
    try {
      // Checked under the lock: another writer may have created the index meanwhile.
      let manifest: ManifestBody;
      if (existsSync(manifestPath)) {
        manifest = parseManifest(readFileSync(manifestPath, "utf8"), manifestPath);
      } else {
        if (!opts.create) throw notFound();
        const strangers = readdirSync(root).filter((f) => !INDEX_FILE_PATTERN.test(f) && !/^writer-\d+\.lock$/.test(f));
        if (strangers.length > 0) {
          throw new LfmError("INVALID_ARGUMENT", `${root} is not empty and holds no index (found ${strangers.slice(0, 3).join(", ")}${strangers.length > 3 ? ", …" : ""}). Give --index a new or empty folder.`);
        }
        manifest = newManifest(opts.create);
        replaceAtomically(root, MANIFEST_FILE, serializeManifest(manifest));
      }
      if (opts.create && opts.create.dim !== manifest.dim) {
        throw new LfmError("INDEX_MODEL_MISMATCH", `the index ${root} holds ${manifest.dim}-d vectors; this model makes ${opts.create.dim}-d ones. Use the model that built the index${manifest.model ? ` (${manifest.model.name})` : ""} or a new index folder.`);
      }
      if (opts.model) checkModel(root, manifest, opts.model);
      const verify = opts.verify ?? true;
      if (lock.tookOverStale && manifest.segments.length > 0) verifyIndex(root); // a writer crashed: check every file (writer-lock.ts)
      const segments = manifest.segments.map((e) => readSegmentDocs(root, e, verify));
      const writer = new IndexWriter(root, lock, manifest, segments);
      writer.removeUnreferencedFiles();
      return writer;
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** Changes waiting for `commit()`. */
  get pendingChanges(): { upserts: number; deletes: number } {
    return { upserts: this.pending.size, deletes: this.doomed.size };
  }

  /** The live document with this id, including uncommitted changes. */
  get(id: string): StoredDocument | undefined {
    const p = this.pending.get(id);
    if (p) return p.doc;
    if (this.doomed.has(id)) return undefined;
    const at = this.live.get(id);
    return at ? at.segment.docs[at.ordinal] : undefined;
  }

  /** Every live document, including uncommitted changes (vectors not included). */
  *documents(): IterableIterator<StoredDocument> {
    for (const [id, at] of this.live) if (!this.doomed.has(id) && !this.pending.has(id)) yield at.segment.docs[at.ordinal];
    for (const p of this.pending.values()) yield p.doc;
  }

  /** Adds documents; an existing id is replaced (at commit). */
  upsert(docs: NewDocument | NewDocument[]): void {
    this.checkOpen();
    for (const doc of Array.isArray(docs) ? docs : [docs]) {
      const stored = this.validate(doc);
      const rows = encodeRows(this.manifest.storage, doc.embeddings.data, doc.embeddings.rows, this.manifest.dim);
      const committed = this.live.get(doc.id);
      if (committed) this.doomed.set(doc.id, committed);
      this.pending.delete(doc.id); // re-insert: keeps insertion order = commit order
      this.pending.set(doc.id, { doc: stored, rows });
    }
  }

  /** Deletes documents by id (at commit); returns how many existed. */
  delete(ids: string | string[]): number {
    this.checkOpen();
    let n = 0;
    for (const id of Array.isArray(ids) ? ids : [ids]) {
      const wasPending = this.pending.delete(id);
      const committed = this.live.get(id);
      if (committed && !this.doomed.has(id)) {
        this.doomed.set(id, committed);
        n++;
      } else if (wasPending) n++;
    }
    return n;
  }

  /** Drops uncommitted changes. */
  rollback(): void {
    this.pending.clear();
    this.doomed.clear();
  }

  /** Makes all pending changes durable atomically (see the file comment). */
  async commit(opts: CommitOptions = {}): Promise<CommitResult> {
    return this.write(false, opts, this.manifest);
  }

  /** Commits pending changes and rewrites every segment into one without deleted documents, with a fresh graph. */
  async compact(opts: CommitOptions = {}): Promise<CommitResult> {
    return this.write(true, opts, this.manifest);
  }

  /**
   * Rewrites an hnsw (version 1) index as a plaid (version 2) one: every live document, with its
   * text, metadata and stored vectors as they are, compressed anew; pending changes go in too.
   * Atomic like a commit. Returns null when the index is plaid already.
   */
  async upgrade(opts: CommitOptions & { codec?: Partial<CodecSettings> } = {}): Promise<CommitResult | null> {
    this.checkOpen();
    if (this.layout === "plaid") return null;
    return this.write(true, opts, { ...this.manifest, layout: "plaid", codec: codecSettings(opts.codec) });
  }

  /** Releases the lock; uncommitted changes are dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rollback();
    this.lock.release();
    await this.graphBuilder.stop();
    const assigner = this.assigner;
    this.assigner = null;
    if (assigner) await assigner.then((a) => a.release(), () => undefined);
  }

  /** Commits onto `target`: the current manifest, or (upgrade) the current one in another layout. */
  private async write(compact: boolean, opts: CommitOptions, target: ManifestBody): Promise<CommitResult> {
    this.checkOpen();
    const deletedTotal = this.doomed.size;
    const addedTotal = this.pending.size;
    if (!compact && addedTotal === 0 && deletedTotal === 0) {
      return { generation: this.generation, added: 0, deleted: 0, segments: this.segments.length, merged: 0 };
    }
    if (opts.signal?.aborted) throw new LfmError("ABORTED", "the commit was cancelled; the index is unchanged.");
    const generation = this.manifest.generation + 1;
    const written: string[] = [];
    try {
      // Deletions: each touched segment gets a new, complete deletion list.
      const deletedNow = new Map<SegmentDocs, number[]>();
      for (const at of this.doomed.values()) deletedNow.set(at.segment, [...(deletedNow.get(at.segment) ?? []), at.ordinal]);
      let segments = this.segments
        .map((s) => withDeletions(s, deletedNow.get(s) ?? []))
        .filter((s) => s.deletedCount < s.docs.length); // wholly deleted segments just go
      const newRows = [...this.pending.values()].reduce((n, p) => n + p.rows.rows, 0);
      const run = compact ? segments : chooseMergeRun(segments, newRows);
      segments = segments.slice(0, segments.length - run.length);
      for (const s of segments) {
        if (this.segments.includes(s)) continue; // unchanged
        const ordinals = [...s.deleted.keys()].filter((o) => s.deleted[o] === 1);
        const name = segmentFile.deleted(s.entry.id, generation);
        written.push(name);
        const ref = writeDurable(this.dir, name, [uint32Bytes(ordinals)]);
        s.entry = { ...s.entry, deleted: { ...ref, count: ordinals.length, rows: s.deletedRows } };
      }
      if (newRows > 0 || run.some((s) => s.deletedCount < s.docs.length)) {
        segments.push(layoutOf(target) === "plaid" ? await this.writePlaidSegment(generation, run, target, written, opts) : await this.writeSegment(generation, run, compact, written, opts));
      }
      const manifest: ManifestBody = { ...target, generation, committedAt: new Date().toISOString(), segments: segments.map((s) => s.entry) };
      fsyncDir(this.dir);
      opts.onProgress?.("committing", 0, 1);
      replaceAtomically(this.dir, MANIFEST_FILE, serializeManifest(manifest)); // the commit point
      this.manifest = manifest;
      this.segments = segments;
      this.live.clear();
      for (const s of segments) s.docs.forEach((d, ordinal) => s.deleted[ordinal] === 0 && this.live.set(d.id, { segment: s, ordinal }));
      this.pending.clear();
      this.doomed.clear();
      this.removeUnreferencedFiles();
      return { generation, added: addedTotal, deleted: deletedTotal, segments: segments.length, merged: run.length };
    } catch (e) {
      if (this.manifest.generation === generation) throw e; // committed; only the clean-up after it failed
      if (this.committedOnDisk(generation)) {
        // The new manifest is in place but finishing failed (e.g. the folder fsync): the commit stands.
        await this.close();
        throw new LfmError("RUNTIME_FAILED", `commit ${generation} of ${this.dir} was written, but finishing it failed (${(e as Error).message}); reopen the index to continue.`, { cause: e });
      }
      for (const name of written) rmSync(join(this.dir, name), { force: true });
      throw writeFailure(e, this.dir, this.manifest.generation);
    }
  }

  /** The live documents of `run` and the pending ones, with their rows as stored. */
  private gatherLive(run: SegmentDocs[], opts: CommitOptions): { docs: StoredDocument[]; all: StoredRows } {
    const { dim, storage } = this.manifest;
    const docs: StoredDocument[] = [];
    const parts: RowPart[] = [];
    for (const s of run) {
      opts.onProgress?.("reading segments to merge", docs.length, 0);
      appendLive(s, rowsFromBytes(storage, readVerified(this.dir, s.entry.vectors), s.entry.rows, dim), docs, parts);
    }
    this.appendPending(docs, parts);
    return { docs, all: gatherRows(storage, dim, parts) };
  }

  /** Appends the pending documents and their rows (after the segments' live ones: commit order). */
  private appendPending(docs: StoredDocument[], parts: RowPart[]): void {
    for (const p of this.pending.values()) {
      docs.push(p.doc);
      parts.push({ rows: p.rows, start: 0, count: p.rows.rows });
    }
  }

  /**
   * Writes a plaid segment of `run`'s live documents and the pending ones: the rows as stored
   * (for the exact rerank), the documents, and the rows compressed with centroids trained on them.
   */
  private async writePlaidSegment(generation: number, run: SegmentDocs[], target: ManifestBody, written: string[], opts: CommitOptions): Promise<SegmentDocs> {
    const { dim } = this.manifest;
    const codec = target.codec ?? DEFAULT_CODEC;
    const { docs, all } = this.gatherLive(run, opts);
    const names = { vectors: segmentFile.vectors(generation), documents: segmentFile.documents(generation), compressed: segmentFile.compressed(generation) };
    written.push(names.vectors, names.documents, names.compressed);
    opts.onProgress?.("writing vectors", 0, 1);
    const vectors = writeDurable(this.dir, names.vectors, [rowsToBytes(all)]);
    const documents = writeDurable(this.dir, names.documents, [serializeDocuments(docs)]);
    this.assigner ??= CentroidAssigner.create(dim).catch((e: unknown) => {
      this.assigner = null;
      throw e;
    });
    const assigner = await this.assigner;
    opts.onProgress?.("training centroids", 0, 1);
    const trained = await trainCodec(
      all.rows,
      dim,
      (indices) => {
        const out = new Float32Array(indices.length * dim);
        indices.forEach((r, i) => out.set(decodeRows(all, r, r + 1), i * dim));
        return out;
      },
      codec,
      assigner,
      opts.signal,
    );
    const codes = new Uint16Array(all.rows);
    const residuals = new Uint8Array(all.rows * residualBytesPerRow(dim, codec.nbits));
    const BLOCK = 65_536;
    for (let first = 0; first < all.rows; first += BLOCK) {
      opts.onProgress?.("compressing vectors", first, all.rows);
      const n = Math.min(BLOCK, all.rows - first);
      await encodeBlock(trained, decodeRows(all, first, first + n), n, first, codes, residuals, assigner, opts.signal);
    }
    const lists = buildLists(codes, docs.map((d) => d.rows), trained.centroidCount);
    const compressed = writeDurable(this.dir, names.compressed, serializeCompressed({ ...trained, rows: all.rows, docs: docs.length, codes, residuals, ...lists }));
    const entry: SegmentEntry = { id: generation, docs: docs.length, rows: all.rows, graphRows: 0, vectors, documents, graph: null, compressed: { ...compressed, centroids: trained.centroidCount }, deleted: null };
    return segmentDocs(entry, docs, []);
  }

  /** Writes the segment holding `run`'s live documents and the pending ones. */
  private async writeSegment(generation: number, run: SegmentDocs[], fresh: boolean, written: string[], opts: CommitOptions): Promise<SegmentDocs> {
    const { dim, storage } = this.manifest;
    const base = !fresh && run.length > 0 && run[0].entry.graph && run[0].deletedRows <= BASE_MAX_DELETED * run[0].entry.rows ? run[0] : null;
    const docs: StoredDocument[] = [];
    const parts: RowPart[] = [];
    const deleted: number[] = [];
    for (const s of run) {
      opts.onProgress?.("reading segments to merge", docs.length, 0);
      const rows = rowsFromBytes(storage, readVerified(this.dir, s.entry.vectors), s.entry.rows, dim);
      if (s === base) {
        // The base keeps every row (its graph has them all) and its deletions, at the same ordinals.
        docs.push(...s.docs);
        parts.push({ rows, start: 0, count: s.entry.rows });
        s.deleted.forEach((x, o) => x === 1 && deleted.push(o));
        continue;
      }
      appendLive(s, rows, docs, parts);
    }
    this.appendPending(docs, parts);
    const baseRows = base ? base.entry.rows : 0;
    const baseDocs = base ? base.docs.length : 0;
    const all = gatherRows(storage, dim, parts);
    const names = { vectors: segmentFile.vectors(generation), documents: segmentFile.documents(generation), graph: segmentFile.graph(generation) };
    written.push(names.vectors, names.documents, names.graph);
    opts.onProgress?.("writing vectors", 0, 1);
    const vectors = writeDurable(this.dir, names.vectors, [rowsToBytes(all)]);
    const documents = writeDurable(this.dir, names.documents, [serializeDocuments(docs)]);
    if (base?.entry.graph) verifyFile(this.dir, base.entry.graph); // hnswlib must never parse a damaged file
    const insert = gatherRows(storage, dim, [{ rows: all, start: baseRows, count: all.rows - baseRows }]);
    const graph = await this.graphBuilder.build({
      dim,
      settings: this.manifest.graph,
      storage,
      totalRows: all.rows,
      basePath: base?.entry.graph ? join(this.dir, base.entry.graph.name) : null,
      rows: rowsToBytes(insert),
      docRows: docs.slice(baseDocs).map((d) => d.rows),
      firstLabel: baseRows,
      count: insert.rows,
      outPath: join(this.dir, names.graph),
      signal: opts.signal,
      onProgress: (done, total) => opts.onProgress?.("building the graph", done, total),
    });
    let deletedRef: SegmentEntry["deleted"] = null;
    if (deleted.length > 0 && base) {
      const name = segmentFile.deleted(generation, generation);
      written.push(name);
      deletedRef = { ...writeDurable(this.dir, name, [uint32Bytes(deleted)]), count: deleted.length, rows: base.deletedRows };
    }
    const entry: SegmentEntry = {
      id: generation,
      docs: docs.length,
      rows: all.rows,
      graphRows: graph.graphRows,
      vectors,
      documents,
      graph: { name: names.graph, bytes: graph.bytes, crc32: graph.crc32 },
      deleted: deletedRef,
    };
    return segmentDocs(entry, docs, deleted);
  }

  private committedOnDisk(generation: number): boolean {
    try {
      const path = join(this.dir, MANIFEST_FILE);
      return parseManifest(readFileSync(path, "utf8"), path).generation === generation;
    } catch {
      return false;
    }
  }

  /** Files of uncommitted or superseded states. Best effort: a leftover costs disk space only. */
  private removeUnreferencedFiles(): void {
    const referenced = new Set<string>();
    for (const s of this.manifest.segments) {
      referenced.add(s.vectors.name).add(s.documents.name);
      if (s.graph) referenced.add(s.graph.name);
      if (s.compressed) referenced.add(s.compressed.name);
      if (s.deleted) referenced.add(s.deleted.name);
    }
    for (const name of readdirSync(this.dir)) {
      if (INDEX_FILE_PATTERN.test(name) && !referenced.has(name)) rmSync(join(this.dir, name), { force: true });
    }
  }

  private validate(doc: NewDocument): StoredDocument {
    const bad = (what: string) => new LfmError("INVALID_ARGUMENT", `document ${JSON.stringify(doc?.id)}: ${what}`);
    if (typeof doc?.id !== "string" || doc.id === "") throw bad("id must be a non-empty string.");
    const e = doc.embeddings;
    if (!e || !(e.data instanceof Float32Array) || !Number.isInteger(e.rows)) throw bad("embeddings must be { rows, dim, data: Float32Array }.");
    if (e.dim !== this.manifest.dim) throw bad(`its vectors are ${e.dim}-d but the index stores ${this.manifest.dim}-d vectors; use the model that built the index.`);
    if (e.rows < 1) throw bad("it has no token vectors (an empty passage cannot be found).");
    if (e.data.length < e.rows * e.dim) throw bad(`data holds ${e.data.length} values, fewer than rows × dim = ${e.rows * e.dim}.`);
    for (let i = 0; i < e.rows * e.dim; i++) if (!Number.isFinite(e.data[i])) throw bad("its vectors contain NaN or infinite values.");
    if (typeof doc.text !== "string") throw bad("text must be a string.");
    const metadata: Metadata = {};
    for (const [k, v] of Object.entries(doc.metadata ?? {})) {
      if (!(v === null || typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v)))) {
        throw bad(`metadata ${k} must be a string, finite number, boolean or null.`);
      }
      metadata[k] = v;
    }
    const start = doc.start ?? 0;
    const end = doc.end ?? start + doc.text.length;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start) throw bad(`offsets ${start}…${end} are not a valid range.`);
    return { id: doc.id, source: doc.source ?? "", start, end, text: doc.text, metadata, sourceHash: doc.sourceHash ?? "", rows: e.rows };
  }

  private checkOpen(): void {
    if (this.closed) throw new LfmError("INVALID_ARGUMENT", "this index writer is closed.");
  }
}

function newManifest(create: CreateOptions): ManifestBody {
  if (!Number.isInteger(create.dim) || create.dim < 1) throw new LfmError("INVALID_ARGUMENT", `index dim must be a positive integer, got ${create.dim}.`);
  const storage = create.storage ?? "float16";
  if (!["float16", "int8", "float32"].includes(storage)) throw new LfmError("INVALID_ARGUMENT", `storage must be float16, int8 or float32, got ${storage}.`);
  const graph = { ...DEFAULT_GRAPH, ...create.graph };
  if (!Number.isInteger(graph.m) || graph.m < 2 || !Number.isInteger(graph.efConstruction) || graph.efConstruction < 1 || !(graph.dedupCosine > 0 && graph.dedupCosine <= 1)) {
    throw new LfmError("INVALID_ARGUMENT", `graph settings need an integer m ≥ 2, efConstruction ≥ 1 and 0 < dedupCosine ≤ 1 (got ${graph.m}, ${graph.efConstruction}, ${graph.dedupCosine}).`);
  }
  const layout = create.layout ?? "hnsw";
  if (layout !== "hnsw" && layout !== "plaid") throw new LfmError("INVALID_ARGUMENT", `layout must be hnsw or plaid, got ${String(layout)}.`);
  const now = new Date().toISOString();
  const body: ManifestBody = { generation: 0, createdAt: now, committedAt: now, dim: create.dim, storage, model: create.model ?? null, graph, segments: [] };
  return layout === "plaid" ? { ...body, layout, codec: codecSettings(create.codec) } : body;
}

function codecSettings(given: Partial<CodecSettings> | undefined): CodecSettings {
  const codec = { ...DEFAULT_CODEC, ...given };
  const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;
  if (!(NBITS_CHOICES as readonly number[]).includes(codec.nbits) || !(codec.centroidFactor > 0) || !positiveInt(codec.iterations) || !positiveInt(codec.sampleFactor) || !Number.isInteger(codec.seed) || codec.seed < 0) {
    throw new LfmError("INVALID_ARGUMENT", `codec settings need nbits 1, 2, 4 or 8, centroidFactor > 0, whole iterations and sampleFactor ≥ 1 and a seed ≥ 0 (got ${JSON.stringify(codec)}).`);
  }
  return codec;
}

export function checkModel(dir: string, manifest: ManifestBody, model: ModelIdentity): void {
  if (manifest.model && !sameModel(manifest.model, model)) {
    throw new LfmError(
      "INDEX_MODEL_MISMATCH",
      `the index ${dir} was built with the model ${manifest.model.name}${manifest.model.path ? ` (${manifest.model.path})` : ""}, not with ${model.name}${model.path ? ` (${model.path})` : ""}: their vectors are not comparable. Pass --model with the index's model, or build a new index for this one.`,
    );
  }
}

/** A segment's documents with `extra` ordinals also deleted. */
function withDeletions(s: SegmentDocs, extra: number[]): SegmentDocs {
  if (extra.length === 0) return s;
  const deleted = s.deleted.slice();
  let rows = s.deletedRows;
  for (const o of extra) {
    if (deleted[o] === 0) rows += s.docs[o].rows;
    deleted[o] = 1;
  }
  return { ...s, deleted, deletedCount: deleted.reduce((n, x) => n + x, 0), deletedRows: rows };
}

/** The youngest segments to fold into this commit's segment (see the file comment). */
function chooseMergeRun(segments: SegmentDocs[], newRows: number): SegmentDocs[] {
  if (newRows === 0) return [];
  let accumulated = newRows;
  let i = segments.length;
  while (i > 0) {
    const s = segments[i - 1];
    const liveRows = s.entry.rows - s.deletedRows;
    // Stop at a segment much bigger than what merges so far, unless that leaves too many segments.
    if (liveRows > MERGE_FACTOR * accumulated && i + 1 <= MAX_SEGMENTS) break;
    accumulated += liveRows;
    i--;
  }
  return segments.slice(i);
}

/**
 * A file system error of a commit that did not happen (disk full, quota, read-only, I/O error)
 * as INDEX_WRITE_FAILED saying that the index is intact; other errors as they are.
 */
function writeFailure(e: unknown, dir: string, generation: number): unknown {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (e instanceof LfmError || typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return e;
  const why = code === "ENOSPC" ? "no space left on the device" : code === "EDQUOT" ? "the disk quota is exhausted" : code === "EROFS" ? "the file system is read-only" : (e as Error).message;
  const todo = code === "ENOSPC" || code === "EDQUOT" ? "free some space, then run the same command again" : "fix that, then run the same command again";
  return new LfmError(
    "INDEX_WRITE_FAILED",
    `writing the index ${dir} failed: ${why} (${code}). Nothing of this commit was kept: the index is intact at generation ${generation}, and its uncommitted changes are still pending in this writer; ${todo}.`,
    { cause: e },
  );
}

/** Appends the live (not deleted) documents of `s` and their rows (`rows`: the segment's rows as stored). */
function appendLive(s: SegmentDocs, rows: StoredRows, docs: StoredDocument[], parts: RowPart[]): void {
  s.docs.forEach((d, o) => {
    if (s.deleted[o] === 1) return;
    docs.push(d);
    parts.push({ rows, start: s.rowStart[o], count: d.rows });
  });
}

function uint32Bytes(values: number[]): Uint8Array {
  const out = Buffer.alloc(values.length * 4);
  values.sort((a, b) => a - b).forEach((v, i) => out.writeUInt32LE(v, i * 4));
  return out;
}

