/**
 * Checkpoints with made-up weights in the real on-disk layout, for parity at the published shapes
 * (the closed-form weights of fixtures/realshape) and for benchmarks (speed does not depend on
 * the weight values). Written as BF16 safetensors beside a config and a tokenizer, so they load
 * through exactly the same code as a downloaded checkpoint.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { publishDir } from "../text-core/graph/builder.ts";
import { join } from "node:path";
import type { Lfm2Config } from "../text-core/config.ts";
import { float32ToBf16 } from "../text-core/float-bits.ts";
import { type TensorToWrite, writeSafetensors } from "./safetensors-writer.ts";

/**
 * The fixtures' closed-form weight (fixtures/README.md, realshape): element k of tensor `name`
 * with shape S is `b = sin(0.61803398875·k + h)·cos(0.0001234·k + 2h)` with
 * `h = (Σ utf8(name) mod 997)·0.013 + 0.75`, scaled per tensor kind, then rounded to bf16.
 */
export function formulaWeights(name: string, shape: number[]): Uint16Array {
  const n = shape.reduce((a, b) => a * b, 1);
  let byteSum = 0;
  for (const byte of new TextEncoder().encode(name)) byteSum += byte;
  const h = (byteSum % 997) * 0.013 + 0.75;
  let scale: number;
  let offset = 0;
  if (shape.length === 1) {
    if (name.includes("norm") && name.endsWith(".weight")) {
      scale = 0.2;
      offset = 1;
    } else {
      scale = 0.05;
    }
  } else if (name.includes("embed") || name.includes("position_embedding")) {
    scale = 0.5;
  } else {
    scale = 1.6 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
  }
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = offset + scale * (Math.sin(0.61803398875 * k + h) * Math.cos(0.0001234 * k + 2 * h));
  return float32ToBf16(out);
}

/** Fast pseudo-random weights with the formula's scales (benchmarks: values don't matter). */
export function randomWeights(name: string, shape: number[], seed = 1): Uint16Array {
  const isNorm = shape.length === 1 && name.includes("norm");
  const scale = shape.length === 1 ? (isNorm ? 0.2 : 0.05) : name.includes("embed") ? 0.5 : 1.6 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1));
  return float32ToBf16(uniformNoise(shape.reduce((a, b) => a * b, 1), seed, isNorm ? 1 : 0, scale));
}

/** `n` values offset + scale·u, u uniform in [-1, 1) from a seeded xorshift32 (fast, reproducible). */
export function uniformNoise(n: number, seed: number, offset: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let k = 0; k < n; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[k] = offset + scale * ((x >>> 0) / 2147483648 - 1);
  }
  return out;
}

/** Every tensor an LFM2 text checkpoint with this config holds, in the HF naming. */
export function lfm2TensorShapes(config: Lfm2Config, prefix = "model."): Array<[string, number[]]> {
  const D = config.hiddenSize;
  const { headDim, numHeads, numKvHeads, ffDim, vocabSize } = config;
  const out: Array<[string, number[]]> = [[`${prefix}embed_tokens.weight`, [vocabSize, D]]];
  config.layerTypes.forEach((type, i) => {
    const p = `${prefix}layers.${i}`;
    if (type === "conv") {
      out.push([`${p}.conv.conv.weight`, [D, 1, config.convLCache]], [`${p}.conv.in_proj.weight`, [3 * D, D]], [`${p}.conv.out_proj.weight`, [D, D]]);
    } else {
      out.push(
        [`${p}.self_attn.q_proj.weight`, [numHeads * headDim, D]],
        [`${p}.self_attn.k_proj.weight`, [numKvHeads * headDim, D]],
        [`${p}.self_attn.v_proj.weight`, [numKvHeads * headDim, D]],
        [`${p}.self_attn.out_proj.weight`, [D, numHeads * headDim]],
        [`${p}.self_attn.q_layernorm.weight`, [headDim]],
        [`${p}.self_attn.k_layernorm.weight`, [headDim]],
      );
    }
    out.push(
      [`${p}.feed_forward.w1.weight`, [ffDim, D]],
      [`${p}.feed_forward.w3.weight`, [ffDim, D]],
      [`${p}.feed_forward.w2.weight`, [D, ffDim]],
      [`${p}.operator_norm.weight`, [D]],
      [`${p}.ffn_norm.weight`, [D]],
    );
  });
  out.push([`${prefix}embedding_norm.weight`, [D]]);
  return out;
}

/**
 * The tiny fixture tokenizer padded with added tokens `<|filler_N|>` up to `vocabSize` entries
 * (how fixtures/realshape built its 65536-entry vocabulary); `extra` names the last ids.
 */
export function paddedTokenizerJson(baseTokenizerJson: string, vocabSize: number, extra: string[] = []): string {
  const tok = JSON.parse(baseTokenizerJson) as { added_tokens: Array<Record<string, unknown>>; model: { vocab: Record<string, number> } };
  const used = new Set<number>([...Object.values(tok.model.vocab), ...tok.added_tokens.map((t) => t.id as number)]);
  let next = Math.max(...used) + 1;
  const fillerEnd = vocabSize - extra.length;
  const add = (content: string, special: boolean) =>
    tok.added_tokens.push({ id: next++, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special });
  while (next < fillerEnd) add(`<|filler_${next}|>`, true);
  for (const e of extra) add(e, false);
  return JSON.stringify(tok);
}

/**
 * `base` padded to `vocabSize` entries with added non-special tokens " wN": random ids decode to
 * text (special fillers decode to nothing under skipSpecialTokens), for benchmarks whose output is
 * read on (the agent speaks its reply).
 */
export function plainWordsTokenizerJson(base: string, vocabSize: number): string {
  const tok = JSON.parse(base) as { added_tokens: Array<Record<string, unknown>>; model: { vocab: Record<string, number> } };
  let next = Math.max(...Object.values(tok.model.vocab), ...tok.added_tokens.map((t) => t.id as number)) + 1;
  while (next < vocabSize) tok.added_tokens.push({ id: next, content: ` w${next++}`, single_word: false, lstrip: false, rstrip: false, normalized: true, special: false });
  return JSON.stringify(tok);
}

export interface SyntheticCheckpointSpec {
  /** config.json contents, written verbatim. */
  config: Record<string, unknown>;
  tensors: Array<[string, number[]]>;
  values: "formula" | "random";
  /** Folder whose tokenizer files are copied (tokenizer.json may be replaced by `tokenizerJson`). */
  tokenizerFrom: string;
  tokenizerJson?: string;
  /** Extra files to write (e.g. processor_config.json), name → JSON value. */
  extraFiles?: Record<string, unknown>;
}

/**
 * Writes the checkpoint to `dir` unless a complete one is already there (a marker file is written
 * last, so an interrupted write is redone). Returns `dir`.
 */
export function writeSyntheticCheckpoint(dir: string, spec: SyntheticCheckpointSpec, onProgress?: (done: number, total: number) => void): string {
  const marker = join(dir, ".complete");
  if (existsSync(marker)) return dir;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, "config.json"), JSON.stringify(spec.config, null, 1));
  for (const f of ["tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"]) {
    if (existsSync(join(spec.tokenizerFrom, f))) copyFileSync(join(spec.tokenizerFrom, f), join(tmp, f));
  }
  writeFileSync(join(tmp, "tokenizer.json"), spec.tokenizerJson ?? readFileSync(join(spec.tokenizerFrom, "tokenizer.json"), "utf8"));
  for (const [name, value] of Object.entries(spec.extraFiles ?? {})) {
    mkdirSync(join(tmp, name, ".."), { recursive: true });
    writeFileSync(join(tmp, name), JSON.stringify(value, null, 1));
  }
  let done = 0;
  const tensors: TensorToWrite[] = spec.tensors.map(([name, shape], i) => ({
    name,
    dtype: "BF16",
    shape,
    data: () => {
      const w = spec.values === "formula" ? formulaWeights(name, shape) : randomWeights(name, shape, i + 1);
      onProgress?.(++done, spec.tensors.length);
      return new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
    },
  }));
  writeSafetensors(join(tmp, "model.safetensors"), tensors, { format: "pt" });
  writeFileSync(join(tmp, ".complete"), "");
  // A folder left by an interrupted write has no marker: replace it.
  if (existsSync(dir) && !existsSync(marker)) rmSync(dir, { recursive: true, force: true });
  publishDir(tmp, dir);
  return dir;
}
