/**
 * The on-disk format of an index folder. Version 1 (layout "hnsw", still written for that layout)
 * and version 2 (layout "plaid": compressed rows instead of graphs):
 *
 *   manifest.json            the commit point: every live file with its size and CRC-32
 *   seg-<id>.vec             token vectors of a segment's documents, rows in document order
 *                            (float16 codes | int8: float32 row scales then codes | float32);
 *                            in a plaid index read by range for the exact rerank only
 *   seg-<id>.docs.json       the segment's documents: id, source, offsets, text, metadata, row count
 *   seg-<id>.hnsw            hnsw layout: hnswlib graph (inner product) over the segment's rows
 *                            (but a document's near-duplicate rows), label = row
 *   seg-<id>.plaid           plaid layout: centroids, per-row centroid id + quantised residual,
 *                            inverted lists (centroid-codec.ts)
 *   seg-<id>.del-<gen>       deleted document ordinals of the segment (uint32 LE, ascending)
 *   writer-<pid>.lock        present while a writer has the folder open
 *
 * Segment ids are the generation that wrote them, so a name is never reused for different
 * content once a manifest has referenced it. `manifest.json` is an envelope
 * `{ format, version, crc32, body }` whose crc32 covers `JSON.stringify(body)`; the envelope's
 * first three keys stay the same in every version, so an old reader can always tell a newer
 * index from a damaged one.
 */
import { isObject } from "../../text-core/config-fields.ts";
import { LfmError } from "../../text-core/errors.ts";
import { type Precision, isPrecision } from "../../text-core/graph/precision.ts";
import type { CodecSettings } from "./centroid-codec.ts";
import { type FileRef, crc32, repairAdvice } from "./durable-fs.ts";
import { VECTOR_STORAGES, type VectorStorage } from "./vector-codec.ts";

export const FORMAT_NAME = "lfm2-edge/colbert-index";
/** The newest version this code reads; version 1 is still written for hnsw-layout indexes. */
export const FORMAT_VERSION = 2;
export const MANIFEST_FILE = "manifest.json";

export type MetadataValue = string | number | boolean | null;
export type Metadata = Record<string, MetadataValue>;

/** Which encoder built the vectors: queries must come from the same one. */
export interface ModelIdentity {
  /** Human-readable (the folder name). */
  name: string;
  /** Content fingerprint (see `modelFingerprint`). */
  fingerprint: string;
  /** Where it was loaded from when the index was created (a default for later commands). */
  path?: string;
  /**
   * The encoder precision the index's vectors were made at (a default for later commands: queries
   * match best at it). Not part of the identity: every precision approximates the same vectors.
   */
  precision?: Precision;
}

export interface GraphSettings {
  m: number;
  efConstruction: number;
  seed: number;
  /** A document's rows at least this similar (cosine) to one of its rows in the graph stay out of it. */
  dedupCosine: number;
}

/**
 * How a segment's rows are searched: "hnsw" (version 1: an hnswlib graph over the rows, all rows
 * in memory) or "plaid" (version 2: centroids, compressed rows and inverted lists in memory, the
 * full rows on disk for the exact rerank).
 */
export type IndexLayout = "hnsw" | "plaid";
export const INDEX_LAYOUTS: readonly IndexLayout[] = ["hnsw", "plaid"];

export interface SegmentEntry {
  id: number;
  docs: number;
  rows: number;
  /** Rows in the graph (near-duplicates within a document are left out); 0 in a plaid segment. */
  graphRows: number;
  vectors: FileRef;
  documents: FileRef;
  /** The hnsw graph; null in a plaid segment. */
  graph: FileRef | null;
  /** The compressed rows (plaid layout only), with its centroid count. */
  compressed?: FileRef & { centroids: number };
  /** Deleted ordinals, when any. */
  deleted: (FileRef & { count: number; rows: number }) | null;
}

export interface ManifestBody {
  generation: number;
  createdAt: string;
  committedAt: string;
  dim: number;
  storage: VectorStorage;
  model: ModelIdentity | null;
  graph: GraphSettings;
  /** Absent in version 1 (= "hnsw"). */
  layout?: IndexLayout;
  /** How plaid segments are compressed (plaid layout only). */
  codec?: CodecSettings;
  segments: SegmentEntry[];
}

export function layoutOf(manifest: ManifestBody): IndexLayout {
  return manifest.layout ?? "hnsw";
}

/** What an open index, reader or writer, tells about itself from the manifest it holds now. */
export abstract class ManifestView {
  protected manifest!: ManifestBody;

  get generation(): number {
    return this.manifest.generation;
  }
  get dim(): number {
    return this.manifest.dim;
  }
  get storage(): VectorStorage {
    return this.manifest.storage;
  }
  get model(): ModelIdentity | null {
    return this.manifest.model;
  }
  get layout(): IndexLayout {
    return layoutOf(this.manifest);
  }
}

/** One document (a passage) as stored in `seg-<id>.docs.json`. */
export interface StoredDocument {
  id: string;
  /** The file (or other origin) the passage came from; "" if none. */
  source: string;
  /** Character offsets of the passage in its source's extracted text. */
  start: number;
  end: number;
  text: string;
  metadata: Metadata;
  /** Content hash of the whole source when ingested (unchanged-file detection); "" if none. */
  sourceHash: string;
  /** Number of token rows. */
  rows: number;
}

export const segmentFile = {
  vectors: (id: number) => `seg-${pad(id)}.vec`,
  documents: (id: number) => `seg-${pad(id)}.docs.json`,
  graph: (id: number) => `seg-${pad(id)}.hnsw`,
  compressed: (id: number) => `seg-${pad(id)}.plaid`,
  deleted: (id: number, generation: number) => `seg-${pad(id)}.del-${pad(generation)}`,
};

/** Files a writer may remove when no manifest references them (never the manifest or locks). */
export const INDEX_FILE_PATTERN = /^(seg-\d{8}\.(vec|docs\.json|hnsw|plaid|del-\d{8})|manifest\.json\.tmp-\d+)$/;

function pad(n: number): string {
  return String(n).padStart(8, "0");
}

export function serializeManifest(body: ManifestBody): Uint8Array {
  const text = JSON.stringify(body);
  // An hnsw index stays version 1, readable by lfm2-edge versions that predate the plaid layout.
  const version = layoutOf(body) === "plaid" ? 2 : 1;
  const envelope = `{"format":${JSON.stringify(FORMAT_NAME)},"version":${version},"crc32":${crc32(Buffer.from(text))},"body":${text}}\n`;
  return Buffer.from(envelope);
}

/** Parses and validates manifest text; typed errors for a newer version or damage. */
export function parseManifest(text: string, path: string): ManifestBody {
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    throw corrupt(path, "is not valid JSON");
  }
  if (!isObject(envelope) || envelope.format !== FORMAT_NAME) {
    throw new LfmError("INDEX_CORRUPT", `${path} is not an lfm2-edge index manifest (format "${isObject(envelope) ? String(envelope.format) : "?"}"). Point --index at a folder made by lfm index add, or at an empty/new folder.`);
  }
  const version = envelope.version;
  if (typeof version !== "number" || !Number.isInteger(version) || version < 1) throw corrupt(path, `has an invalid version ${String(version)}`);
  if (version > FORMAT_VERSION) {
    throw new LfmError("INDEX_NEWER_VERSION", `the index ${path} was written by a newer lfm2-edge (index format ${version}); this version reads format ${FORMAT_VERSION} only. Upgrade lfm2-edge to open it.`);
  }
  if (!isObject(envelope.body) || typeof envelope.crc32 !== "number") throw corrupt(path, "lacks its body or checksum");
  if (crc32(Buffer.from(JSON.stringify(envelope.body))) !== envelope.crc32) throw corrupt(path, "fails its checksum");
  return validateBody(envelope.body, path, version);
}

function validateBody(b: Record<string, unknown>, path: string, version: number): ManifestBody {
  const bad = (what: string) => corrupt(path, `has an invalid ${what}`);
  if (!isCount(b.generation)) throw bad("generation");
  if (!isCount(b.dim) || b.dim === 0) throw bad("dim");
  if (!VECTOR_STORAGES.includes(b.storage as VectorStorage)) throw bad("storage");
  if (b.model !== null && !(isObject(b.model) && typeof b.model.name === "string" && typeof b.model.fingerprint === "string")) throw bad("model");
  if (isObject(b.model) && b.model.precision !== undefined && !isPrecision(b.model.precision)) throw bad("model precision");
  const g = b.graph;
  if (!isObject(g) || !isCount(g.m) || !isCount(g.efConstruction) || !isCount(g.seed) || typeof g.dedupCosine !== "number") throw bad("graph settings");
  const layout = b.layout ?? "hnsw";
  if (!INDEX_LAYOUTS.includes(layout as IndexLayout) || (layout === "plaid") !== (version >= 2)) throw bad("layout");
  if (layout === "plaid") {
    const c = b.codec;
    if (!isObject(c) || ![1, 2, 4, 8].includes(c.nbits as number) || typeof c.centroidFactor !== "number" || !(c.centroidFactor > 0) || !isCount(c.iterations) || !isCount(c.sampleFactor) || !isCount(c.seed)) throw bad("codec settings");
  }
  if (!Array.isArray(b.segments)) throw bad("segment list");
  for (const s of b.segments as unknown[]) {
    if (!isObject(s) || !isCount(s.id) || !isCount(s.docs) || !isCount(s.rows) || !isCount(s.graphRows)) throw bad("segment");
    const own = layout === "plaid" ? s.compressed : s.graph;
    for (const f of [s.vectors, s.documents, own]) if (!isFileRef(f)) throw bad(`file reference in segment ${String(s.id)}`);
    if (layout === "plaid" && (s.graph !== null || !isObject(s.compressed) || !isCount(s.compressed.centroids))) throw bad(`segment ${String(s.id)}`);
    const del = s.deleted;
    if (del !== null && !(isFileRef(del) && isObject(del) && isCount(del.count) && isCount(del.rows))) throw bad(`deletion list of segment ${String(s.id)}`);
  }
  return b as unknown as ManifestBody;
}

function isFileRef(f: unknown): f is FileRef {
  return isObject(f) && typeof f.name === "string" && INDEX_FILE_PATTERN.test(f.name) && isCount(f.bytes) && isCount(f.crc32);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

export function corrupt(path: string, what: string): LfmError {
  return new LfmError("INDEX_CORRUPT", `the index file ${path} ${what}: it is damaged. ${repairAdvice(path)}`);
}

/** Parses `seg-<id>.docs.json`, checking every record (after its checksum has passed). */
export function parseDocuments(data: Uint8Array, path: string, expected: number): StoredDocument[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    throw corrupt(path, "is not valid JSON");
  }
  if (!isObject(parsed) || !Array.isArray(parsed.docs) || parsed.docs.length !== expected) throw corrupt(path, `does not hold the ${expected} documents the manifest lists`);
  for (const d of parsed.docs as unknown[]) {
    if (!isObject(d) || typeof d.id !== "string" || typeof d.text !== "string" || typeof d.source !== "string" || !isCount(d.rows) || !isObject(d.metadata)) {
      throw corrupt(path, "holds a malformed document record");
    }
  }
  return parsed.docs as StoredDocument[];
}

export function serializeDocuments(docs: StoredDocument[]): Uint8Array {
  return Buffer.from(JSON.stringify({ docs }));
}
