/**
 * Which of a loaded LFM2 graph's memory the model actually reads (Linux only): loads the cached
 * graph, runs a prompt, clears the pages' "referenced" bits (/proc/self/clear_refs), runs another
 * prompt and some decode steps, and prints, for the memory-mapped weight file (model.onnx.data)
 * and for anonymous memory, how much is resident and how much was touched since.
 * It shows the float32 `MatMulNBits` scale initializers that onnxruntime keeps mapped after packing
 * them, which its x86 kernel never reads again (README, Speed and memory).
 * Usage: node bin/run-ts.mjs bench/mapped-pages.ts CHECKPOINT_DIR [q4|q8|fp32] [THREADS]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { loadLfm2Config } from "../text-core/config.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { buildRuntime } from "../text-core/model.ts";
import { argmax } from "./prompt.ts";

const [dir, precision = "q4", threads = "2"] = process.argv.slice(2);
if (!dir || process.platform !== "linux") {
  console.error("usage (Linux): node bin/run-ts.mjs bench/mapped-pages.ts CHECKPOINT_DIR [q4|q8|fp32] [THREADS]");
  process.exit(2);
}

/** Resident and referenced MB of the weight-file mappings and of anonymous memory. */
function pages(): { fileRss: number; fileReferenced: number; anonRss: number; anonReferenced: number } {
  const r = { fileRss: 0, fileReferenced: 0, anonRss: 0, anonReferenced: 0 };
  let mapping = "";
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      mapping = line;
      continue;
    }
    const m = /^(Rss|Referenced):\s+(\d+) kB/.exec(line);
    if (m === null) continue;
    const mb = Number(m[2]) / 1024;
    const file = mapping.includes("model.onnx.data");
    if (!file && mapping.includes("/")) continue; // other files: libraries
    if (m[1] === "Rss") r[file ? "fileRss" : "anonRss"] += mb;
    else r[file ? "fileReferenced" : "anonReferenced"] += mb;
  }
  return r;
}

function report(stage: string): void {
  const p = pages();
  console.log(
    `${stage.padEnd(44)} weight file: ${p.fileRss.toFixed(1)} MB resident, ${p.fileReferenced.toFixed(1)} MB referenced; anonymous: ${p.anonRss.toFixed(0)} MB resident, ${p.anonReferenced.toFixed(0)} MB referenced`,
  );
}

const config = loadLfm2Config(dir);
const runtime = await buildRuntime(dir, config, { precision: precision as Precision, head: "logits", exposeHidden: false }, { threads: Number(threads) });
const state = runtime.newState(1, 1024);
const ids = (n: number, from: number) => Array.from({ length: n }, (_, i) => (from + i) % config.vocabSize);
let out = await runtime.forward(state, { ids: [ids(300, 100)] });
report("loaded, 300-token prompt run");
writeFileSync("/proc/self/clear_refs", "1");
report("referenced bits cleared");
out = await runtime.forward(state, { ids: [ids(100, 500)] });
let next = argmax(out.output, out.width);
for (let i = 0; i < 32; i++) {
  out = await runtime.forward(state, { ids: [[next]] });
  next = argmax(out.output, out.width);
}
report("then a 100-token prompt and 32 decode steps");
await runtime.release();
