import { createHash } from "node:crypto";
/** The graph cache's bookkeeping: last use, entry.json, listing and pruning (`lfm cache`). */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ElemType } from "../../text-core/graph/builder.ts";
import { GraphBuilder } from "../../text-core/graph/builder.ts";
import { builderFingerprint, cachedGraph, graphCacheKey, listCacheEntries, openCachedGraph, pruneCache } from "../../text-core/graph-cache.ts";
import { runLfm } from "../helpers/cli.ts";
import { expectCode } from "../helpers/errors.ts";

const DAY = 24 * 60 * 60 * 1000;
const HEX = (c: string) => c.repeat(24);

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "lfm-cache-test-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A folder with files of the given sizes, last modified `ageMs` ago. */
function folder(name: string, files: Record<string, string | number>, ageMs: number): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, content] of Object.entries(files)) writeFileSync(join(dir, f), typeof content === "number" ? Buffer.alloc(content) : content);
  const t = new Date(Date.now() - ageMs);
  utimesSync(dir, t, t);
  return dir;
}

/** The layout a real cache has, plus things pruning must never touch. */
function fakeCache(): void {
  folder(`lfm2-${HEX("a")}`, { "model.onnx": 100, "model.onnx.data": 900, "entry.json": JSON.stringify({ kind: "lfm2", source: "/models/LFM2-350M", options: { precision: "q4" } }) }, 40 * DAY);
  folder(`lfm2-vl-vision-${HEX("b")}`, { "model.onnx": 10, "model.onnx.data": 20 }, 1 * DAY);
  folder(`colbert-${HEX("c")}`, { "model.onnx.data": 5 }, 35 * DAY); // never finished publishing
  folder("bench-checkpoints", { "model.onnx": 1 }, 400 * DAY);
  folder("my-notes-2024", { "model.onnx": 1 }, 400 * DAY);
  writeFileSync(join(root, `mimi-${HEX("d")}`), "a file, not a folder");
}

describe("listCacheEntries", () => {
  it("is empty for a cache folder that does not exist", () => {
    expect(listCacheEntries(join(root, "absent"))).toEqual([]);
  });

  it("lists only <kind>-<24 hex> folders, most recently used first, with size, kind and entry.json", () => {
    fakeCache();
    const entries = listCacheEntries(root);
    expect(entries.map((e) => e.key)).toEqual([`lfm2-vl-vision-${HEX("b")}`, `colbert-${HEX("c")}`, `lfm2-${HEX("a")}`]);
    const [vision, colbert, lfm2] = entries;
    expect(vision).toMatchObject({ kind: "lfm2-vl-vision", bytes: 30, complete: true });
    expect(vision.source).toBeUndefined();
    expect(lfm2.kind).toBe("lfm2");
    expect(lfm2.source).toBe("/models/LFM2-350M");
    expect(lfm2.options).toEqual({ precision: "q4" });
    expect(lfm2.bytes).toBe(1000 + readFileSync(join(lfm2.dir, "entry.json")).length);
    expect(colbert).toMatchObject({ kind: "colbert", complete: false });
  });
});

describe("pruneCache", () => {
  it("--dry-run reports the graphs unused for the given time and removes nothing", () => {
    fakeCache();
    const r = pruneCache(root, { unusedForMs: 30 * DAY, dryRun: true });
    expect(r.removed.map((e) => e.kind)).toEqual(["colbert", "lfm2"]);
    expect(r.kept.map((e) => e.kind)).toEqual(["lfm2-vl-vision"]);
    expect(r.freedBytes).toBe(5 + r.removed[1].bytes);
    expect(listCacheEntries(root)).toHaveLength(3);
  });

  it("removes graphs unused for the given time and leaves recent ones and every other folder", () => {
    fakeCache();
    const r = pruneCache(root, { unusedForMs: 30 * DAY });
    expect(r.removed).toHaveLength(2);
    expect(r.failed).toEqual([]);
    expect(listCacheEntries(root).map((e) => e.kind)).toEqual(["lfm2-vl-vision"]);
    for (const kept of ["bench-checkpoints", "my-notes-2024", `mimi-${HEX("d")}`]) expect(existsSync(join(root, kept))).toBe(true);
  });

  it("all: removes every cached graph, still nothing else", () => {
    fakeCache();
    const r = pruneCache(root, { all: true });
    expect(r.removed).toHaveLength(3);
    expect(listCacheEntries(root)).toEqual([]);
    expect(existsSync(join(root, "bench-checkpoints", "model.onnx"))).toBe(true);
    expect(existsSync(join(root, "my-notes-2024", "model.onnx"))).toBe(true);
  });

  it("forgets remembered content hashes of files that are gone or changed", () => {
    const kept = join(root, "weights.safetensors");
    writeFileSync(kept, "w");
    const st = statSync(kept);
    const memo = {
      [`${kept}\0${st.size}\0${st.mtimeMs}`]: "1".repeat(64),
      [`${kept}\0${st.size + 1}\0${st.mtimeMs}`]: "2".repeat(64),
      [`${join(root, "gone.safetensors")}\0${1}\0${2}`]: "3".repeat(64),
    };
    writeFileSync(join(root, "content-hashes.json"), JSON.stringify(memo));
    pruneCache(root, { unusedForMs: 30 * DAY });
    expect(Object.values(JSON.parse(readFileSync(join(root, "content-hashes.json"), "utf8")))).toEqual(["1".repeat(64)]);
  });

  it("refuses options that say neither how old nor all", () => {
    for (const opts of [{}, { unusedForMs: -1 }, { unusedForMs: Number.NaN }]) {
      expectCode(() => pruneCache(root, opts), "INVALID_ARGUMENT");
    }
  });
});

/** The smallest graph worth caching. */
function tinyGraph(): GraphBuilder {
  const b = new GraphBuilder("cache-test");
  const x = b.input("x", ElemType.FLOAT, [1]);
  b.output(b.op("Identity", [x], "y"), "y", ElemType.FLOAT, [1]);
  return b;
}

describe("cachedGraph bookkeeping", () => {

  it("records kind, checkpoint and options at build, and each hit as the folder's last use", () => {
    const checkpoint = join(root, "ckpt");
    mkdirSync(checkpoint);
    writeFileSync(join(checkpoint, "config.json"), "{}");
    const cacheDir = join(root, "cache");
    const key = graphCacheKey("lfm2", [join(checkpoint, "config.json")], { precision: "q8" }, cacheDir);
    const built = cachedGraph(cacheDir, key, tinyGraph);
    expect(built.built).toBe(true);
    expect(JSON.parse(readFileSync(join(built.dir, "entry.json"), "utf8"))).toEqual({ kind: "lfm2", source: checkpoint, options: { precision: "q8" } });

    const old = new Date(Date.now() - 90 * DAY);
    utimesSync(built.dir, old, old);
    expect(pruneCache(cacheDir, { unusedForMs: 30 * DAY, dryRun: true }).removed).toHaveLength(1);
    const hit = cachedGraph(cacheDir, key, () => {
      throw new Error("a hit must not build");
    });
    expect(hit.built).toBe(false);
    expect(Date.now() - statSync(hit.dir).mtimeMs).toBeLessThan(60_000);
    expect(pruneCache(cacheDir, { unusedForMs: 30 * DAY }).removed).toEqual([]);
  });
});

describe("builderFingerprint", () => {
  it("reads <name>.ts from source and <name>.js in the built package; different code, different fingerprint", () => {
    const fromSource = folder("src", { "a.ts": "export const a = 1;", "a.js": "ignored when a.ts exists" }, 0);
    const built = folder("dist", { "a.js": "export const a = 1;", "a.d.ts": "export declare const a: number;" }, 0);
    const edited = folder("edited", { "a.js": "export const a = 2;" }, 0);
    expect(builderFingerprint(fromSource, ["a"])).toMatch(/^[0-9a-f]{16}$/);
    expect(builderFingerprint(built, ["a"])).toBe(builderFingerprint(fromSource, ["a"])); // same bytes
    expect(builderFingerprint(edited, ["a"])).not.toBe(builderFingerprint(built, ["a"]));
  });

  it("the built package uses the digests its build recorded from the .ts sources, so both give one cache key", () => {
    const source = "export const a: number = 1;";
    const fromSource = folder("src2", { "a.ts": source }, 0);
    const digest = createHash("sha256").update(source).digest("hex");
    const built = folder("dist2", { "a.js": "export const a = 1;", "source-digests.json": JSON.stringify({ "a.ts": digest }) }, 0);
    expect(builderFingerprint(built, ["a"])).toBe(builderFingerprint(fromSource, ["a"]));
    const stale = folder("dist3", { "a.js": "export const a = 1;", "source-digests.json": JSON.stringify({ "a.ts": "0".repeat(64) }) }, 0);
    expect(builderFingerprint(stale, ["a"])).not.toBe(builderFingerprint(fromSource, ["a"]));
  });

  it("a missing source is FILE_NOT_FOUND naming it", () => {
    const dir = folder("empty", {}, 0);
    expectCode(() => builderFingerprint(dir, ["gone"]), "FILE_NOT_FOUND", join(dir, "gone"));
  });
});

describe("openCachedGraph", () => {
  function spec(cacheDir: string | false, open: (dir: string) => Promise<string>, stages: string[], builds: { n: number }) {
    const checkpoint = folder("ckpt", { "config.json": "{}" }, 0);
    return {
      kind: "cache-test",
      files: [join(checkpoint, "config.json")],
      options: { precision: "fp32" },
      build: () => {
        builds.n++;
        return tinyGraph();
      },
      open,
      cacheDir,
      progress: (s: string) => stages.push(s),
      stages: { build: "build", load: "load", rebuild: "rebuild" },
    };
  }

  it("builds once, then opens the cached graph; a cached graph that will not open is rebuilt once", async () => {
    const cacheDir = join(root, "cache");
    const stages: string[] = [];
    const builds = { n: 0 };
    const opened = await openCachedGraph(spec(cacheDir, async (dir) => dir, stages, builds));
    expect(existsSync(join(opened, "model.onnx"))).toBe(true);
    expect(await openCachedGraph(spec(cacheDir, async (dir) => dir, stages, builds))).toBe(opened);
    expect(builds.n).toBe(1);
    let refusals = 0;
    const reopened = await openCachedGraph(
      spec(cacheDir, async (dir) => {
        if (refusals++ === 0) throw new Error("damaged");
        return dir;
      }, stages, builds),
    );
    expect(reopened).toBe(opened);
    expect(builds.n).toBe(2);
    expect(stages).toEqual(["build", "load", "load", "load", "rebuild", "build"]);
  });

  it("a graph just built that will not open fails as it is (no second build)", async () => {
    const builds = { n: 0 };
    const error = await openCachedGraph(spec(join(root, "cache"), async () => Promise.reject(new Error("bad graph")), [], builds)).catch((e) => e);
    expect((error as Error).message).toBe("bad graph");
    expect(builds.n).toBe(1);
  });

  it("cacheDir: false builds in a temporary folder that is gone once opened", async () => {
    let graphDir = "";
    await openCachedGraph(spec(false, async (dir) => (graphDir = dir), [], { n: 0 }));
    expect(graphDir).not.toBe("");
    expect(existsSync(graphDir)).toBe(false);
  });

  it("an unwritable cache folder is CACHE_UNWRITABLE", async () => {
    const blocker = join(root, "a-file");
    writeFileSync(blocker, "");
    await expectCode(openCachedGraph(spec(join(blocker, "cache"), async (dir) => dir, [], { n: 0 })), "CACHE_UNWRITABLE");
  });
});

describe("pruning when a graph is built", () => {
  it("a build removes graphs unused for 30 days, and nothing else", () => {
    fakeCache();
    folder(`lfm2-${HEX("e")}`, { "model.onnx": 1, "model.onnx.data": 1 }, 29 * DAY);
    const checkpoint = join(root, "ckpt");
    mkdirSync(checkpoint);
    writeFileSync(join(checkpoint, "config.json"), "{}");
    const key = graphCacheKey("lfm2", [join(checkpoint, "config.json")], { precision: "q4" }, root);
    expect(cachedGraph(root, key, tinyGraph).built).toBe(true);
    expect(existsSync(join(root, `lfm2-${HEX("a")}`))).toBe(false); // 40 days
    expect(existsSync(join(root, `colbert-${HEX("c")}`))).toBe(false); // 35 days, never finished
    for (const kept of [`lfm2-${HEX("e")}`, `lfm2-vl-vision-${HEX("b")}`, "bench-checkpoints", "my-notes-2024", `mimi-${HEX("d")}`, key]) {
      expect(existsSync(join(root, kept)), kept).toBe(true);
    }
  });
});

describe("lfm cache", () => {
  it("list --json and prune --dry-run --json", () => {
    fakeCache();
    const list = runLfm(["cache", "list", "--cache-dir", root, "--json"]);
    expect(list.status).toBe(0);
    const listed = JSON.parse(list.stdout) as { entries: Array<{ kind: string; bytes: number; source?: string }> };
    expect(listed.entries.map((e) => e.kind)).toEqual(["lfm2-vl-vision", "colbert", "lfm2"]);

    const dry = runLfm(["cache", "prune", "--unused-days", "30", "--dry-run", "--cache-dir", root, "--json"]);
    expect(dry.status).toBe(0);
    const report = JSON.parse(dry.stdout) as { dryRun: boolean; removed: unknown[]; kept: unknown[] };
    expect(report.dryRun).toBe(true);
    expect(report.removed).toHaveLength(2);
    expect(listCacheEntries(root)).toHaveLength(3);

    const human = runLfm(["cache", "prune", "--cache-dir", root]);
    expect(human.status).toBe(0);
    expect(human.stdout).toContain("removed 2 graphs");
    expect(listCacheEntries(root)).toHaveLength(1);
  });

  it("bad arguments are INVALID_ARGUMENT with exit status 2", () => {
    for (const args of [
      ["cache", "clean"],
      ["cache", "prune", "--all", "--unused-days", "3"],
      ["cache", "prune", "--unused-days", "-1"],
      ["cache", "prune", "--unused-days", "soon"],
      ["cache", "list", "--all"],
    ]) {
      const r = runLfm([...args, "--cache-dir", root]);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toContain("error [INVALID_ARGUMENT]");
    }
  });
});
