/**
 * The tiny random models that run when a command gets no --model, so a fresh clone (and a fresh
 * `npm i lfm2-edge`) works offline. Their outputs are random: they show the plumbing, not a model.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { LfmError } from "../text-core/errors.ts";
import type { Values } from "./cli-kit.ts";

/** The package's root folder, from source (cli/) or from the build (dist/cli/) alike. */
export const PACKAGE_ROOT = (() => {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "lfm2-edge") return dir;
    if (dirname(dir) === dir) throw new Error(`lfm2-edge: no package.json above ${import.meta.dirname}`);
  }
})();

const BUNDLED = {
  text: { path: "fixtures/text/tiny-lfm2", what: "LFM2", output: "text" },
  vision: { path: "fixtures/vision/tiny-lfm2-vl", what: "LFM2-VL", output: "text" },
  colbert: { path: "fixtures/retrieval/tiny-lfm2-colbert", what: "ColBERT", output: "vectors" },
  audio: { path: "fixtures/audio/tiny-lfm2-audio", what: "LFM2-Audio", output: "text and speech" },
  mimi: { path: "fixtures/audio/tiny-mimi", what: "Mimi codec", output: "audio" },
} as const;

export type BundledModel = keyof typeof BUNDLED;

/** The folder of a bundled model (it may be absent in an installed package: see `modelOrBundled`). */
export function bundledModel(kind: BundledModel): string {
  return join(PACKAGE_ROOT, BUNDLED[kind].path);
}

/**
 * `--model` (or the flag named `flag`), else the bundled model of `kind` with a note on stderr
 * (not with --json, whose stdout and stderr scripts read). The npm package ships the small
 * bundled models only; a missing one is a typed error asking for --model.
 */
export function modelOrBundled(v: Values, kind: BundledModel, flag = "model"): string {
  const given = v[flag];
  if (typeof given === "string") return given;
  const { what, output } = BUNDLED[kind];
  const dir = bundledModel(kind);
  if (!existsSync(join(dir, "config.json"))) {
    throw new LfmError("MODEL_REQUIRED", `give --${flag} DIR (an ${what} checkpoint folder): this installation has no bundled tiny ${what} model.`);
  }
  if (!v.json) process.stderr.write(`(no --${flag} given: using the bundled tiny random ${what} ${dir}; its ${output} is random)\n`);
  return dir;
}
