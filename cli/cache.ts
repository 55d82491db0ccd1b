/**
 * `lfm cache`: what the graph cache holds and removing what is no longer used. Every model's
 * graph is built once per checkpoint, precision and toolkit version and kept (each LFM2-1.2B q4
 * graph is ~0.8 GB); a build removes graphs unused for 30 days, and this prunes on demand.
 */
import { LfmError } from "../text-core/errors.ts";
import { AUTO_PRUNE_UNUSED_MS, type CacheEntry, defaultCacheDir, listCacheEntries, pruneCache } from "../text-core/graph-cache.ts";
import { type CliCommand, num, parse } from "./cli-kit.ts";
import { floatRange } from "./flags.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
const DEFAULT_UNUSED_DAYS = AUTO_PRUNE_UNUSED_MS / DAY_MS; // what a build prunes too
/** 0 (everything not in use now) to a century. */
const UNUSED_DAYS = floatRange(0, 36_500);

const CACHE_OPTIONS = {
  "cache-dir": { type: "string" },
  "unused-days": { type: "string" },
  all: { type: "boolean" },
  "dry-run": { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const HELP = `lfm cache [list] [--cache-dir DIR] [--json]
lfm cache prune [--unused-days N | --all] [--dry-run] [--cache-dir DIR] [--json]
  list (default)   The cached graphs, most recently used first: kind, size, last use, options
                   (precision, …) and the checkpoint each was built from.
  prune            Removes graphs not loaded for --unused-days days (default ${DEFAULT_UNUSED_DAYS}), or --all of
                   them, plus folders of builds killed midway (--unused-days: 0 to ${UNUSED_DAYS.max}). A removed graph is rebuilt on its
                   next load. Only folders named like cache entries (<kind>-<24 hex digits>) are
                   touched; anything else in the folder (bench checkpoints, your files) is left.
  --dry-run        Show what prune would remove; remove nothing.
  --cache-dir DIR  The cache folder (default: $LFM_CACHE_DIR or ~/.cache/lfm2-edge).
  --json           One JSON object: {"cacheDir", "entries": [...]} or {"removed", "failed", "kept", "freedBytes"}.`;

function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / 1024).toFixed(0)} kB`;
}

/** The options that tell two graphs of one checkpoint apart, shortly (precision, head, …). */
function optionSummary(options: unknown): string {
  if (options === null || typeof options !== "object") return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(options as Record<string, unknown>)) {
    // (builder fingerprints are part of the key, not something to read)
    if (v === undefined || (typeof v === "object" && v !== null) || (typeof v === "string" && /^[0-9a-f]{16,}$/.test(v))) continue;
    parts.push(k === "precision" ? String(v) : `${k}=${String(v)}`);
  }
  return parts.join(" ");
}

function entryLine(e: CacheEntry): string {
  const used = new Date(e.lastUsedMs).toISOString().slice(0, 16).replace("T", " ");
  const what = [optionSummary(e.options), e.complete ? "" : "(incomplete)"].filter(Boolean).join(" ");
  return `  ${e.key.padEnd(40)} ${formatBytes(e.bytes).padStart(9)}  ${used}  ${what}${e.source ? `  ← ${e.source}` : ""}`;
}

const toJson = (e: CacheEntry) => ({ key: e.key, kind: e.kind, bytes: e.bytes, lastUsed: new Date(e.lastUsedMs).toISOString(), complete: e.complete, source: e.source, options: e.options });

export const cacheCommand: CliCommand = {
  name: "cache",
  summary: "List the cached graphs, or prune those not used lately (lfm cache prune).",
  help: HELP,
  options: CACHE_OPTIONS,
  async run(args: string[]): Promise<number> {
    const { values: v, positionals } = parse(args, CACHE_OPTIONS);
    if (v.help) {
      console.log(HELP);
      return 0;
    }
    const [action = "list", ...extra] = positionals;
    if (extra.length > 0 || (action !== "list" && action !== "prune")) {
      throw new LfmError("INVALID_ARGUMENT", `lfm cache takes "list" or "prune", got "${positionals.join(" ")}". See lfm cache --help.`);
    }
    const cacheDir = (v["cache-dir"] as string | undefined) ?? defaultCacheDir();
    if (action === "list") {
      if (v.all || v["dry-run"] || v["unused-days"] !== undefined) throw new LfmError("INVALID_ARGUMENT", "--all, --dry-run and --unused-days go with lfm cache prune.");
      const entries = listCacheEntries(cacheDir);
      if (v.json) {
        process.stdout.write(`${JSON.stringify({ cacheDir, entries: entries.map(toJson) })}\n`);
        return 0;
      }
      const total = entries.reduce((s, e) => s + e.bytes, 0);
      console.log(`${cacheDir}: ${entries.length} cached graph${entries.length === 1 ? "" : "s"}, ${formatBytes(total)}`);
      if (entries.length > 0) console.log(`  ${"key".padEnd(40)} ${"size".padStart(9)}  last used (UTC)   options  ← checkpoint`);
      for (const e of entries) console.log(entryLine(e));
      return 0;
    }
    const days = num(v, "unused-days", UNUSED_DAYS);
    if (days !== undefined && v.all) throw new LfmError("INVALID_ARGUMENT", "give --all or --unused-days, not both.");
    const result = pruneCache(cacheDir, { all: Boolean(v.all), unusedForMs: (days ?? DEFAULT_UNUSED_DAYS) * DAY_MS, dryRun: Boolean(v["dry-run"]) });
    if (v.json) {
      process.stdout.write(
        `${JSON.stringify({
          cacheDir,
          dryRun: Boolean(v["dry-run"]),
          removed: result.removed.map(toJson),
          failed: result.failed.map((f) => ({ ...toJson(f.entry), reason: f.reason })),
          kept: result.kept.map(toJson),
          freedBytes: result.freedBytes,
        })}\n`,
      );
    } else {
      const verb = v["dry-run"] ? "would remove" : "removed";
      for (const e of result.removed) console.log(`${verb} ${entryLine(e).trimStart()}`);
      for (const f of result.failed) console.log(`could not remove ${f.entry.key}: ${f.reason}`);
      console.log(`${cacheDir}: ${verb} ${result.removed.length} graph${result.removed.length === 1 ? "" : "s"} (${formatBytes(result.freedBytes)}), kept ${result.kept.length}.`);
    }
    return result.failed.length > 0 ? 1 : 0;
  },
};
