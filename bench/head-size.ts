/**
 * `node bin/run-ts.mjs bench/head-size.ts [--ref main] [--precision fp32,q8,q4]`
 *
 * Attention at head sizes GroupQueryAttention rejects (not a multiple of 8) takes a graph path of
 * its own; the fast path must stay the graph it was. This builds the LFM2-350M-shape graph (head
 * size 64; fixtures/real-configs/lfm2-350m.config.json, made-up weights) with the language core of
 * git ref `--ref` (default main, extracted into a temporary folder) and with this tree's, saves
 * both, and checks model.onnx, its weight file and the embedding table are byte-identical.
 * Exit status 1 when any differs. Needs ~3 GB of temporary disk per precision at fp32.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type Lfm2Config, parseLfm2Config } from "../text-core/config.ts";
import type { GraphBuilder } from "../text-core/graph/builder.ts";
import { type Precision, isPrecision } from "../text-core/graph/precision.ts";
import type { WeightSource } from "../text-core/graph/weights.ts";
import { lfm2TensorShapes, uniformNoise } from "./synthetic-checkpoint.ts";
import { ROOT } from "./bench-kit.ts";

type BuildLfm2Graph = (config: Lfm2Config, weights: WeightSource, prefix: string, options: { precision: Precision; head: "logits"; exposeHidden: false }) => { builder: GraphBuilder };

const { values } = parseArgs({ options: { ref: { type: "string", default: "main" }, precision: { type: "string", default: "fp32,q8,q4" } } });
const precisions = (values.precision as string).split(",");
for (const p of precisions) if (!isPrecision(p)) throw new Error(`--precision: unknown precision ${p}`);

const config = parseLfm2Config(JSON.parse(readFileSync(join(ROOT, "fixtures/real-configs/lfm2-350m.config.json"), "utf8")), "lfm2-350m");
if (config.headDim % 8 !== 0) throw new Error(`expected the fast-path head size, got ${config.headDim}`);

/** The same made-up weights for both builds, computed on demand (no checkpoint on disk). */
function syntheticWeights(): WeightSource {
  const shapes = new Map(lfm2TensorShapes(config));
  const names = [...shapes.keys()];
  const shapeOf = (name: string) => {
    const s = shapes.get(name);
    if (!s) throw new Error(`no tensor ${name}`);
    return s;
  };
  return {
    has: (name) => shapes.has(name),
    shape: shapeOf,
    readFloat32: (name) => {
      const s = shapeOf(name);
      return uniformNoise(s.reduce((a, b) => a * b, 1), names.indexOf(name) + 1, name.includes("norm") ? 1 : 0, 0.05);
    },
  };
}

const work = mkdtempSync(join(tmpdir(), "lfm2-head-size-bench-"));
try {
  // The reference ref's text-core, importable beside this checkout's node_modules.
  const refDir = join(work, "ref");
  mkdirSync(refDir);
  const archive = execFileSync("git", ["-C", ROOT, "archive", values.ref as string, "text-core"], { maxBuffer: 1 << 28 });
  execFileSync("tar", ["-x", "-C", refDir], { input: archive });
  symlinkSync(join(ROOT, "node_modules"), join(refDir, "node_modules"));
  writeFileSync(join(refDir, "package.json"), JSON.stringify({ type: "module" }));
  const builders: Array<[string, BuildLfm2Graph]> = [
    [values.ref as string, ((await import(pathToFileURL(join(refDir, "text-core/lfm2.ts")).href)) as { buildLfm2Graph: BuildLfm2Graph }).buildLfm2Graph],
    ["this tree", ((await import(pathToFileURL(join(ROOT, "text-core/lfm2.ts")).href)) as { buildLfm2Graph: BuildLfm2Graph }).buildLfm2Graph],
  ];

  let differ = false;
  for (const precision of precisions as Precision[]) {
    const digests: Array<Record<string, string>> = [];
    for (const [label, build] of builders) {
      const dir = join(work, `${precision}-${digests.length}`);
      const started = performance.now();
      build(config, syntheticWeights(), "model.", { precision, head: "logits", exposeHidden: false }).builder.save(dir);
      const files: Record<string, string> = {};
      for (const f of readdirSync(dir).sort()) files[f] = await sha256(join(dir, f));
      rmSync(dir, { recursive: true, force: true });
      digests.push(files);
      process.stderr.write(`${precision} ${label}: built and hashed in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    }
    const [ref, ours] = digests;
    const names = [...new Set([...Object.keys(ref), ...Object.keys(ours)])].sort();
    for (const f of names) {
      const same = ref[f] !== undefined && ref[f] === ours[f];
      differ ||= !same;
      console.log(`${precision} head size ${config.headDim} ${f}: ${same ? "byte-identical" : `DIFFERS (${values.ref} ${ref[f]?.slice(0, 12)}, this tree ${ours[f]?.slice(0, 12)})`}`);
    }
  }
  process.exitCode = differ ? 1 : 0;
} finally {
  rmSync(work, { recursive: true, force: true });
}

function sha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (chunk) => h.update(chunk))
      .on("end", () => resolve(h.digest("hex")))
      .on("error", reject);
  });
}
