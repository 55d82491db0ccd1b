#!/usr/bin/env node
// The `lfm` command: runs the built CLI (dist/, which `npm ci`/`npm install` in a clone build
// through the `prepare` script, `npm run build` rebuilds, and the npm package ships built).
import { existsSync } from "node:fs";

// `lfm … | head`: the reader went away, so stop quietly instead of dying on an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

const entry = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("lfm: this checkout is not built yet (no dist/): run `npm run build` (npm ci does it too).\n");
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
