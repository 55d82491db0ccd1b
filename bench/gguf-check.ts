/**
 * Checks bench/gguf-writer.ts against llama.cpp itself, on the tiny LFM2 fixture whose outputs
 * transformers computed in float32 (fixtures/text/reference.*):
 *   1. layout: each file parses back (tensor table; offsets = running 32-aligned sizes; file size),
 *      and the quantised token embedding dequantises to the checkpoint's values within the step;
 *   2. an all-F32 GGUF, loaded by llama.cpp (node-llama-cpp, CPU), gives transformers' logits for
 *      the reference prompt (compared as row-centred log-probabilities) to within float rounding, and its greedy decode gives transformers'
 *      ids: tensor names, shapes, orientation (the conv kernel, q/k norms) and hyper-parameters are
 *      read as meant;
 *   3. llama.cpp on the Q8_0 / Q4_0 file agrees with llama.cpp on an F32 file holding the same
 *      weights after a quantise → dequantise round trip in JS: the block bytes mean to llama.cpp
 *      what they mean to the writer (what is left is llama.cpp's 8-bit activations);
 *   4. llama.cpp's tokenizer, driven only by the GGUF vocabulary / merges / pre-tokenizer metadata,
 *      reproduces the reference token ids.
 * Exits non-zero if a check fails.  Usage: node bin/run-ts.mjs bench/gguf-check.ts
 */
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { Checkpoint } from "../text-core/checkpoint.ts";
import { SafetensorsFile } from "../text-core/safetensors.ts";
import { BLOCK_BYTES, dequantize, type GgufFormat, type GgufQuant, readGgufInfo, writeLfm2Gguf, type GgufWriteOptions } from "./gguf-writer.ts";

const ROOT = join(import.meta.dirname, "..");
const dir = join(ROOT, "fixtures/text/tiny-lfm2");
const refJson = JSON.parse(readFileSync(join(ROOT, "fixtures/text/reference.json"), "utf8")) as {
  tokenize: Array<{ text: string; ids_no_special: number[] }>;
  greedy: { prompt_ids: number[]; new_ids: number[] };
};
const ref = SafetensorsFile.open(join(ROOT, "fixtures/text/reference.safetensors"));
const inputIds = Array.from(new BigInt64Array(ref.readRaw("forward.input_ids").buffer), Number);
const refLogits = ref.readFloat32("forward.logits");
ref.close();
const P = inputIds.length;
const V = refLogits.length / P;
centerRows(refLogits);

let failed = false;
const check = (ok: boolean, what: string) => {
  process.stdout.write(`${ok ? "ok  " : "FAIL"} ${what}\n`);
  if (!ok) failed = true;
};

/** Subtracts each row's mean (logits and log-probabilities then compare directly). */
function centerRows(x: Float32Array): Float32Array {
  for (let p = 0; p < P; p++) {
    const row = x.subarray(p * V, (p + 1) * V);
    let mean = 0;
    for (const v of row) mean += v / V;
    for (let i = 0; i < V; i++) row[i] -= mean;
  }
  return x;
}

/** Mean cosine, argmax agreement and max |difference| of two [P, V] tables of row-centred logits. */
function compare(a: Float32Array, b: Float32Array): { cosine: number; argmax: number; maxDiff: number } {
  let cos = 0;
  let same = 0;
  let maxDiff = 0;
  for (let p = 0; p < P; p++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    let am = p * V;
    let bm = p * V;
    for (let i = p * V; i < (p + 1) * V; i++) {
      dot += a[i] * b[i];
      na += a[i] ** 2;
      nb += b[i] ** 2;
      if (a[i] > a[am]) am = i;
      if (b[i] > b[bm]) bm = i;
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    }
    cos += dot / Math.sqrt(na * nb);
    if (am === bm) same++;
  }
  return { cosine: cos / P, argmax: same / P, maxDiff };
}
const fmt = (c: ReturnType<typeof compare>) => `mean cosine ${c.cosine.toFixed(5)}, argmax agrees at ${(c.argmax * 100).toFixed(0)}% of ${P} positions, max |diff| ${c.maxDiff.toFixed(4)}`;

const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, maxThreads: 2, logLevel: LlamaLogLevel.error, progressLogs: false });
const work = mkdtempSync(join(tmpdir(), "gguf-check-"));

/** Writes the fixture as `format`, loads it in llama.cpp: logits for the reference prompt, greedy ids. */
async function run(format: GgufFormat, opts: GgufWriteOptions = {}, extra?: (model: Awaited<ReturnType<typeof llama.loadModel>>) => void) {
  const path = join(work, `tiny.${format}${opts.roundTrip ? `-rt-${opts.roundTrip}` : ""}.gguf`);
  const written = writeLfm2Gguf(dir, path, format, opts);
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: false });
  const context = await model.createContext({ contextSize: 256, threads: 2 });
  const sequence = context.getSequence();
  // node-llama-cpp 3.21 returns probabilities, not raw logits: the full softmax at temperature 1
  // with every truncation off; log-probabilities equal the logits up to a per-row constant.
  const full = { temperature: 1, topK: 0, topP: 1, minP: 0 };
  const out = await sequence.controlledEvaluate(inputIds.map((id) => [id as Token, { generateNext: { probabilities: true, options: full } }]));
  const logits = new Float32Array(P * V).fill(Math.log(1e-45));
  for (let p = 0; p < P; p++) {
    const map = out[p]?.next.probabilities;
    if (!map) throw new Error(`llama.cpp returned no probabilities at position ${p}`);
    for (const [tok, prob] of map) logits[p * V + tok] = Math.log(Math.max(prob, 1e-45));
  }
  centerRows(logits);
  await sequence.clearHistory();
  const greedy: number[] = [];
  for await (const t of sequence.evaluate(refJson.greedy.prompt_ids as Token[], { temperature: 0, yieldEogToken: true })) {
    greedy.push(t);
    if (greedy.length >= refJson.greedy.new_ids.length) break;
  }
  let prefix = 0;
  while (prefix < greedy.length && greedy[prefix] === refJson.greedy.new_ids[prefix]) prefix++;
  const arch = model.fileInfo.metadata.general.architecture;
  extra?.(model);
  await context.dispose();
  await model.dispose();
  return { path, written, logits, prefix, arch };
}

function checkLayout(format: GgufFormat, path: string, bytes: number): void {
  const info = readGgufInfo(path);
  const ckpt = Checkpoint.open(dir);
  try {
    check(info.version === 3 && info.tensors.length === ckpt.names().length, `${format}: GGUF v${info.version}, ${info.tensors.length} tensors (checkpoint: ${ckpt.names().length})`);
    let expected = 0;
    let offsetsOk = true;
    for (const t of info.tensors) {
      const n = t.ne.reduce((a, b) => a * b, 1);
      const size = t.type === 0 ? n * 4 : (n / 32) * BLOCK_BYTES[t.type === 2 ? "Q4_0" : "Q8_0"];
      if (t.offset !== expected) offsetsOk = false;
      expected += Math.ceil(size / 32) * 32;
    }
    check(offsetsOk && info.dataStart % 32 === 0 && statSync(path).size === bytes && bytes <= info.dataStart + expected, `${format}: offsets are the running 32-aligned sizes, data from byte ${info.dataStart}, ${bytes} bytes`);
    if (format === "F32") return;
    const t = info.tensors.find((x) => x.name === "token_embd.weight");
    const refEmbed = ckpt.readFloat32("model.embed_tokens.weight");
    if (!t) return check(false, `${format}: token_embd.weight present`);
    const raw = new Uint8Array((refEmbed.length / 32) * BLOCK_BYTES[format]);
    const fd = openSync(path, "r");
    readSync(fd, raw, 0, raw.length, info.dataStart + t.offset);
    closeSync(fd);
    const deq = dequantize(format, raw, refEmbed.length);
    let err = 0;
    let norm = 0;
    for (let i = 0; i < deq.length; i++) {
      err += (deq[i] - refEmbed[i]) ** 2;
      norm += refEmbed[i] ** 2;
    }
    const rel = Math.sqrt(err / norm);
    // Uniform rounding over a block's range: ~0.5% RMS at 8 bits, ~9% at 4 bits.
    check(rel < (format === "Q8_0" ? 0.01 : 0.12), `${format}: token_embd dequantises to the checkpoint within ${(rel * 100).toFixed(2)}% RMS`);
  } finally {
    ckpt.close();
  }
}

try {
  const f32 = await run("F32", {}, (model) => {
    let same = 0;
    for (const c of refJson.tokenize) {
      const ids = model.tokenize(c.text, true);
      if (ids.length === c.ids_no_special.length && ids.every((t, i) => t === c.ids_no_special[i])) same++;
    }
    check(same === refJson.tokenize.length, `tokenizer from the GGUF metadata reproduces ${same}/${refJson.tokenize.length} reference tokenisations`);
  });
  checkLayout("F32", f32.path, f32.written.bytes);
  check(f32.arch === "lfm2", `llama.cpp loaded the file as "${f32.arch}"`);
  const exact = compare(f32.logits, refLogits);
  check(exact.maxDiff < 0.05 && exact.argmax === 1, `F32 logits vs transformers: ${fmt(exact)}`);
  check(f32.prefix === refJson.greedy.new_ids.length, `F32 greedy decode matches transformers for ${f32.prefix}/${refJson.greedy.new_ids.length} tokens`);

  for (const quant of ["Q8_0", "Q4_0"] as GgufQuant[]) {
    const q = await run(quant);
    checkLayout(quant, q.path, q.written.bytes);
    const rt = await run("F32", { roundTrip: quant });
    const same = compare(q.logits, rt.logits);
    check(same.cosine > 0.99, `${quant} vs F32 holding the round-tripped ${quant} weights: ${fmt(same)}`);
    process.stdout.write(`info ${quant} vs transformers (weight quantisation error on a 64-wide model): ${fmt(compare(q.logits, refLogits))}; greedy prefix ${q.prefix}/${refJson.greedy.new_ids.length}\n`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
