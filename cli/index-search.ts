/**
 * `lfm index add|rm|stats|compact` and `lfm search`: a persistent LFM2-ColBERT index of local
 * files (retrieval/index, retrieval/ingest). Scriptable contract, kept stable:
 *   lfm search … --json  →  {"results": [{"id", "score", "text", "source", "metadata"}]}
 */
import { existsSync, rmSync, rmdirSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { LfmError } from "../text-core/errors.ts";
import { type IndexStats, IndexReader, type MetadataFilter, type SearchPreset, readIndexManifest, readIndexStats, verifyIndex } from "../retrieval/index/reader.ts";
import { MANIFEST_FILE, type Metadata, type ModelIdentity } from "../retrieval/index/format.ts";
import { type MetadataCondition, parseDate } from "../retrieval/index/metadata-filter.ts";
import { chooseIndexModel, modelIdentity } from "../retrieval/index/model-identity.ts";
import { searchText } from "../retrieval/index/search-text.ts";
import { CALIBRATION_FILE, CALIBRATION_PROBES_RANGE, DEFAULT_CALIBRATION_PROBES, DEFAULT_CALIBRATION_SEED, DEFAULT_KEEP_ANSWERABLE } from "../retrieval/index/calibration.ts";
import { IndexWriter } from "../retrieval/index/writer.ts";
import { encoderTokenCounter } from "../retrieval/ingest/chunker.ts";
import { type IngestReport, describeSkipped, ingestPaths, removePaths } from "../retrieval/ingest/ingest.ts";
import { DEFAULT_MAX_FILE_SIZE, parseByteSize } from "../retrieval/ingest/source-file.ts";
import type { ColbertEncoder } from "../retrieval/colbert.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { type CliCommand, COMMON, type Values, loadFlags, num, parse, precisionOf, threadsOf } from "./cli-kit.ts";
import { floatRange, intRange } from "./flags.ts";
import { ProgressBar } from "./progress-bar.ts";
import { modelOrBundled } from "./bundled.ts";
import { terminalLine } from "./terminal-text.ts";

/** The numeric flags of index and search. Passages longer than the model's document_length are cut by the encoder anyway. */
const CHUNK_TOKENS = intRange(1, 100_000);
const OVERLAP_TOKENS = intRange(0, 99_999);
const COMMIT_EVERY = intRange(1, 1_000_000);
/** 0: commit after every encoded piece; a day at most. */
const COMMIT_SECONDS = floatRange(0, 86_400);
/** Each hit is printed with its passage: ten thousand is already more than a reader scans. */
const SEARCH_K = intRange(1, 10_000);

const INDEX_OPTIONS = {
  ...COMMON,
  index: { type: "string" },
  storage: { type: "string" },
  layout: { type: "string" },
  "chunk-tokens": { type: "string" },
  "overlap-tokens": { type: "string" },
  meta: { type: "string", multiple: true },
  "commit-every": { type: "string" },
  "commit-seconds": { type: "string" },
  "max-file-size": { type: "string" },
  strict: { type: "boolean" },
  probes: { type: "string" },
  "keep-answerable": { type: "string" },
  seed: { type: "string" },
} as const;

/** The filter flags of lfm search and lfm ask (searchFilter). */
export const FILTER_OPTIONS = {
  filter: { type: "string", multiple: true },
  "path-prefix": { type: "string", multiple: true },
  after: { type: "string" },
  before: { type: "string" },
  "date-key": { type: "string" },
} as const;

const SEARCH_OPTIONS = {
  ...COMMON,
  index: { type: "string" },
  ...FILTER_OPTIONS,
  k: { type: "string", short: "k" },
  exhaustive: { type: "boolean" },
  fast: { type: "boolean" },
  accurate: { type: "boolean" },
} as const;

const INDEX_HELP = `lfm index add|rm|stats|compact|verify|upgrade|calibrate --index DIR [options] [PATHS...]
  add PATHS      Index .txt, .md, .html, .pdf and .docx files (folders: recursively, without hidden
                 files and without following links). Files already indexed and unchanged are
                 skipped; changed ones are replaced. A file named here that cannot be indexed
                 (missing, not a regular file, too large, unreadable, unsupported type) is an
                 error: exit 2, nothing committed. Files found in folders that cannot be indexed
                 are skipped, summed up in one line on stderr (exit 0; 2 with --strict).
                 Commits every 128 passages or 60 s (small files whole, a big file in parts);
                 Ctrl-C keeps every commit made (exit 130); the same command again continues.
  rm PATHS       Remove the passages of these files (or of every file under these folders).
  stats          What the index holds.
  compact        Rewrite the index without deleted passages, with fresh graphs (hnsw) or
                 centroids trained anew (plaid).
  verify         Check every file against the size and checksum the manifest records (opening
                 a plaid index checks sizes only). Exit 2 with INDEX_CORRUPT naming a damaged file.
  upgrade        Rewrite an hnsw index (format 1) as a plaid index (format 2): every passage and
                 its stored vectors kept; atomic like a commit.
  calibrate      Fit lfm ask's abstention threshold to this index and its model:
                 scores phrases of sampled passages (answerable) and as many words drawn from
                 other passages (unanswerable), keeps the threshold that answers --keep-answerable
                 of the first and rejects the most of the second, and stores it beside the index
                 (calibration.json; the index itself is not changed). lfm ask then uses it unless
                 given a threshold. Run it again after big changes to the corpus.

Options:
  --index DIR            The index folder (created by the first add).
  --model DIR            PyLate ColBERT folder. Default: the model that built the index, else the
                         bundled tiny random model (fixtures/retrieval/tiny-lfm2-colbert).
  --precision P          q8 (default, fastest) | q4 | fp32 (PyLate's float32 vectors)   --threads N
  --storage S            New index only: float16 (default) | int8 (half the vector file,
                         slightly lower recall) | float32
  --layout L             New index only: plaid (default: centroids + 2-bit residuals in memory,
                         ~40 B a token vector; full vectors read from disk to rerank) | hnsw
                         (graph over every vector in memory, ~800 B a token vector)
  --chunk-tokens N       Passage size in model tokens (default: min(document_length − 2, 256); 1 to ${CHUNK_TOKENS.max})
  --overlap-tokens N     Tokens shared by consecutive passages (default: passage size / 8; 0 to
                         the passage size − 1)
  --meta KEY=VALUE       Metadata for every passage of this add (repeatable); filter on it in search
  --commit-every N       Passages per commit (default 128; 1 to ${COMMIT_EVERY.max})
  --commit-seconds S     Commit what is encoded after S seconds at most (default 60; 0 to 86400)
  --max-file-size SIZE   Larger files are not read (default ${DEFAULT_MAX_FILE_SIZE / 1024 ** 2}M; e.g. 50M, 2G, 512K:
                         KiB/MiB/GiB; 2G at most)
  --strict               Fail (exit 2, nothing committed) on files in folders that cannot be indexed
  --probes N             calibrate: probes of each kind (default ${DEFAULT_CALIBRATION_PROBES}; ${CALIBRATION_PROBES_RANGE.min} to ${CALIBRATION_PROBES_RANGE.max})
  --keep-answerable P    calibrate: share of answerable probes to keep (default ${DEFAULT_KEEP_ANSWERABLE}; 0.5 to 1)
  --seed S               calibrate: sampling seed (default ${DEFAULT_CALIBRATION_SEED})
  --json                 Print a JSON report (skipped files listed with path, reason and kind).
  Also: --cache-dir DIR, --no-cache (lfm --help).
  A terminal shows progress on stderr: files and passages done, rate, ETA (not with --json).
  Control characters in file names and passages are shown escaped (\\x1b) on a terminal;
  --json keeps the exact text.`;

/** The filter flags' help, shared with lfm ask. */
export const FILTER_HELP = `  --filter KEY=VALUE   Only passages whose metadata KEY is VALUE (repeat: all must hold; the same
                       KEY twice: either value). KEY "source" is the file path; ingest sets
                       "type" (txt|md|html|pdf|docx), "title", "modified" (the file's modification
                       time, UTC) and, for PDFs, "page". KEY^=PREFIX: KEY starts with PREFIX.
  --path-prefix PATH   Only passages of files whose path starts with PATH (relative to the current
                       folder; "docs/" for the folder docs, "docs/man" also matches docs/manual.md).
                       Repeat: any of them.
  --after DATE         Only passages whose "modified" is on or after DATE (2024-01-31, or
                       2024-01-31T12:00:00Z; without an offset UTC) ...
  --before DATE        ... and strictly before DATE: --after 2024-01-01 --before 2025-01-01 is 2024.
                       Passages without a date (indexed before lfm2-edge recorded it) never match.
  --date-key KEY       The metadata key --after/--before read (default "modified"; any key holding
                       ISO dates, e.g. published=2024-05-01 given as metadata to lfm index add)`;

const SEARCH_HELP = `lfm search --index DIR [--model DIR] [--filter KEY=VALUE]... [-k 10] [--json] QUERY
  The k passages that best match QUERY (exact MaxSim over the index's candidates). Filters
  apply before ranking: the k best of the matching passages.
  -k N                 How many passages (default 10; 1 to ${SEARCH_K.max}).
${FILTER_HELP}
  --exhaustive         Score every passage exactly (slow on big indexes; for checking).
  --fast | --accurate  Search settings trading recall for speed, or speed for recall (the
                       default keeps recall@10 ≥ 0.97 against exact scoring in the benchmark).
  --json               {"results": [{"id", "score", "text", "source", "metadata"}]}, text exact.
  Without --json, control characters of passages and file names (ESC, OSC, bidi overrides,
  a newline in a file name) are printed as visible escapes (\\x1b, \\u202e, \\n).
  --precision P, --threads N, --cache-dir DIR, --no-cache   As for lfm index (lfm --help).`;

export const indexCommand: CliCommand = {
  name: "index",
  summary: "Build and maintain a ColBERT index of local files (add, rm, stats, compact).",
  help: INDEX_HELP,
  options: INDEX_OPTIONS,
  async run(args, signal) {
    const [action, ...rest] = args;
    const { values: v, positionals } = parse(rest, INDEX_OPTIONS);
    const dir = requireIndex(v);
    checkIndexFlags(v);
    switch (action) {
      case "add":
        return indexAdd(dir, v, positionals, signal);
      case "rm":
        return indexRemove(dir, v, positionals);
      case "verify": {
        const result = verifyIndex(dir);
        console.log(v.json ? JSON.stringify({ ok: true, ...result }) : `ok: ${result.files} files (${(result.bytes / 1e6).toFixed(1)} MB) match the manifest's sizes and checksums.`);
        return 0;
      }
      case "upgrade": {
        const writer = await IndexWriter.open(dir);
        const bar = new ProgressBar(process.stderr, Boolean(process.stderr.isTTY) && !v.json);
        try {
          const result = await writer.upgrade({ signal, onProgress: (stage, done, total) => commitProgress(bar, stage, done, total) });
          bar.done();
          if (v.json) console.log(JSON.stringify(result ?? { upgraded: false, generation: writer.generation }));
          else console.log(result ? `upgraded to the plaid layout (format 2): ${result.segments} segment(s), generation ${result.generation}` : "the index already has the plaid layout; nothing to do.");
        } finally {
          bar.done();
          await writer.close();
        }
        return 0;
      }
      case "stats": {
        const stats = readIndexStats(dir);
        console.log(v.json ? JSON.stringify(stats) : formatStats(stats));
        return 0;
      }
      case "calibrate":
        return indexCalibrate(dir, v, signal);
      case "compact": {
        const writer = await IndexWriter.open(dir);
        const bar = new ProgressBar(process.stderr, Boolean(process.stderr.isTTY) && !v.json);
        try {
          const result = await writer.compact({ signal, onProgress: (stage, done, total) => commitProgress(bar, stage, done, total) });
          bar.done();
          console.log(v.json ? JSON.stringify(result) : `compacted: ${result.segments} segment(s), generation ${result.generation}`);
        } finally {
          bar.done();
          await writer.close();
        }
        return 0;
      }
      default:
        throw new LfmError("INVALID_ARGUMENT", `lfm index needs an action: add, rm, stats, compact, verify, upgrade or calibrate (got ${action === undefined ? "none" : `"${action}"`}). See lfm index --help.`);
    }
  },
};

export const searchCommand: CliCommand = {
  name: "search",
  summary: "Search a ColBERT index (lfm index add) for the passages that best match a query.",
  help: SEARCH_HELP,
  options: SEARCH_OPTIONS,
  async run(args, signal) {
    const { values: v, positionals } = parse(args, SEARCH_OPTIONS);
    const dir = requireIndex(v);
    const query = positionals.join(" ").trim();
    if (query === "") throw new LfmError("INVALID_ARGUMENT", "lfm search needs a query: lfm search --index DIR \"your question\".");
    const k = num(v, "k", SEARCH_K) ?? 10;
    precisionOf(v);
    threadsOf(v);
    const filter = searchFilter(v);
    const preset = searchPreset(v);
    const reader = await IndexReader.open(dir);
    try {
      const model = chooseModel(v, reader.model);
      const encoder = await loadEncoder(model.path as string, v, precisionOf(v) ?? reader.model?.precision);
      try {
        const { hits } = await searchText(reader, encoder, query, { k, filter, exhaustive: Boolean(v.exhaustive), preset, signal });
        if (v.json) {
          console.log(JSON.stringify({ results: hits.map((h) => ({ id: h.id, score: h.score, text: h.text, source: h.source, metadata: h.metadata })) }));
        } else if (hits.length === 0) {
          console.log(filter ? "no passage matches the filter." : "the index is empty.");
        } else {
          hits.forEach((h, i) => {
            const where = [terminalLine(h.source || h.id), typeof h.metadata.page === "number" ? `page ${h.metadata.page}` : ""].filter(Boolean).join(", ");
            console.log(`${String(i + 1).padStart(2)}. ${h.score.toFixed(3)}  ${where}`);
            // Cut before escaping, so an escape is never cut in half; the snippet is one line.
            const snippet = h.text.replace(/\s+/g, " ").trim();
            console.log(`    ${terminalLine(snippet.length > 240 ? `${snippet.slice(0, 240)}…` : snippet)}`);
          });
        }
      } finally {
        await encoder.release();
      }
    } finally {
      await reader.close();
    }
    return 0;
  },
};

async function indexAdd(dir: string, v: Values, paths: string[], signal: AbortSignal): Promise<number> {
  if (paths.length === 0) throw new LfmError("INVALID_ARGUMENT", "lfm index add needs files or folders to index.");
  const commitEvery = num(v, "commit-every", COMMIT_EVERY);
  const commitSeconds = num(v, "commit-seconds", COMMIT_SECONDS);
  const maxFileSize = typeof v["max-file-size"] === "string" ? parseByteSize(v["max-file-size"], "--max-file-size") : undefined;
  const indexModel = readIndexManifest(dir)?.model ?? null;
  // An add that fails before its first commit leaves no index behind when it was creating one.
  const creating = !existsSync(join(dir, MANIFEST_FILE));
  const createdFolder = creating ? topmostMissing(dir) : null;
  const model = chooseModel(v, indexModel);
  // The vectors are made at --precision, else at the index's own, else (a new index) the encoder's
  // default; a new index records it, and later commands default to it.
  const precision = precisionOf(v) ?? indexModel?.precision ?? (await import("../retrieval/colbert.ts")).DEFAULT_COLBERT_PRECISION;
  const storage = (v.storage as string | undefined) ?? "float16";
  if (storage !== "float16" && storage !== "int8" && storage !== "float32") throw new LfmError("INVALID_ARGUMENT", `--storage must be float16, int8 or float32 (got "${storage}").`);
  const layout = (v.layout as string | undefined) ?? "plaid";
  if (layout !== "plaid" && layout !== "hnsw") throw new LfmError("INVALID_ARGUMENT", `--layout must be plaid or hnsw (got "${layout}").`);
  // The writer first where the vector width is known from the Dense config: a locked index is
  // refused before the model loads.
  const { loadPylateFolder } = await import("../retrieval/pylate-config.ts");
  let encoder: ColbertEncoder | null = null;
  let dim = loadPylateFolder(model.path as string).dense.at(-1)?.outFeatures;
  if (dim === undefined) {
    encoder = await loadEncoder(model.path as string, v, precision);
    dim = encoder.dim;
  }
  let writer: IndexWriter;
  try {
    writer = await IndexWriter.open(dir, { create: { dim, storage, layout, model: { ...model, precision } }, model });
  } catch (e) {
    await encoder?.release();
    throw e;
  }
  const bar = new ProgressBar(process.stderr, Boolean(process.stderr.isTTY) && !v.json);
  let report: IngestReport | undefined;
  try {
    encoder ??= await loadEncoder(model.path as string, v, precision);
    try {
      const documentLength = encoder.settings.documentLength;
      const maxTokens = num(v, "chunk-tokens", CHUNK_TOKENS) ?? Math.max(8, Math.min(documentLength - 2, 256));
      const overlapTokens = num(v, "overlap-tokens", OVERLAP_TOKENS) ?? Math.floor(maxTokens / 8);
      let encoded = "";
      report = await ingestPaths(writer, encoder, paths, {
        chunk: { maxTokens, overlapTokens, countTokens: await encoderTokenCounter(encoder) },
        metadata: parseMeta(v.meta as unknown as string[] | undefined),
        commitEvery,
        commitSeconds,
        maxFileSize,
        strict: Boolean(v.strict),
        signal,
        onProgress: (e) => {
          if (e.phase === "reading") bar.update("reading", e.done, e.total, "files", shortName(e.path));
          else if (e.phase === "encoding") {
            encoded = ` ${e.done}/${e.total} passages`;
            bar.update("indexing", e.done, e.total, "passages", `${e.files}/${e.totalFiles} files`);
          } else bar.status(`committing${encoded}: ${e.stage}…`);
        },
      });
    } finally {
      bar.done();
      await encoder.release();
    }
  } finally {
    const discard = report === undefined && creating && writer.generation === 0;
    // The manifest goes while the lock is held: no other writer can have started using the index.
    if (discard) rmSync(join(dir, MANIFEST_FILE), { force: true });
    await writer.close();
    if (discard && createdFolder) removeEmptyFolders(dir, createdFolder);
  }
  if (report.skipped.length > 0) printSkipped(report);
  if (v.json) console.log(JSON.stringify(report));
  else {
    const parts = [`${report.indexed} file(s) indexed (${report.passages} passages)`, `${report.unchanged} unchanged`];
    if (report.removed > 0) parts.push(`${report.removed} outdated passages removed`);
    if (report.skipped.length > 0) parts.push(`${report.skipped.length} skipped`);
    console.log(`${report.cancelled ? "cancelled — committed so far: " : ""}${parts.join(", ")}; index generation ${report.generation}.`);
  }
  if (report.cancelled) {
    process.stderr.write("cancelled: every commit made is kept (files in progress may be part committed); run the same command again to continue where it stopped.\n");
    return 130;
  }
  return 0;
}

/** One summary line on stderr, then the first few files with their reasons. */
function printSkipped(report: IngestReport): void {
  const shown = 10;
  const lines = [`skipped ${describeSkipped(report.skipped)}; --strict to fail on them`];
  for (const s of report.skipped.slice(0, shown)) {
    lines.push(`  ${s.reason.includes(s.path) ? terminalLine(s.reason) : `${terminalLine(s.path)}: ${terminalLine(s.reason)}`}`);
  }
  if (report.skipped.length > shown) lines.push(`  … and ${report.skipped.length - shown} more (--json lists them all)`);
  process.stderr.write(`${lines.join("\n")}\n`);
}

/** A file's name for the progress line: escaped, at most 40 characters. */
function shortName(path: string): string {
  const name = terminalLine(basename(path));
  return name.length > 40 ? `${name.slice(0, 39)}…` : name;
}

/** The outermost folder of `dir` that does not exist yet (`dir` itself, or an ancestor); null if `dir` exists. */
function topmostMissing(dir: string): string | null {
  if (existsSync(dir)) return null;
  let top = dir;
  while (!existsSync(dirname(top)) && dirname(top) !== top) top = dirname(top);
  return top;
}

/** Removes `dir` and its ancestors up to `top`, each only if empty. */
function removeEmptyFolders(dir: string, top: string): void {
  for (let d = dir; ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty (something else was put there meanwhile): keep it
    }
    if (d === top || dirname(d) === d) return;
  }
}

async function indexRemove(dir: string, v: Values, paths: string[]): Promise<number> {
  if (paths.length === 0) throw new LfmError("INVALID_ARGUMENT", "lfm index rm needs the files or folders whose passages to remove.");
  const writer = await IndexWriter.open(dir);
  try {
    const removed = removePaths(writer, paths);
    const result = await writer.commit();
    if (v.json) console.log(JSON.stringify({ ...removed, generation: result.generation }));
    else if (removed.passages === 0) console.log(`nothing indexed under ${paths.map(terminalLine).join(", ")}.`);
    else console.log(`removed ${removed.passages} passages of ${removed.sources} file(s); index generation ${result.generation}. (lfm index compact reclaims their space.)`);
  } finally {
    await writer.close();
  }
  return 0;
}

async function indexCalibrate(dir: string, v: Values, signal: AbortSignal): Promise<number> {
  const reader = await IndexReader.open(dir);
  const bar = new ProgressBar(process.stderr, Boolean(process.stderr.isTTY) && !v.json);
  try {
    // The index's model, or --model (another model than the index's is refused).
    const retriever = reader.model || typeof v.model === "string" ? chooseModel(v, reader.model).path : modelOrBundled(v, "colbert");
    const { threads, cacheDir, onProgress } = loadFlags(v);
    // Loaded here only: the language-model code it pulls in would slow every other index command's start.
    const { calibrateMinScore } = await import("../pipelines/calibrate-min-score.ts");
    const result = await calibrateMinScore(reader, {
      retriever,
      probes: num(v, "probes", intRange(CALIBRATION_PROBES_RANGE.min, CALIBRATION_PROBES_RANGE.max)),
      keepAnswerable: num(v, "keep-answerable", floatRange(0.5, 1)),
      seed: num(v, "seed", intRange(0, 2 ** 32 - 1)),
      signal,
      onProgress: (done, total) => bar.update("calibrating", done, total, "probes"),
      load: { threads, cacheDir, onProgress, retrieverPrecision: precisionOf(v) ?? reader.model?.precision },
    });
    bar.done();
    if (v.json) {
      console.log(JSON.stringify(result));
      return 0;
    }
    const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
    const s = result.scores;
    console.log(`threshold ${result.threshold.toFixed(4)} stored in ${terminalLine(join(reader.dir, CALIBRATION_FILE))} (index generation ${result.generation}, ${result.documents} passages)`);
    console.log(`  answerable probes kept: ${pct(result.answerableKept)} of ${result.probes.answerable} (criterion: at least ${pct(result.keepAnswerable)}); scores ${s.answerable.min.toFixed(3)}…${s.answerable.max.toFixed(3)}, median ${s.answerable.median.toFixed(3)}`);
    console.log(`  unanswerable probes rejected: ${pct(result.unanswerableRejected)} of ${result.probes.unanswerable}; scores ${s.unanswerable.min.toFixed(3)}…${s.unanswerable.max.toFixed(3)}, median ${s.unanswerable.median.toFixed(3)}`);
    if (result.unanswerableRejected < 0.5) {
      process.stderr.write("the two kinds of probes overlap a lot: the model tells answerable from unanswerable questions poorly on this corpus, so lfm ask will often answer from weak passages.\n");
    }
    return 0;
  } finally {
    bar.done();
    await reader.close();
  }
}

/** index's numeric and common flags, checked before the index is opened or a model loads. */
function checkIndexFlags(v: Values): void {
  precisionOf(v);
  threadsOf(v);
  const chunk = num(v, "chunk-tokens", CHUNK_TOKENS);
  const overlap = num(v, "overlap-tokens", OVERLAP_TOKENS);
  num(v, "commit-every", COMMIT_EVERY);
  num(v, "commit-seconds", COMMIT_SECONDS);
  num(v, "probes", intRange(CALIBRATION_PROBES_RANGE.min, CALIBRATION_PROBES_RANGE.max));
  num(v, "keep-answerable", floatRange(0.5, 1));
  num(v, "seed", intRange(0, 2 ** 32 - 1));
  if (typeof v["max-file-size"] === "string") parseByteSize(v["max-file-size"], "--max-file-size");
  if (chunk !== undefined && overlap !== undefined && overlap >= chunk) {
    throw new LfmError("INVALID_ARGUMENT", `--overlap-tokens must be below --chunk-tokens (${chunk}); got ${overlap}.`);
  }
}

/** --fast / --accurate (not both) as a search preset; undefined for the default. */
export function searchPreset(v: Values): SearchPreset | undefined {
  if (v.fast && v.accurate) throw new LfmError("INVALID_ARGUMENT", "--fast and --accurate exclude each other: pick one (or neither, for the default settings).");
  return v.fast ? "fast" : v.accurate ? "accurate" : undefined;
}

export function requireIndex(v: Values): string {
  if (typeof v.index !== "string" || v.index === "") throw new LfmError("INVALID_ARGUMENT", "--index DIR is required (the index folder).");
  return resolve(v.index);
}

/** --model, else the model that built the index (if still there), else the bundled one. */
function chooseModel(v: Values, indexModel: ModelIdentity | null): ModelIdentity {
  return chooseIndexModel(indexModel, typeof v.model === "string" ? v.model : undefined, () => modelOrBundled(v, "colbert"));
}

/** The encoder at `precision` (undefined: its default), with the other common flags. */
export async function loadEncoder(path: string, v: Values, precision: Precision | undefined): Promise<ColbertEncoder> {
  const { ColbertEncoder } = await import("../retrieval/colbert.ts");
  return ColbertEncoder.load(path, { ...loadFlags(v), precision });
}

export function parseFilter(raw: string[] | undefined): MetadataFilter | undefined {
  if (!raw || raw.length === 0) return undefined;
  const filter: Record<string, Array<string | MetadataCondition>> = {};
  for (const r of raw) {
    const prefixAt = r.indexOf("^=");
    const [key, value] = keyValue(r, "--filter");
    // KEY^=PREFIX (the key itself never ends in "^": the "^=" comes before any "=" in the value).
    if (prefixAt > 0 && prefixAt + 1 === key.length) {
      if (value === "") throw new LfmError("INVALID_ARGUMENT", `--filter ${r}: the prefix after ^= is empty.`);
      (filter[key.slice(0, -1)] ??= []).push({ prefix: value });
    } else (filter[key] ??= []).push(value);
  }
  return Object.fromEntries(Object.entries(filter).map(([k, vs]) => [k, vs.length === 1 ? vs[0] : vs]));
}

/**
 * The filter of lfm search / lfm ask from --filter, --path-prefix, --after, --before and
 * --date-key (FILTER_OPTIONS); dates are checked here, before an index is opened or a model loads.
 */
export function searchFilter(v: Values): MetadataFilter | undefined {
  const filter: MetadataFilter = { ...parseFilter(v.filter as unknown as string[] | undefined) };
  const prefixes = (v["path-prefix"] as unknown as string[] | undefined) ?? [];
  if (prefixes.length > 0) {
    if (filter.source !== undefined) throw new LfmError("INVALID_ARGUMENT", "--path-prefix and --filter source=… both filter on the file path: use one of them.");
    filter.source = prefixes.map((p) => {
      if (p === "") throw new LfmError("INVALID_ARGUMENT", "--path-prefix needs a path (a folder or the start of file paths).");
      // A trailing slash says "this folder" and must survive resolving.
      return { prefix: resolve(p) + (/[/\\]$/.test(p) && resolve(p) !== "/" ? "/" : "") };
    });
  }
  const dateKey = (v["date-key"] as string | undefined) ?? "modified";
  if (dateKey === "") throw new LfmError("INVALID_ARGUMENT", "--date-key needs a metadata key.");
  if (v["date-key"] !== undefined && v.after === undefined && v.before === undefined) throw new LfmError("INVALID_ARGUMENT", "--date-key names the key --after/--before read: give --after DATE and/or --before DATE too.");
  if (v.after !== undefined || v.before !== undefined) {
    if (filter[dateKey] !== undefined) throw new LfmError("INVALID_ARGUMENT", `--after/--before and --filter ${dateKey}… both filter on "${dateKey}": use one of them.`);
    const range: { after?: string; before?: string } = {};
    for (const flag of ["after", "before"] as const) {
      const raw = v[flag] as string | undefined;
      if (raw === undefined) continue;
      if (parseDate(raw) === null) throw new LfmError("INVALID_ARGUMENT", `--${flag} must be a date such as 2024-01-31 or 2024-01-31T12:00:00Z (UTC unless an offset is given), got "${raw}".`);
      range[flag] = raw;
    }
    if (range.after !== undefined && range.before !== undefined && (parseDate(range.before) as number) <= (parseDate(range.after) as number)) {
      throw new LfmError("INVALID_ARGUMENT", `--before (${range.before}) must be later than --after (${range.after}): no date lies between them.`);
    }
    filter[dateKey] = range;
  }
  return Object.keys(filter).length > 0 ? filter : undefined;
}

function parseMeta(raw: string[] | undefined): Metadata | undefined {
  if (!raw || raw.length === 0) return undefined;
  return Object.fromEntries(raw.map((r) => keyValue(r, "--meta")));
}

function keyValue(raw: string, flag: string): [string, string] {
  const eq = raw.indexOf("=");
  if (eq <= 0) throw new LfmError("INVALID_ARGUMENT", `${flag} expects KEY=VALUE, got "${raw}".`);
  return [raw.slice(0, eq), raw.slice(eq + 1)];
}

function commitProgress(bar: ProgressBar, stage: string, done: number, total: number): void {
  if (total > 0 && stage === "building the graph") bar.update("graph", done, total, "vectors");
  else if (total > 0 && stage === "compressing vectors") bar.update("compressing", done, total, "vectors");
  else bar.status(`${stage}…`);
}

export function formatStats(s: IndexStats): string {
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  const disk = s.bytesOnDisk;
  const lines = [
    `index ${terminalLine(s.dir)} (generation ${s.generation}, committed ${s.committedAt})`,
    `model: ${s.model ? `${terminalLine(s.model.name)} (${terminalLine(s.model.path ?? "?")})${s.model.precision ? `, vectors made at ${s.model.precision}` : ""}` : "not recorded"}`,
    `passages: ${s.documents} from ${s.sources} file(s); ${s.rows} token vectors (${s.dim}-d, ${s.storage}; ${s.layout === "plaid" ? `plaid layout: ${s.centroids} centroids` : `${s.graphRows} in the graphs`})`,
    `segments: ${s.segments}`,
    `on disk: ${mb(disk.vectors + disk.documents + disk.graphs + disk.compressed + disk.deletions)} (vectors ${mb(disk.vectors)}, ${s.layout === "plaid" ? `compressed ${mb(disk.compressed)}` : `graphs ${mb(disk.graphs)}`}, passages ${mb(disk.documents)})`,
  ];
  if (s.deletedDocuments > 0) lines.push(`deleted, awaiting lfm index compact: ${s.deletedDocuments} passages, ${s.deletedRows} vectors`);
  return lines.join("\n");
}
