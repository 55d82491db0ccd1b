/**
 * A segment: documents committed together (or merged), immutable once written, plus its deletion
 * list (replaced, never edited, by later commits). Readers load it whole (vectors, documents,
 * graph); the writer needs only its documents and deletions.
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import type { HierarchicalNSW } from "hnswlib-node";
import { LfmError } from "../../text-core/errors.ts";
import { readVerified, repairAdvice, verifyFile } from "./durable-fs.ts";
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

export interface LoadedSegment extends SegmentDocs {
  vectors: StoredRows;
  /** Document ordinal of each row (graph labels are rows). */
  rowDoc: Uint32Array;
  graph: HierarchicalNSW;
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
  return { ...meta, vectors, rowDoc, graph };
}
