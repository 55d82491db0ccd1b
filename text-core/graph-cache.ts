/**
 * Built graphs are cached on disk, keyed by what determines them: the builder's source, the build
 * options, and the content of config.json and the weight files. A second start with the same
 * checkpoint and options skips the build.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import { LfmError } from "./errors.ts";
import type { GraphBuilder } from "./graph/builder.ts";

/**
 * The code that decides what graph a checkpoint becomes. Its text is part of the cache key, so a
 * new version of the builder never runs a stale cached graph. Names are without extension (see
 * `builderFingerprint`) and relative to this folder.
 */
const BUILDER_SOURCES = ["lfm2", "graph/builder", "graph/blocks", "graph/weights", "graph/linear", "graph/precision", "graph/quantize"];

const fingerprints = new Map<string, string>();

/**
 * A short hash of the builder sources `files` (names relative to `fromDir`, without extension:
 * pass `import.meta.dirname`): the SHA-256 of each `<name>.ts`, hashed together. Running from
 * source it reads the file; the built package (dist/, .js only) reads the digests its build
 * recorded in `source-digests.json` from the same sources, so both give one key for one graph.
 * A .js without a recorded digest is hashed as it is. Computed once per list.
 */
export function builderFingerprint(fromDir: string, files: readonly string[]): string {
  const id = `${fromDir}\0${files.join("\0")}`;
  let digest = fingerprints.get(id);
  if (digest === undefined) {
    const h = createHash("sha256");
    for (const name of files) h.update(sourceDigest(fromDir, name));
    digest = h.digest("hex").slice(0, 16);
    fingerprints.set(id, digest);
  }
  return digest;
}

const sha256Hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function sourceDigest(fromDir: string, name: string): string {
  const ts = join(fromDir, `${name}.ts`);
  if (existsSync(ts)) return sha256Hex(readFileSync(ts));
  const recorded = recordedDigests(fromDir);
  const key = recorded && relative(recorded.root, ts).split(sep).join("/");
  if (recorded && key && recorded.digests[key]) return recorded.digests[key];
  const js = join(fromDir, `${name}.js`);
  if (existsSync(js)) return sha256Hex(readFileSync(js));
  throw new LfmError("FILE_NOT_FOUND", `the graph builder source ${join(fromDir, name)}.ts (or .js) is missing: the installation is incomplete; reinstall lfm2-edge.`);
}

/** `source-digests.json` of the build folder above `fromDir` (written by scripts/build.mjs), if any. */
function recordedDigests(fromDir: string): { root: string; digests: Record<string, string> } | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const file = join(dir, "source-digests.json");
    if (existsSync(file)) return { root: dir, digests: JSON.parse(readFileSync(file, "utf8")) as Record<string, string> };
    if (dirname(dir) === dir) return undefined;
  }
}

export function defaultCacheDir(): string {
  if (process.env.LFM_CACHE_DIR) return process.env.LFM_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache");
  return join(base, "lfm2-edge");
}

/**
 * The key of the graph built from `files` (config.json, weight files) with `options`: the
 * SHA-256 of every file's content, the builder's source and the options. Content hashes are
 * remembered per (path, size, mtime) in `<cacheDir>/content-hashes.json`, so only the first
 * start reads the weights through.
 */
export function graphCacheKey(kind: string, files: string[], options: unknown, cacheDir: string): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ kind, builder: builderFingerprint(import.meta.dirname, BUILDER_SOURCES), options }));
  const memo = readHashMemo(cacheDir);
  let changed = false;
  for (const f of files) {
    const st = statSync(f);
    const id = `${f}\0${st.size}\0${st.mtimeMs}`;
    let digest = memo[id];
    if (!digest) {
      digest = sha256File(f);
      memo[id] = digest;
      changed = true;
    }
    h.update(digest);
  }
  if (changed) writeHashMemo(cacheDir, memo);
  const key = `${kind}-${h.digest("hex").slice(0, 24)}`;
  describedKeys.set(key, { kind, source: files.length > 0 ? dirname(files[0]) : undefined, options });
  return key;
}

/** What `entry.json` in a cached graph's folder says about it (for `lfm cache list`). */
export interface CacheEntryInfo {
  kind: string;
  /** The checkpoint folder it was built from. */
  source?: string;
  /** The build options that are part of its key (precision, …). */
  options?: unknown;
}

/** Keys computed by this process and what they were computed from, for `cachedGraph` to record. */
const describedKeys = new Map<string, CacheEntryInfo>();
const ENTRY_INFO_FILE = "entry.json";

function sha256File(path: string): string {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(8 << 20);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

const MEMO_FILE = "content-hashes.json";

function readHashMemo(cacheDir: string): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(cacheDir, MEMO_FILE), "utf8"));
    return parsed && typeof parsed === "object" ? (parsed as Record<string, string>) : {};
  } catch {
    return {}; // absent or damaged: recomputed
  }
}

/** Best effort (a read-only cache folder only costs a rehash next time); written atomically. */
function writeHashMemo(cacheDir: string, memo: Record<string, string>): void {
  try {
    mkdirSync(cacheDir, { recursive: true });
    const tmp = join(cacheDir, `${MEMO_FILE}.tmp-${process.pid}`);
    writeFileSync(tmp, JSON.stringify(memo));
    renameSync(tmp, join(cacheDir, MEMO_FILE));
  } catch {
    // ignore
  }
}

/** How long a dead builder's temporary folder is left alone (it may be another host's, on a shared disk). */
const STALE_TMP_MS = 60_000;

/** True if a process with this id runs on this machine (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Newest modification time of a folder and the files directly in it. */
function lastModified(dir: string): number {
  let newest = statSync(dir).mtimeMs;
  for (const name of readdirSync(dir)) newest = Math.max(newest, statSync(join(dir, name)).mtimeMs);
  return newest;
}

/**
 * Removes `<key>.tmp-<pid>-<time>` folders that builds killed midway (Ctrl-C, OOM) left behind:
 * those whose process is gone and that have not changed for a minute. They can be as large as
 * the model, so they are not left to pile up. Best effort: never fails a load.
 */
export function removeAbandonedBuilds(cacheDir: string, now = Date.now()): void {
  let entries: string[];
  try {
    entries = readdirSync(cacheDir);
  } catch {
    return;
  }
  for (const name of entries) {
    const m = /\.tmp-(\d+)-\d+$/.exec(name);
    if (m === null) continue;
    const tmp = join(cacheDir, name);
    try {
      if (processAlive(Number(m[1])) || now - lastModified(tmp) < STALE_TMP_MS) continue;
      rmSync(tmp, { recursive: true, force: true });
    } catch {
      // vanished meanwhile, or not ours to remove: leave it
    }
  }
}

/** A file-system failure while writing the cache as an `LfmError` naming the folder; others as they are. */
export function cacheWriteError(cacheDir: string, e: unknown): unknown {
  const errno = e as NodeJS.ErrnoException;
  if (e instanceof LfmError || typeof errno?.code !== "string" || errno.syscall === undefined) return e;
  const what =
    errno.code === "ENOSPC" || errno.code === "EDQUOT"
      ? "the disk is full"
      : errno.code === "ENOTDIR" || errno.code === "EEXIST"
        ? "it (or a folder above it) is a file"
        : errno.message;
  return new LfmError(
    "CACHE_UNWRITABLE",
    `Cannot write built graphs to the cache folder ${cacheDir}: ${what} (${errno.code}). ` +
      `Pass a writable folder with free space as cacheDir (CLI: LFM_CACHE_DIR), or cacheDir: false to build in a temporary folder.`,
    { cause: e },
  );
}

/**
 * Returns the folder holding `model.onnx`, building and saving it first when absent. A folder
 * under the key without `model.onnx` (not one this code publishes) is replaced. File-system
 * failures are `CACHE_UNWRITABLE` naming `cacheDir`; the builder's own `LfmError`s pass through.
 */
export function cachedGraph(cacheDir: string, key: string, build: () => GraphBuilder): { dir: string; built: boolean } {
  const dir = join(cacheDir, key);
  removeAbandonedBuilds(cacheDir);
  if (existsSync(join(dir, "model.onnx"))) {
    markUsed(dir);
    return { dir, built: false };
  }
  try {
    mkdirSync(cacheDir, { recursive: true });
    // (checked again just before: another process may have published it since)
    if (existsSync(dir) && !existsSync(join(dir, "model.onnx"))) rmSync(dir, { recursive: true, force: true });
    const builder = build();
    // Published with the graph (one rename), so an entry never lacks it.
    const info = describedKeys.get(key);
    if (info) builder.sideFile(ENTRY_INFO_FILE, (fd) => writeSync(fd, `${JSON.stringify(info)}\n`));
    builder.save(dir);
  } catch (e) {
    throw cacheWriteError(cacheDir, e);
  }
  pruneAfterBuild(cacheDir);
  return { dir, built: true };
}

/**
 * Graphs not loaded for this long go when another one is built (`lfm cache prune`'s default too):
 * a toolkit upgrade or a precision change leaves the old graphs unused, ~1 GB each for a 1.2B
 * model, and nobody should have to remember to prune them.
 */
export const AUTO_PRUNE_UNUSED_MS = 30 * 24 * 60 * 60 * 1000;

/** Best effort, like the bookkeeping: a cache that cannot be pruned still serves its graphs. */
function pruneAfterBuild(cacheDir: string): void {
  try {
    pruneCache(cacheDir, { unusedForMs: AUTO_PRUNE_UNUSED_MS });
  } catch {
    // read-only folders, a concurrent prune: the next build tries again
  }
}

/**
 * A cached graph's folder modification time is its last use (set on every hit), which is what
 * `pruneCache` goes by. Best effort: a read-only cache still loads.
 */
function markUsed(dir: string): void {
  try {
    const now = new Date();
    utimesSync(dir, now, now);
  } catch {
    // not ours to touch
  }
}

/** Removes a cached graph onnxruntime could not load, so that the next `cachedGraph` rebuilds it. */
export function discardCachedGraph(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** What `openCachedGraph` builds, keys and opens. */
export interface CachedGraphSpec<T> {
  /** Names the cache entry (`<kind>-<hash>`). */
  kind: string;
  /** The files the graph is built from (config.json, weights): their content is part of the key. */
  files: string[];
  /** Build options (precision, the builder's fingerprint, …): part of the key. */
  options: unknown;
  build: () => GraphBuilder;
  /** Opens the folder holding `model.onnx` (and its side files); closes what it opened if it fails. */
  open: (graphDir: string) => Promise<T>;
  /** Where built graphs are cached (default `defaultCacheDir()`); `false` builds in a temporary folder removed once opened. */
  cacheDir?: string | false;
  progress?: (stage: string) => void;
  /** Progress messages: before a build, before opening (none if absent), before rebuilding a cached graph that would not open. */
  stages: { build: string; load?: string; rebuild: string };
}

/**
 * Finds the graph of `files` + `options` in the cache (building it when absent) and opens it. A
 * cached graph that cannot be opened (damaged on disk, edited by hand) is built once more; a graph
 * just built that cannot be opened fails as it is. File-system failures are `CACHE_UNWRITABLE`.
 */
export async function openCachedGraph<T>(spec: CachedGraphSpec<T>): Promise<T> {
  const progress = spec.progress ?? (() => {});
  let cacheRoot: string;
  try {
    cacheRoot = spec.cacheDir === false ? mkdtempSync(join(tmpdir(), `lfm2-graph-${spec.kind}-`)) : (spec.cacheDir ?? defaultCacheDir());
  } catch (e) {
    throw cacheWriteError(tmpdir(), e);
  }
  const build = () => {
    progress(spec.stages.build);
    return spec.build();
  };
  try {
    const key = graphCacheKey(spec.kind, spec.files, spec.options, cacheRoot);
    const cached = cachedGraph(cacheRoot, key, build);
    if (spec.stages.load !== undefined) progress(spec.stages.load);
    try {
      return await spec.open(cached.dir);
    } catch (e) {
      if (cached.built) throw e;
      progress(spec.stages.rebuild);
      discardCachedGraph(cached.dir);
      return await spec.open(cachedGraph(cacheRoot, key, build).dir);
    }
  } finally {
    // The files of an open session may go: onnxruntime has read the graph, and an embedding
    // table's descriptor stays valid after its file is removed.
    if (spec.cacheDir === false && existsSync(cacheRoot)) rmSync(cacheRoot, { recursive: true, force: true });
  }
}

// ---- Listing and pruning (`lfm cache`) ----

/** `<kind>-<24 hex>`: the only folder names listing and pruning ever touch. */
const ENTRY_NAME = /^([a-z0-9]+(?:-[a-z0-9]+)*)-([0-9a-f]{24})$/;

export interface CacheEntry extends CacheEntryInfo {
  key: string;
  dir: string;
  /** Bytes of the files in the folder. */
  bytes: number;
  /** Last load (or the build), ms since the epoch. */
  lastUsedMs: number;
  /** False for a folder without model.onnx (a build that never finished publishing). */
  complete: boolean;
}

/** The cached graphs in `cacheDir`, most recently used first (none if the folder is absent). */
export function listCacheEntries(cacheDir: string): CacheEntry[] {
  let names: string[];
  try {
    names = readdirSync(cacheDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new LfmError("CACHE_UNREADABLE", `Cannot read the cache folder ${cacheDir}: ${(e as Error).message}`, { cause: e });
  }
  const entries: CacheEntry[] = [];
  for (const key of names) {
    const m = ENTRY_NAME.exec(key);
    if (m === null) continue;
    const dir = join(cacheDir, key);
    try {
      const st = statSync(dir);
      if (!st.isDirectory()) continue;
      let bytes = 0;
      for (const name of readdirSync(dir)) {
        const f = statSync(join(dir, name));
        if (f.isFile()) bytes += f.size;
      }
      entries.push({ key, dir, bytes, lastUsedMs: st.mtimeMs, complete: existsSync(join(dir, "model.onnx")), ...readEntryInfo(dir, m[1]) });
    } catch {
      // removed meanwhile
    }
  }
  return entries.sort((a, b) => b.lastUsedMs - a.lastUsedMs);
}

function readEntryInfo(dir: string, kind: string): CacheEntryInfo {
  try {
    const info = JSON.parse(readFileSync(join(dir, ENTRY_INFO_FILE), "utf8")) as Partial<CacheEntryInfo>;
    return { kind: typeof info.kind === "string" ? info.kind : kind, source: typeof info.source === "string" ? info.source : undefined, options: info.options };
  } catch {
    return { kind }; // built before entry.json existed, or damaged
  }
}

export interface PruneOptions {
  /** Remove graphs not used for this long (ms). Ignored with `all`. */
  unusedForMs?: number;
  /** Remove every cached graph. */
  all?: boolean;
  /** Only report what would go. */
  dryRun?: boolean;
  now?: number;
}

export interface PruneResult {
  removed: CacheEntry[];
  /** Graphs that should have gone but could not be removed (e.g. in use on Windows). */
  failed: Array<{ entry: CacheEntry; reason: string }>;
  kept: CacheEntry[];
  freedBytes: number;
}

/**
 * Removes cached graphs not used for `unusedForMs` (or all of them), the folders of builds killed
 * midway, and remembered content hashes of files that no longer exist as they were. Only folders
 * named like cache entries are touched, so a mistaken cache folder (a home folder) loses nothing.
 * A graph removed while another process has it open stays readable to that process (POSIX); a
 * process about to open it rebuilds it.
 */
export function pruneCache(cacheDir: string, opts: PruneOptions): PruneResult {
  const now = opts.now ?? Date.now();
  if (!opts.all && (opts.unusedForMs === undefined || !(opts.unusedForMs >= 0))) {
    throw new LfmError("INVALID_ARGUMENT", "pruneCache needs unusedForMs ≥ 0 or all: true.");
  }
  const result: PruneResult = { removed: [], failed: [], kept: [], freedBytes: 0 };
  for (const entry of listCacheEntries(cacheDir)) {
    if (!opts.all && now - entry.lastUsedMs < (opts.unusedForMs as number)) {
      result.kept.push(entry);
      continue;
    }
    if (opts.dryRun) {
      result.removed.push(entry);
      result.freedBytes += entry.bytes;
      continue;
    }
    try {
      rmSync(entry.dir, { recursive: true, force: true });
      result.removed.push(entry);
      result.freedBytes += entry.bytes;
    } catch (e) {
      result.failed.push({ entry, reason: (e as Error).message });
    }
  }
  if (!opts.dryRun) {
    removeAbandonedBuilds(cacheDir, now);
    forgetVanishedHashes(cacheDir);
  }
  return result;
}

/** Drops remembered hashes whose (path, size, mtime) no longer matches a file. */
function forgetVanishedHashes(cacheDir: string): void {
  if (!existsSync(join(cacheDir, MEMO_FILE))) return;
  const memo = readHashMemo(cacheDir);
  const kept: Record<string, string> = {};
  for (const [id, digest] of Object.entries(memo)) {
    const [path, size, mtime] = id.split("\0");
    try {
      const st = statSync(path);
      if (String(st.size) === size && String(st.mtimeMs) === mtime) kept[id] = digest;
    } catch {
      // gone
    }
  }
  if (Object.keys(kept).length !== Object.keys(memo).length) writeHashMemo(cacheDir, kept);
}
