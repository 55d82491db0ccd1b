#!/usr/bin/env node
// The `lfm` command: runs the built CLI in dist/. The npm package ships it built; in a clone it
// is built here on first use and again whenever a source is newer than the build (about 20 s).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// `lfm … | head`: the reader went away, so stop quietly instead of dying on an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

const root = fileURLToPath(new URL("..", import.meta.url));
const builtAt = join(root, "dist", "source-digests.json");
const SOURCE_FOLDERS = ["text-core", "vision", "audio", "retrieval", "pipelines", "cli", "server"];

/** In a clone (sources present): true when dist/ is missing or older than a source file. */
function buildIsStale() {
  if (!existsSync(join(root, "cli", "main.ts"))) return false;
  if (!existsSync(builtAt)) return true;
  const built = statSync(builtAt).mtimeMs;
  if (statSync(join(root, "index.ts")).mtimeMs > built) return true;
  return SOURCE_FOLDERS.some((folder) =>
    // The web page's files (server/web) are served as they are, so any change to them counts.
    readdirSync(join(root, folder), { recursive: true }).some((f) => (/\.m?ts$/.test(f) || (folder === "server" && /^web[\\/]/.test(f))) && statSync(join(root, folder, f)).mtimeMs > built),
  );
}

if (buildIsStale()) {
  process.stderr.write("lfm: building dist/ from the sources (first run, or the sources changed)…\n");
  const r = spawnSync(process.execPath, [join(root, "scripts", "build.mjs")], { stdio: ["ignore", 2, 2] });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const { main } = await import(new URL("../dist/cli/main.js", import.meta.url).href);
process.exitCode = await main(process.argv.slice(2));
