#!/usr/bin/env node
// Runs the TypeScript CLI directly through tsx's loader: no build step after `npm ci`.
import { register } from "tsx/esm/api";

// `lfm … | head`: the reader went away, so stop quietly instead of dying on an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
}

register();
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
