/**
 * Built graphs are cached on disk, keyed by what determines them: the builder version, the build
 * options, config.json and the checkpoint's tensor headers, sizes and modification times. A
 * second start with the same checkpoint and options skips the build.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { GraphBuilder } from "./graph/builder.ts";

/** Bump when the graph a given checkpoint + options produce changes. */
export const GRAPH_BUILDER_VERSION = 1;

export function defaultCacheDir(): string {
  if (process.env.LFM_CACHE_DIR) return process.env.LFM_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache");
  return join(base, "lfm2-edge");
}

/** A stable key for a graph built from `files` (config, safetensors headers) with `options`. */
export function graphCacheKey(kind: string, files: string[], options: unknown): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ kind, version: GRAPH_BUILDER_VERSION, options }));
  for (const f of files) {
    const st = statSync(f);
    h.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
    // The config and the safetensors header (first 1 MB) identify the content cheaply.
    h.update(readHead(f, 1 << 20));
  }
  return `${kind}-${h.digest("hex").slice(0, 24)}`;
}

function readHead(path: string, limit: number): Uint8Array {
  const buf = Buffer.alloc(Math.min(limit, statSync(path).size));
  const fd = openSync(path, "r");
  try {
    readSync(fd, buf, 0, buf.length, 0);
  } finally {
    closeSync(fd);
  }
  return buf;
}

/** Returns the folder holding `model.onnx`, building and saving it first when absent. */
export function cachedGraph(cacheDir: string, key: string, build: () => GraphBuilder): { dir: string; built: boolean } {
  const dir = join(cacheDir, key);
  if (existsSync(join(dir, "model.onnx"))) return { dir, built: false };
  mkdirSync(cacheDir, { recursive: true });
  build().save(dir);
  return { dir, built: true };
}
