/**
 * A segment: documents committed together (or merged), immutable once written, plus its deletion
 * list (replaced, never edited, by later commits). Readers load an hnsw segment whole (vectors,
 * documents, graph) and a plaid segment's documents and compressed rows, keeping its full rows on
 * disk (an open descriptor, read by range); the writer needs only documents and deletions.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { HierarchicalNSW } from "hnswlib-node";
import { LfmError } from "../../text-core/errors.ts";
import { type CompressedSegment, parseCompressed } from "./centroid-codec.ts";
import { FileVanishedError, readVerified, repairAdvice, verifyFile } from "./durable-fs.ts";
import { type SegmentEntry, type StoredDocument, corrupt, parseDocuments } from "./format.ts";
import { type StoredRows, type VectorStorage, bytesPerRow, rowsFromBytes } from "./vector-codec.ts";

const require = createRequire(import.meta.url);
const hnswlib = require("hnswlib-node") as typeof import("hnswlib-node");

/** What every user of a segment needs: its documents, where their rows start, which are deleted. */
export interface SegmentDocs {
  entry: SegmentEntry;
  docs: StoredDocument[];
  /** Row of each document's first vector; `rowStart[docs.length]` = rows. */
  rowStart: Float64Array;
  /** deleted[ordinal] = 1 for a deleted document. */
  deleted: Uint8Array;
  deletedCount: number;
  deletedRows: number;
}

export type LoadedSegment = HnswSegment | PlaidSegment;

export interface HnswSegment extends SegmentDocs {
  kind: "hnsw";
  vectors: StoredRows;
  /** Document ordinal of each row (graph labels are rows). */
  rowDoc: Uint32Array;
  graph: HierarchicalNSW;
}

export interface PlaidSegment extends SegmentDocs {
  kind: "plaid";
  compressed: CompressedSegment;
  /** The open `seg-<id>.vec` (full rows, read by range; the descriptor outlives the file's removal). */
  vectorFile: { fd: number; path: string; storage: VectorStorage; dim: number };
}

export function readSegmentDocs(dir: string, entry: SegmentEntry, verify: boolean, docs?: StoredDocument[]): SegmentDocs {
  const path = join(dir, entry.documents.name);
  docs ??= parseDocuments(readVerified(dir, entry.documents, verify), path, entry.docs);
  const ordinals: number[] = [];
  if (entry.deleted !== null) {
    const delPath = join(dir, entry.deleted.name);
    const bytes = readVerified(dir, entry.deleted, verify);
    if (bytes.byteLength !== entry.deleted.count * 4) throw corrupt(delPath, "has the wrong length");
    for (let i = 0; i < entry.deleted.count; i++) ordinals.push(bytes.readUInt32LE(i * 4));
  }
  const s = segmentDocs(entry, docs, ordinals);
  if (s.rowStart[docs.length] !== entry.rows) throw corrupt(path, `lists ${s.rowStart[docs.length]} vector rows but the manifest says ${entry.rows}`);
  if (s.deletedCount !== ordinals.length) throw corrupt(join(dir, entry.deleted?.name ?? ""), `names documents segment ${entry.id} does not hold, or names one twice`);
  return s;
}

/** Row offsets and the deletion bitmap of a segment's documents (out-of-range ordinals ignored). */
export function segmentDocs(entry: SegmentEntry, docs: StoredDocument[], deletedOrdinals: number[]): SegmentDocs {
  const rowStart = new Float64Array(docs.length + 1);
  for (let i = 0; i < docs.length; i++) rowStart[i + 1] = rowStart[i] + docs[i].rows;
  const deleted = new Uint8Array(docs.length);
  let deletedCount = 0;
  let deletedRows = 0;
  for (const o of deletedOrdinals) {
    if (o >= docs.length || deleted[o] === 1) continue;
    deleted[o] = 1;
    deletedCount++;
    deletedRows += docs[o].rows;
  }
  return { entry, docs, rowStart, deleted, deletedCount, deletedRows };
}

export function loadSegment(dir: string, entry: SegmentEntry, storage: VectorStorage, dim: number, verify: boolean, reuse?: LoadedSegment): LoadedSegment {
  // Segment files are immutable: a reader refreshing keeps what it has and rereads only a new deletion list.
  if (reuse && reuse.entry.id === entry.id) {
    if (reuse.entry.deleted?.name === entry.deleted?.name) return reuse;
    return { ...reuse, ...readSegmentDocs(dir, entry, verify, reuse.docs) };
  }
  const meta = readSegmentDocs(dir, entry, verify);
  if (entry.compressed) return loadPlaidSegment(dir, entry, entry.compressed, meta, storage, dim, verify);
  if (!entry.graph) throw corrupt(join(dir, "manifest.json"), `lists segment ${entry.id} without its graph`);
  const vecPath = join(dir, entry.vectors.name);
  const bytes = readVerified(dir, entry.vectors, verify);
  if (bytes.byteLength !== entry.rows * bytesPerRow(storage, dim)) throw corrupt(vecPath, `does not hold ${entry.rows} ${storage} rows of ${dim} values`);
  const vectors = rowsFromBytes(storage, bytes, entry.rows, dim);
  const rowDoc = new Uint32Array(entry.rows);
  for (let d = 0; d < meta.docs.length; d++) rowDoc.fill(d, meta.rowStart[d], meta.rowStart[d + 1]);
  verifyFile(dir, entry.graph, verify); // before hnswlib parses it: a damaged graph can crash the process
  const graph = new hnswlib.HierarchicalNSW("ip", dim);
  const graphPath = join(dir, entry.graph.name);
  try {
    graph.readIndexSync(graphPath);
  } catch (e) {
    throw new LfmError("INDEX_CORRUPT", `hnswlib cannot read the graph ${graphPath}: ${(e as Error).message}. ${repairAdvice(graphPath)}`, { cause: e });
  }
  if (graph.getCurrentCount() !== entry.graphRows || graph.getNumDimensions() !== dim) {
    throw corrupt(graphPath, `holds ${graph.getCurrentCount()} ${graph.getNumDimensions()}-d points, not ${entry.graphRows} ${dim}-d rows`);
  }
  return { ...meta, kind: "hnsw", vectors, rowDoc, graph };
}

/**
 * Checks sizes (and CRC-32s when `verify`) and loads the compressed rows; the full rows stay on
 * disk behind an open descriptor.
 */
function loadPlaidSegment(dir: string, entry: SegmentEntry, ref: NonNullable<SegmentEntry["compressed"]>, meta: SegmentDocs, storage: VectorStorage, dim: number, verify: boolean): PlaidSegment {
  const path = join(dir, ref.name);
  const compressed = parseCompressed(readVerified(dir, ref, verify), path, { dim, rows: entry.rows, docs: entry.docs });
  if (compressed.centroidCount !== ref.centroids) throw corrupt(path, `holds ${compressed.centroidCount} centroids, not the manifest's ${ref.centroids}`);
  verifyFile(dir, entry.vectors, verify);
  const vecPath = join(dir, entry.vectors.name);
  let fd: number;
  try {
    fd = openSync(vecPath, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new FileVanishedError(vecPath);
    throw new LfmError("INDEX_CORRUPT", `cannot read index file ${vecPath}: ${(e as Error).message}`, { cause: e });
  }
  // Sizes again on the descriptor kept: the file checked above may have been replaced since.
  if (fstatSync(fd).size !== entry.rows * bytesPerRow(storage, dim) || entry.vectors.bytes !== entry.rows * bytesPerRow(storage, dim)) {
    closeSync(fd);
    throw corrupt(vecPath, `does not hold ${entry.rows} ${storage} rows of ${dim} values`);
  }
  return { ...meta, kind: "plaid", compressed, vectorFile: { fd, path: vecPath, storage, dim } };
}

/** Releases what a loaded segment holds outside the heap (a plaid segment's descriptor). */
export function releaseSegment(s: LoadedSegment): void {
  if (s.kind === "plaid") closeSync(s.vectorFile.fd);
}

/** Rows [start, start + count) of a segment as stored: from memory (hnsw) or read from disk (plaid). */
export function segmentRows(s: LoadedSegment, start: number, count: number): { rows: StoredRows; start: number; count: number } {
  if (s.kind === "hnsw") return { rows: s.vectors, start, count };
  const { fd, path, storage, dim } = s.vectorFile;
  const read = (bytes: number, position: number): Uint8Array => {
    const out = Buffer.allocUnsafeSlow(bytes); // not from the shared pool: aligned for typed views
    let off = 0;
    while (off < bytes) {
      const n = readSync(fd, out, off, bytes - off, position + off);
      if (n === 0) throw corrupt(path, "ended early");
      off += n;
    }
    return out;
  };
  if (storage === "int8") {
    // int8 files hold every row's scale first, then the codes.
    const scales = read(count * 4, start * 4);
    const codes = read(count * dim, s.entry.rows * 4 + start * dim);
    const bytes = new Uint8Array(count * (4 + dim));
    bytes.set(scales, 0);
    bytes.set(codes, count * 4);
    return { rows: rowsFromBytes(storage, bytes, count, dim), start: 0, count };
  }
  return { rows: rowsFromBytes(storage, read(count * bytesPerRow(storage, dim), start * bytesPerRow(storage, dim)), count, dim), start: 0, count };
}
