/**
 * A reader: a snapshot of the index as of one committed manifest, searchable while a writer
 * commits (`refresh()` moves to the newest commit, reusing unchanged segments). An hnsw index is
 * loaded whole (vectors, graphs, documents); a plaid index loads documents and compressed rows
 * and reads full rows from disk by range for the exact rerank.
 *
 * Plaid search (PLAID, centroid-codec.ts / centroid-search.ts):
 *  1. the query vectors' scores against every segment's centroids (one Gemm per segment);
 *  2. candidates from the inverted lists of each query vector's `nprobe` best centroids (deleted
 *     and filtered-out documents skipped), estimated from the probed centroids' scores;
 *  3. the `centroidDocs` best estimates rescored with every row's centroid score, the
 *     `residualDocs` best of those with the decompressed rows;
 *  4. the `rerankDocs` best scored exactly from their full rows (read by range) and the top `k`
 *     returned.
 *
 * Hnsw search (PyLate's HNSW retriever, plus an approximate pre-ranking as PLAID does):
 *  1. each query vector's `candidatesPerToken` nearest document vectors over all segment graphs
 *     (inner product; deleted and filtered-out documents skipped; a document's near-duplicate
 *     vectors are not in the graphs, so the neighbours spread over more documents);
 *  2. every document hit gets an approximate MaxSim: per query vector its best hit, or — where it
 *     had none — the lowest similarity that query vector retrieved (an upper bound of what it
 *     missed);
 *  3. the `rerankDocs` best by that estimate are scored exactly from their stored vectors
 *     (rerank.ts) and the top `k` returned.
 * Small (or heavily filtered) indexes are scored exhaustively instead: exact and cheaper.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import { ResidualScorer, centroidMaxSim, probeCandidates } from "./centroid-search.ts";
import { FileVanishedError, checkIndexFolder, repairAdvice, verifyFile } from "./durable-fs.ts";
import { type IndexLayout, MANIFEST_FILE, type ManifestBody, ManifestView, type Metadata, type ModelIdentity, type StoredDocument, layoutOf, parseManifest } from "./format.ts";
import { type MetadataFilter, compileFilter } from "./metadata-filter.ts";
import { MaxSimScorer, type QueryRows, type RowRange } from "./rerank.ts";
import { type LoadedSegment, type PlaidSegment, type SegmentDocs, loadSegment, readSegmentDocs, releaseSegment, segmentRows } from "./segment.ts";
import { type StoredRows, type VectorStorage, gatherRows } from "./vector-codec.ts";
import { staleWriterLocks } from "./writer-lock.ts";

export type { MetadataCondition, MetadataFilter } from "./metadata-filter.ts";

/** Named search settings: `fast` trades recall for speed, `accurate` the reverse (SEARCH_PRESETS). */
export type SearchPreset = "fast" | "default" | "accurate";

export interface SearchOptions {
  /** Results to return (default 10). */
  k?: number;
  filter?: MetadataFilter;
  /** The settings below that are not given come from this preset (default "default"). */
  preset?: SearchPreset;
  /** hnsw: nearest document vectors fetched per query vector (default 64). */
  candidatesPerToken?: number;
  /** hnsw: hnswlib's search breadth (default 128; at least candidatesPerToken). */
  ef?: number;
  /** Documents scored exactly (hnsw default 512, plaid default in SEARCH_PRESETS; at least k). */
  rerankDocs?: number;
  /** plaid: centroids probed per query vector. */
  nprobe?: number;
  /** plaid: candidates rescored from every row's centroid score. */
  centroidDocs?: number;
  /** plaid: candidates rescored from their decompressed rows (0: straight to the exact rerank). */
  residualDocs?: number;
  /** Score every (matching) document exactly instead of using the graphs. */
  exhaustive?: boolean;
}

export interface SearchHit {
  id: string;
  score: number;
  text: string;
  source: string;
  start: number;
  end: number;
  metadata: Metadata;
}

export interface ReaderOptions {
  /** Check every file's CRC-32 on open (default: true for an hnsw index; false for a plaid index,
   *  whose open checks the manifest's checksum and every file's size: `verifyIndex` checks all). */
  verify?: boolean;
  /** onnxruntime threads for exact scoring (default 1: the matrices of one search are small, and
   *  one thread is fastest on a busy machine; raise it for exhaustive search of big indexes). */
  threads?: number;
  /** Exhaustive search when the matching documents hold at most this many vectors (default 20,000). */
  exhaustiveBelowRows?: number;
}

export interface IndexStats {
  dir: string;
  generation: number;
  committedAt: string;
  dim: number;
  storage: VectorStorage;
  layout: IndexLayout;
  model: ModelIdentity | null;
  documents: number;
  deletedDocuments: number;
  rows: number;
  /** Vectors in the graphs (a document's near-duplicate vectors are stored but not in a graph). */
  graphRows: number;
  deletedRows: number;
  segments: number;
  /** Centroids over all segments (plaid). */
  centroids: number;
  sources: number;
  /** `compressed`: the plaid segments' centroids, compressed rows and inverted lists. */
  bytesOnDisk: { vectors: number; documents: number; graphs: number; compressed: number; deletions: number };
}

/**
 * Chosen with bench/retrieval.ts: recall@10 0.999 on 10k and 0.981 on 100k synthetic passages
 * (p95 21 / 37 ms on 2 busy cores). The candidates needed grow with the corpus (more passages
 * share each term): raise them beyond ~100k passages.
 */
export const SEARCH_DEFAULTS = { k: 10, candidatesPerToken: 64, ef: 128, rerankDocs: 512 } as const;

export interface HnswSearchSettings {
  candidatesPerToken: number;
  ef: number;
  rerankDocs: number;
}
export interface PlaidSearchSettings {
  nprobe: number;
  centroidDocs: number;
  residualDocs: number;
  rerankDocs: number;
}

/**
 * The settings of each preset per layout; "default" is what a search without settings uses.
 * Plaid, chosen with bench/retrieval.ts at 100k passages (bench/results/2026-12-03-retrieval-amd-epyc-2c-2.json
 * and -3.json): the settings picked at 10k (residual stage off) fell to recall@10 0.86 at 100k, where
 * more passages share each centroid; scoring 512 candidates from their residuals before the exact
 * rerank of 128 brings the default back to ≥ 0.97 (0.997 in -2.json).
 */
export const SEARCH_PRESETS: Record<SearchPreset, { hnsw: HnswSearchSettings; plaid: PlaidSearchSettings }> = {
  fast: { hnsw: { candidatesPerToken: 16, ef: 48, rerankDocs: 128 }, plaid: { nprobe: 8, centroidDocs: 1024, residualDocs: 256, rerankDocs: 64 } },
  default: { hnsw: { candidatesPerToken: 64, ef: 128, rerankDocs: 512 }, plaid: { nprobe: 8, centroidDocs: 2048, residualDocs: 512, rerankDocs: 128 } },
  accurate: { hnsw: { candidatesPerToken: 128, ef: 192, rerankDocs: 768 }, plaid: { nprobe: 16, centroidDocs: 4096, residualDocs: 1024, rerankDocs: 512 } },
};
const EXHAUSTIVE_BELOW_ROWS = 20_000;
/** Rows scored per onnxruntime call in exhaustive search. */
const BLOCK_ROWS = 32_768;
const OPEN_ATTEMPTS = 10;

interface Candidate {
  segment: number;
  ordinal: number;
}

interface Allowed {
  allowed: Uint8Array[];
  matchingDocs: number;
  matchingRows: number;
}

export class IndexReader extends ManifestView {
  private segments: LoadedSegment[] = [];
  private scorer: Promise<MaxSimScorer> | null = null;
  private centroidScorer: Promise<MaxSimScorer> | null = null;
  private readonly residualScorers = new Map<number, Promise<ResidualScorer>>();
  private readonly filterMemo = new Map<string, Allowed>();
  private byId: Map<string, Candidate> | null = null;

  private constructor(
    readonly dir: string,
    private readonly opts: ReaderOptions,
  ) {
    super();
  }

  static async open(dir: string, opts: ReaderOptions = {}): Promise<IndexReader> {
    checkIndexFolder(resolve(dir));
    verifyAfterCrash(resolve(dir));
    const reader = new IndexReader(resolve(dir), opts);
    await reader.refresh();
    return reader;
  }

  /** Moves to the newest committed state; false if there was none newer. */
  async refresh(): Promise<boolean> {
    const manifestPath = join(this.dir, MANIFEST_FILE);
    for (let attempt = 1; ; attempt++) {
      let text: string;
      try {
        text = readFileSync(manifestPath, "utf8");
      } catch {
        throw new LfmError("INDEX_NOT_FOUND", `no index in ${this.dir} (no ${MANIFEST_FILE}). Create one with lfm index add --index ${this.dir} FILES…`);
      }
      const manifest = parseManifest(text, manifestPath);
      if (this.manifest && manifest.generation === this.manifest.generation) return false;
      const previous = new Map(this.segments.map((s) => [s.entry.id, s]));
      const loaded: LoadedSegment[] = [];
      try {
        const verify = this.opts.verify ?? layoutOf(manifest) === "hnsw";
        for (const e of manifest.segments) loaded.push(loadSegment(this.dir, e, manifest.storage, manifest.dim, verify, previous.get(e.id)));
        const kept = new Set(loaded);
        for (const s of this.segments) if (!kept.has(s) && !loaded.some((l) => l.entry.id === s.entry.id)) releaseSegment(s);
        this.segments = loaded;
        this.manifest = manifest;
        this.filterMemo.clear();
        this.byId = null;
        return true;
      } catch (e) {
        for (const s of loaded) if (previous.get(s.entry.id)?.entry.id !== s.entry.id) releaseSegment(s);
        // A writer committed and removed files of the manifest we read: read the new one.
        if (e instanceof FileVanishedError && attempt < OPEN_ATTEMPTS) continue;
        if (e instanceof FileVanishedError) throw new LfmError("INDEX_CORRUPT", `${e.path} is missing: the index references a file that does not exist. ${repairAdvice(e.path)}`);
        throw e;
      }
    }
  }


  get(id: string): StoredDocument | undefined {
    if (!this.byId) {
      this.byId = new Map();
      this.segments.forEach((s, segment) => s.docs.forEach((d, ordinal) => s.deleted[ordinal] === 0 && this.byId?.set(d.id, { segment, ordinal })));
    }
    const at = this.byId.get(id);
    return at ? this.segments[at.segment].docs[at.ordinal] : undefined;
  }

  /** Every live document (without vectors). */
  *documents(): IterableIterator<StoredDocument> {
    for (const s of this.segments) for (let o = 0; o < s.docs.length; o++) if (s.deleted[o] === 0) yield s.docs[o];
  }

  /** A live document's stored vectors, decoded to float32 by the caller with vector-codec's decodeRows. */
  storedRows(id: string): StoredRows | undefined {
    if (!this.get(id)) return undefined;
    const at = this.byId?.get(id) as Candidate;
    const s = this.segments[at.segment];
    return gatherRows(this.manifest.storage, this.manifest.dim, [segmentRows(s, s.rowStart[at.ordinal], s.docs[at.ordinal].rows)]);
  }

  stats(): IndexStats {
    return statsOf(this.dir, this.manifest, this.segments);
  }

  /** The `k` best passages for a query's token vectors (see the file comment). */
  async search(query: QueryRows, opts: SearchOptions = {}): Promise<SearchHit[]> {
    const k = opts.k ?? SEARCH_DEFAULTS.k;
    if (!Number.isInteger(k) || k < 1) throw new LfmError("INVALID_ARGUMENT", `k must be a positive integer, got ${k}.`);
    if (query.dim !== this.manifest.dim) {
      throw new LfmError("INDEX_MODEL_MISMATCH", `the query vectors are ${query.dim}-d but the index stores ${this.manifest.dim}-d vectors; encode queries with the model that built the index.`);
    }
    if (query.rows < 1) throw new LfmError("INVALID_ARGUMENT", "the query has no token vectors.");
    const preset = opts.preset ?? "default";
    if (!(preset in SEARCH_PRESETS)) throw new LfmError("INVALID_ARGUMENT", `preset must be fast, default or accurate, got ${String(preset)}.`);
    const { allowed, matchingDocs, matchingRows } = this.allowed(opts.filter);
    if (matchingDocs === 0) return [];
    if (opts.exhaustive || matchingRows <= (this.opts.exhaustiveBelowRows ?? EXHAUSTIVE_BELOW_ROWS)) return this.exhaustive(query, k, allowed);
    if (this.layout === "plaid") return this.plaidSearch(query, k, this.allowed(opts.filter), { ...SEARCH_PRESETS[preset].plaid, ...definedOnly(opts) });
    const hnswDefaults = SEARCH_PRESETS[preset].hnsw;

    // With a filter, only a share of the nearest vectors is usable: look as much further.
    const totalRows = this.segments.reduce((n, s) => n + s.entry.rows, 0);
    const widening = Math.min(16, totalRows / matchingRows);
    let perToken = Math.ceil((opts.candidatesPerToken ?? hnswDefaults.candidatesPerToken) * widening);
    let ef = Math.ceil((opts.ef ?? hnswDefaults.ef) * widening);
    const rerankDocs = Math.max(k, opts.rerankDocs ?? hnswDefaults.rerankDocs);
    for (let widen = 0; ; widen++) {
      const candidates = this.candidates(query, allowed, perToken, Math.max(ef, perToken));
      // A selective filter can leave too few hits among the nearest vectors: look further, then everywhere.
      if (candidates.length >= Math.min(k, matchingDocs)) return this.rerank(query, candidates.slice(0, rerankDocs), k);
      if (widen === 2) return this.exhaustive(query, k, allowed);
      perToken *= 4;
      ef *= 4;
    }
  }

  async close(): Promise<void> {
    const scorers: Array<Promise<{ release(): Promise<void> }> | null> = [this.scorer, this.centroidScorer, ...this.residualScorers.values()];
    this.scorer = null;
    this.centroidScorer = null;
    this.residualScorers.clear();
    for (const s of this.segments) releaseSegment(s);
    this.segments = [];
    for (const scorer of scorers) if (scorer) await (await scorer).release();
  }

  /** Plaid search (see the file comment). */
  private async plaidSearch(query: QueryRows, k: number, allowed: Allowed, settings: PlaidSearchSettings): Promise<SearchHit[]> {
    const { matchingDocs, matchingRows } = allowed;
    for (const [name, v] of Object.entries(settings)) {
      if (!Number.isInteger(v) || v < (name === "residualDocs" ? 0 : 1)) throw new LfmError("INVALID_ARGUMENT", `${name} must be a ${name === "residualDocs" ? "non-negative" : "positive"} integer, got ${v}.`);
    }
    const centroidScorer = await this.getCentroidScorer();
    const Q = query.rows;
    // With a filter, fewer documents per list are usable: probe as much further (up to 16×).
    const totalRows = this.segments.reduce((n, s) => n + s.entry.rows, 0);
    const widening = Math.min(16, totalRows / matchingRows);
    const nprobe = Math.ceil(settings.nprobe * widening);
    const sims: Float32Array[] = [];
    const probed: ScoredPool[] = [];
    for (let segment = 0; segment < this.segments.length; segment++) {
      const s = this.segments[segment] as PlaidSegment;
      const c = s.compressed;
      // Centroids × query rows (see probeCandidates).
      const sim = await centroidScorer.similarities({ rows: c.centroidCount, dim: c.dim, data: c.centroids }, { storage: "float32", dim: query.dim, rows: Q, codes: query.data.subarray(0, Q * query.dim) });
      sims.push(sim);
      probed.push({ segment, ...probeCandidates(c, allowed.allowed[segment], sim, Q, nprobe) });
    }
    // Keep the best `count` of the pooled candidates, then rescore them per segment with `score`.
    const narrow = async (pools: ScoredPool[], count: number, score: (s: PlaidSegment, segment: number, ordinals: Uint32Array) => Float64Array | Promise<Float64Array>): Promise<ScoredPool[]> => {
      const kept = bestPooled(pools, count);
      const bySegment = new Map<number, number[]>();
      for (const x of kept) {
        let list = bySegment.get(x.segment);
        if (!list) bySegment.set(x.segment, (list = []));
        list.push(x.ordinal);
      }
      const out: ScoredPool[] = [];
      for (const p of pools) {
        const list = bySegment.get(p.segment);
        if (!list) continue;
        const ordinals = Uint32Array.from(list);
        out.push({ segment: p.segment, ordinals, scores: await score(this.segments[p.segment] as PlaidSegment, p.segment, ordinals) });
      }
      return out;
    };
    const rerankDocs = Math.max(k, settings.rerankDocs);
    let pools = await narrow(probed, Math.max(rerankDocs, settings.centroidDocs), (s, seg, ords) => centroidMaxSim(s.compressed, s.rowStart, ords, sims[seg], Q));
    if (settings.residualDocs > 0) {
      pools = await narrow(pools, Math.max(rerankDocs, settings.residualDocs), async (s, seg, ords) =>
        (await this.getResidualScorer(s.compressed.nbits)).score(s.compressed, s.rowStart, ords, sims[seg], query.data, Q),
      );
    }
    const candidates = bestPooled(pools, rerankDocs).map(({ segment, ordinal }) => ({ segment, ordinal }));
    // Too few documents in the probed lists (a selective filter): score the matching ones exactly.
    if (candidates.length < Math.min(k, matchingDocs)) return this.exhaustive(query, k, allowed.allowed);
    return this.rerank(query, candidates, k);
  }

  /** Documents hit by the query vectors' nearest neighbours, best approximate score first. */
  private candidates(query: QueryRows, allowed: Uint8Array[], perToken: number, ef: number): Candidate[] {
    const { dim } = query;
    const Q = query.rows;
    const approx = new Map<number, Float32Array>();
    const floor = new Float64Array(Q);
    const segments = this.segments.filter((s) => s.kind === "hnsw");
    if (segments.length !== this.segments.length) throw new LfmError("INDEX_CORRUPT", `the index ${this.dir} mixes layouts.`);
    for (const s of segments) s.graph.setEf(ef);
    const point = new Array<number>(dim);
    for (let q = 0; q < Q; q++) {
      for (let d = 0; d < dim; d++) point[d] = query.data[q * dim + d];
      // hnswlib's inner-product distance is 1 − ⟨q, v⟩.
      let hits: Array<{ distance: number; segment: number; row: number }> = [];
      segments.forEach((s, segment) => {
        const { distances, neighbors } = s.graph.searchKnn(point, Math.min(perToken, s.entry.graphRows));
        for (let j = 0; j < neighbors.length; j++) hits.push({ distance: distances[j], segment, row: neighbors[j] });
      });
      if (this.segments.length > 1) hits = hits.sort((a, b) => a.distance - b.distance).slice(0, perToken);
      floor[q] = hits.length > 0 ? 1 - hits[hits.length - 1].distance : 0;
      for (const h of hits) {
        const s = segments[h.segment];
        const ordinal = s.rowDoc[h.row];
        if (allowed[h.segment][ordinal] === 0) continue;
        const key = h.segment * 4294967296 + ordinal;
        let best = approx.get(key);
        if (!best) {
          best = new Float32Array(Q).fill(Number.NaN);
          approx.set(key, best);
        }
        const sim = 1 - h.distance;
        if (!(best[q] >= sim)) best[q] = sim;
      }
    }
    const scored: Array<{ key: number; score: number }> = [];
    for (const [key, best] of approx) {
      let score = 0;
      for (let q = 0; q < Q; q++) score += Number.isNaN(best[q]) ? floor[q] : best[q];
      scored.push({ key, score });
    }
    scored.sort((a, b) => b.score - a.score || a.key - b.key);
    return scored.map(({ key }) => ({ segment: Math.floor(key / 4294967296), ordinal: key % 4294967296 }));
  }

  /** Exact MaxSim of the candidates; the best `k`. */
  private async rerank(query: QueryRows, candidates: Candidate[], k: number): Promise<SearchHit[]> {
    const scorer = await this.getScorer();
    const parts = candidates.map(({ segment, ordinal }) => {
      const s = this.segments[segment];
      return segmentRows(s, s.rowStart[ordinal], s.docs[ordinal].rows);
    });
    const rows = gatherRows(this.manifest.storage, this.manifest.dim, parts);
    const scores = await scorer.score(query, rows, rangesOf(parts));
    return this.best(candidates, scores, k);
  }

  /** Exact MaxSim of every allowed document, a block of rows at a time. */
  private async exhaustive(query: QueryRows, k: number, allowed: Uint8Array[]): Promise<SearchHit[]> {
    const scorer = await this.getScorer();
    const all: Candidate[] = [];
    const scores: number[] = [];
    let block: Candidate[] = [];
    let parts: Array<{ rows: StoredRows; start: number; count: number }> = [];
    let blockRows = 0;
    const flush = async () => {
      if (block.length === 0) return;
      const rows = gatherRows(this.manifest.storage, this.manifest.dim, parts);
      const s = await scorer.score(query, rows, rangesOf(parts));
      all.push(...block);
      for (const x of s) scores.push(x);
      block = [];
      parts = [];
      blockRows = 0;
    };
    for (let segment = 0; segment < this.segments.length; segment++) {
      const s = this.segments[segment];
      for (let ordinal = 0; ordinal < s.docs.length; ordinal++) {
        if (allowed[segment][ordinal] === 0) continue;
        block.push({ segment, ordinal });
        parts.push(segmentRows(s, s.rowStart[ordinal], s.docs[ordinal].rows));
        blockRows += s.docs[ordinal].rows;
        if (blockRows >= BLOCK_ROWS) await flush();
      }
    }
    await flush();
    return this.best(all, Float64Array.from(scores), k);
  }

  private best(candidates: Candidate[], scores: Float64Array, k: number): SearchHit[] {
    const order = [...candidates.keys()].sort((a, b) => scores[b] - scores[a] || candidates[a].segment - candidates[b].segment || candidates[a].ordinal - candidates[b].ordinal);
    return order.slice(0, k).map((i) => {
      const d = this.segments[candidates[i].segment].docs[candidates[i].ordinal];
      return { id: d.id, score: scores[i], text: d.text, source: d.source, start: d.start, end: d.end, metadata: d.metadata };
    });
  }

  /** Per segment, 1 for each live document the filter accepts; and how many documents and rows that is. */
  private allowed(filter: MetadataFilter | undefined): Allowed {
    const key = filter && Object.keys(filter).length > 0 ? JSON.stringify(filter) : "";
    const memo = this.filterMemo.get(key);
    if (memo) return memo;
    const accepts = compileFilter(filter);
    const result: Allowed = { allowed: [], matchingDocs: 0, matchingRows: 0 };
    for (const s of this.segments) {
      const out = new Uint8Array(s.docs.length);
      for (let o = 0; o < s.docs.length; o++) {
        if (s.deleted[o] === 1 || !accepts(s.docs[o])) continue;
        out[o] = 1;
        result.matchingDocs++;
        result.matchingRows += s.docs[o].rows;
      }
      result.allowed.push(out);
    }
    if (this.filterMemo.size >= 16) this.filterMemo.delete(this.filterMemo.keys().next().value as string);
    this.filterMemo.set(key, result);
    return result;
  }

  private getScorer(): Promise<MaxSimScorer> {
    this.scorer ??= MaxSimScorer.create(this.manifest.storage, this.manifest.dim, this.opts.threads ?? 1);
    return this.scorer;
  }

  /** Stage C of a plaid search (one per residual width; an index has one). */
  private getResidualScorer(nbits: number): Promise<ResidualScorer> {
    let scorer = this.residualScorers.get(nbits);
    if (!scorer) {
      scorer = ResidualScorer.create(this.manifest.dim, nbits, this.opts.threads ?? 1);
      this.residualScorers.set(nbits, scorer);
    }
    return scorer;
  }

  /** Query × centroid scores (float32). */
  private getCentroidScorer(): Promise<MaxSimScorer> {
    this.centroidScorer ??= MaxSimScorer.create("float32", this.manifest.dim, this.opts.threads ?? 1);
    return this.centroidScorer;
  }
}

/** The manifest of the index in `dir` (nothing else is read), or null if there is none. */
export function readIndexManifest(dir: string): ManifestBody | null {
  checkIndexFolder(resolve(dir));
  const path = join(resolve(dir), MANIFEST_FILE);
  if (!existsSync(path)) return null;
  return parseManifest(readFileSync(path, "utf8"), path);
}

/** Statistics from the manifest and the passage lists only (no vectors, no graphs). */
export function readIndexStats(dir: string, verify = true): IndexStats {
  const root = resolve(dir);
  const manifest = readIndexManifest(root);
  if (!manifest) throw new LfmError("INDEX_NOT_FOUND", `no index in ${root} (no ${MANIFEST_FILE}). Create one with lfm index add --index ${dir} FILES…`);
  return statsOf(root, manifest, manifest.segments.map((e) => readSegmentDocs(root, e, verify)));
}

function statsOf(dir: string, manifest: ManifestBody, segments: SegmentDocs[]): IndexStats {
  const st: IndexStats = {
    dir,
    generation: manifest.generation,
    committedAt: manifest.committedAt,
    dim: manifest.dim,
    storage: manifest.storage,
    layout: layoutOf(manifest),
    model: manifest.model,
    documents: 0,
    deletedDocuments: 0,
    rows: 0,
    graphRows: 0,
    deletedRows: 0,
    segments: segments.length,
    centroids: 0,
    sources: 0,
    bytesOnDisk: { vectors: 0, documents: 0, graphs: 0, compressed: 0, deletions: 0 },
  };
  const sources = new Set<string>();
  for (const s of segments) {
    st.documents += s.docs.length - s.deletedCount;
    st.deletedDocuments += s.deletedCount;
    st.rows += s.entry.rows - s.deletedRows;
    st.graphRows += s.entry.graphRows;
    st.deletedRows += s.deletedRows;
    st.bytesOnDisk.vectors += s.entry.vectors.bytes;
    st.bytesOnDisk.documents += s.entry.documents.bytes;
    st.bytesOnDisk.graphs += s.entry.graph?.bytes ?? 0;
    st.bytesOnDisk.compressed += s.entry.compressed?.bytes ?? 0;
    st.centroids += s.entry.compressed?.centroids ?? 0;
    st.bytesOnDisk.deletions += s.entry.deleted?.bytes ?? 0;
    s.docs.forEach((d, o) => s.deleted[o] === 0 && d.source !== "" && sources.add(d.source));
  }
  st.sources = sources.size;
  return st;
}

/**
 * Checks every file of the index against the size and CRC-32 its manifest records (what opening a
 * plaid index skips); throws INDEX_CORRUPT naming the first damaged file. Returns the files checked.
 */
export function verifyIndex(dir: string): { files: number; bytes: number } {
  const root = resolve(dir);
  const manifest = readIndexManifest(root);
  if (!manifest) throw new LfmError("INDEX_NOT_FOUND", `no index in ${root} (no ${MANIFEST_FILE}). Create one with lfm index add --index ${dir} FILES…`);
  let files = 0;
  let bytes = 0;
  for (const e of manifest.segments) {
    for (const ref of [e.vectors, e.documents, e.graph, e.compressed, e.deleted]) {
      if (!ref) continue;
      try {
        verifyFile(root, ref, true);
      } catch (err) {
        if (err instanceof FileVanishedError) throw new LfmError("INDEX_CORRUPT", `${err.path} is missing: the index references a file that does not exist. ${repairAdvice(err.path)}`);
        throw err;
      }
      files++;
      bytes += ref.bytes;
    }
  }
  // Parsed too: a file can pass its checksum and still not be what the manifest describes.
  for (const e of manifest.segments) loadSegmentForCheck(root, e, manifest);
  return { files, bytes };
}

/**
 * A writer that died (its lock file is left, its process gone) may have died with the machine,
 * and a power cut can lose or garble files the file system had acknowledged: check every checksum
 * once, then drop the dead lock so the next open is fast again. A damaged index throws here.
 */
function verifyAfterCrash(dir: string): void {
  const stale = staleWriterLocks(dir);
  if (stale.length === 0 || !existsSync(join(dir, MANIFEST_FILE))) return;
  verifyIndex(dir);
  for (const path of stale) {
    try {
      rmSync(path, { force: true });
    } catch {
      // read-only media: verified again next time, nothing lost
    }
  }
}

function loadSegmentForCheck(root: string, e: ManifestBody["segments"][number], manifest: ManifestBody): void {
  if (!e.compressed) {
    readSegmentDocs(root, e, false);
    return;
  }
  releaseSegment(loadSegment(root, e, manifest.storage, manifest.dim, false));
}

/** The options given (not undefined), so they override a preset's. */
function definedOnly(opts: SearchOptions): Partial<PlaidSearchSettings> {
  const out: Partial<PlaidSearchSettings> = {};
  for (const key of ["nprobe", "centroidDocs", "residualDocs", "rerankDocs"] as const) if (opts[key] !== undefined) out[key] = opts[key];
  return out;
}

/** One segment's candidates (document ordinals) and their scores at some stage. */
interface ScoredPool {
  segment: number;
  ordinals: Uint32Array;
  scores: Float64Array;
}

/**
 * The `count` best candidates of all pools, best first (score, then segment, then ordinal: a
 * total order, so the result does not depend on the pools' order). The count-th best score is
 * found by selection over the scores alone (no sort of the tens of thousands the probe finds);
 * only the candidates at or above it are ordered, as objects. A NaN score ranks last.
 */
function bestPooled(pools: ScoredPool[], count: number): Array<{ segment: number; ordinal: number; score: number }> {
  let total = 0;
  for (const p of pools) total += p.scores.length;
  let threshold = -Infinity;
  if (total > count) {
    const all = new Float64Array(total);
    let at = 0;
    for (const p of pools) for (let i = 0; i < p.scores.length; i++) all[at++] = Number.isNaN(p.scores[i]) ? -Infinity : p.scores[i];
    threshold = selectKth(all, total - count);
  }
  const kept: Array<{ segment: number; ordinal: number; score: number }> = [];
  for (const p of pools) {
    for (let i = 0; i < p.ordinals.length; i++) {
      const score = Number.isNaN(p.scores[i]) ? -Infinity : p.scores[i];
      if (score >= threshold) kept.push({ segment: p.segment, ordinal: p.ordinals[i], score });
    }
  }
  kept.sort((a, b) => b.score - a.score || a.segment - b.segment || a.ordinal - b.ordinal);
  return kept.length > count ? kept.slice(0, count) : kept;
}

/** The k-th smallest value of `a` (0-based; no NaN), by Hoare's selection; reorders `a`. */
function selectKth(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const x = a[i];
        a[i] = a[j];
        a[j] = x;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

function rangesOf(parts: Array<{ count: number }>): RowRange[] {
  let at = 0;
  return parts.map(({ count }) => {
    const r = { start: at, count };
    at += count;
    return r;
  });
}
