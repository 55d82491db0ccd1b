#!/usr/bin/env node
// Builds the package to JavaScript with declarations in dist/ (what `exports` and bin/lfm.mjs
// use): tsc; the plain-JS modules that have a hand-written declaration (tsc reads those as types
// only and leaves them out); and the SHA-256 of every TypeScript source, so that graph-cache keys
// computed by the built package equal those of the sources it was built from.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative, sep } from "node:path";

const root = join(import.meta.dirname, "..");
// Built beside dist/ and swapped in whole, so a process starting meanwhile never sees half a build.
const dist = join(root, `dist.tmp-${process.pid}`);
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
// A build killed midway (a CLI run stopped by a timeout) leaves its folders: remove those of dead processes.
for (const name of readdirSync(root)) {
  const pid = /^dist\.(?:tmp|old)-(\d+)$/.exec(name)?.[1];
  if (pid !== undefined && !alive(Number(pid))) rmSync(join(root, name), { recursive: true, force: true });
}
rmSync(dist, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", dist], { stdio: ["ignore", "inherit", "inherit"], cwd: root });
} catch (e) {
  rmSync(dist, { recursive: true, force: true });
  throw e;
}
for (const file of ["retrieval/index/file-checksum.mjs", "retrieval/index/file-checksum.d.mts"]) {
  copyFileSync(join(root, file), join(dist, file));
}
// The web page of lfm serve: plain files served as they are (server/web-page.ts reads them beside itself).
cpSync(join(root, "server", "web"), join(dist, "server", "web"), { recursive: true, filter: (src) => !src.endsWith(".d.ts") });
// tsc rewrites the .ts extensions of relative imports in the JavaScript, not in the declarations.
for (const file of readdirSync(dist, { recursive: true })) {
  if (!file.endsWith(".d.ts")) continue;
  const path = join(dist, file);
  const text = readFileSync(path, "utf8");
  const rewritten = text.replace(/((?:from |import\()["'])(\.{1,2}\/[^"']+)\.ts(["'])/g, "$1$2.js$3");
  if (rewritten !== text) writeFileSync(path, rewritten);
}
const digests = {};
const { include } = JSON.parse(readFileSync(join(root, "tsconfig.build.json"), "utf8"));
for (const entry of include) {
  const files = entry.endsWith(".ts") ? [entry] : readdirSync(join(root, entry), { recursive: true }).map((f) => join(entry, f));
  for (const file of files) {
    if (!file.endsWith(".ts") || file.endsWith(".d.ts") || file.endsWith(".test.ts")) continue;
    digests[relative(root, join(root, file)).split(sep).join("/")] = createHash("sha256").update(readFileSync(join(root, file))).digest("hex");
  }
}
writeFileSync(join(dist, "source-digests.json"), `${JSON.stringify(digests, null, 1)}\n`);
const old = join(root, `dist.old-${process.pid}`);
if (existsSync(join(root, "dist"))) renameSync(join(root, "dist"), old);
renameSync(dist, join(root, "dist"));
rmSync(old, { recursive: true, force: true });

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}
