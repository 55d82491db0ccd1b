/**
 * LFM2 checkpoint folder (config.json + tokenizer.json + safetensors, e.g. one written by
 * `writeSyntheticCheckpoint`) → a GGUF v3 file llama.cpp loads as architecture "lfm2", with the
 * 2-D weight matrices (the token embedding included: it is also the tied output head) quantised to
 * Q4_0 or Q8_0 and the norms and the short-conv kernel kept as F32.
 *
 * Layout facts (ggml's `gguf.cpp`, `ggml-common.h`, `ggml-quants.c`; llama.cpp's LFM2 loader and
 * converter; all little-endian):
 *   header   "GGUF", u32 version 3, u64 tensor count, u64 KV count
 *   KV       string key, u32 value type, value (arrays: u32 element type, u64 count, elements);
 *            strings are u64 byte length + UTF-8 bytes, no terminator
 *   tensors  string name, u32 n_dims, u64 ne[n_dims] (ne[0] = the contiguous axis, i.e. PyTorch's
 *            shape reversed), u32 ggml type, u64 offset from the start of the data section
 *   padding  zeros up to `general.alignment` (32); then the data, each tensor starting at its offset
 *            (llama.cpp checks that offsets are the running sum of sizes padded to the alignment)
 *   Q4_0     blocks of 32 values along a row: f16 scale d, 16 bytes; byte j holds value j in the low
 *            nibble and value j+16 in the high one; value = (nibble - 8)·d, d = (signed absmax)/-8
 *   Q8_0     blocks of 32: f16 scale d = absmax/127, then 32 int8; value = q·d
 *
 * Tensor data is streamed: each tensor is read from the safetensors in row chunks, quantised and
 * appended, so memory stays at a few MB whatever the model size.
 *
 * "F32" keeps every tensor float32 (exactness checks: bench/gguf-check.ts).
 *
 *   node bin/run-ts.mjs bench/gguf-writer.ts CHECKPOINT_DIR OUT.gguf Q4_0|Q8_0|F32
 */
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadLfm2Config, type Lfm2Config } from "../text-core/config.ts";
import { Checkpoint } from "../text-core/checkpoint.ts";
import { float32ToF16 } from "../text-core/float-bits.ts";
import { decodeFloat32, type TensorInfo } from "../text-core/safetensors.ts";

export type GgufQuant = "Q4_0" | "Q8_0";
/** What the 2-D matrices are stored as; "F32" (everything float32, for exactness checks) too. */
export type GgufFormat = GgufQuant | "F32";

/** Bumped whenever the bytes this writer produces change (it names the cached files). */
export const GGUF_WRITER_VERSION = 1;
const GGUF_VERSION = 3;
const ALIGNMENT = 32;
const QK = 32; // values per Q4_0 / Q8_0 block

// ggml_type
const GGML_F32 = 0;
const GGML_Q4_0 = 2;
const GGML_Q8_0 = 8;
// gguf_type
const T_UINT32 = 4;
const T_INT32 = 5;
const T_FLOAT32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;
// llama_ftype
const FILE_TYPE: Record<GgufFormat, number> = { F32: 0, Q4_0: 2, Q8_0: 7 };
// llama_token_type
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_UNUSED = 5;

/** Bytes one block of 32 weights takes. */
export const BLOCK_BYTES: Record<GgufQuant, number> = { Q4_0: 2 + QK / 2, Q8_0: 2 + QK };

// ── byte sink ─────────────────────────────────────────────────────────────────────────────────

class Bytes {
  #buf = new Uint8Array(1 << 20);
  #view = new DataView(this.#buf.buffer);
  length = 0;
  #room(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
  u8(v: number): void {
    this.#room(1);
    this.#buf[this.length++] = v;
  }
  u32(v: number): void {
    this.#room(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.#room(4);
    this.#view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.#room(4);
    this.#view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.#room(8);
    this.#view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.#room(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }
  zeros(n: number): void {
    this.#room(n);
    this.#buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}

type KvValue =
  | { t: "u32"; v: number }
  | { t: "f32"; v: number }
  | { t: "bool"; v: boolean }
  | { t: "str"; v: string }
  | { t: "i32[]"; v: number[] }
  | { t: "str[]"; v: string[] };

function writeKv(out: Bytes, key: string, value: KvValue): void {
  out.str(key);
  switch (value.t) {
    case "u32":
      out.u32(T_UINT32);
      out.u32(value.v);
      break;
    case "f32":
      out.u32(T_FLOAT32);
      out.f32(value.v);
      break;
    case "bool":
      out.u32(T_BOOL);
      out.u8(value.v ? 1 : 0);
      break;
    case "str":
      out.u32(T_STRING);
      out.str(value.v);
      break;
    case "i32[]":
      out.u32(T_ARRAY);
      out.u32(T_INT32);
      out.u64(value.v.length);
      for (const x of value.v) out.i32(x);
      break;
    case "str[]":
      out.u32(T_ARRAY);
      out.u32(T_STRING);
      out.u64(value.v.length);
      for (const x of value.v) out.str(x);
      break;
  }
}

// ── tensors ───────────────────────────────────────────────────────────────────────────────────

interface PlannedTensor {
  ggufName: string;
  source: TensorInfo;
  /** ggml order: ne[0] is the contiguous axis. */
  ne: number[];
  type: number;
  bytes: number;
  offset: number;
}

const padTo = (n: number, a: number) => Math.ceil(n / a) * a;

/** HF LFM2 tensor name → GGUF name (llama.cpp `LLM_TENSOR_*` for arch "lfm2"), or null if unknown. */
export function lfm2GgufName(hfName: string): string | null {
  const name = hfName.replace(/^model\.language_model\./, "model.").replace(/^language_model\.model\./, "model.");
  if (name === "model.embed_tokens.weight") return "token_embd.weight";
  if (name === "model.embedding_norm.weight") return "token_embd_norm.weight"; // the final norm (LLM_TENSOR_OUTPUT_NORM_LFM2)
  if (name === "lm_head.weight") return "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) return null;
  const per: Record<string, string> = {
    "operator_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "feed_forward.w1.weight": "ffn_gate.weight",
    "feed_forward.w3.weight": "ffn_up.weight",
    "feed_forward.w2.weight": "ffn_down.weight",
    "conv.conv.weight": "shortconv.conv.weight",
    "conv.in_proj.weight": "shortconv.in_proj.weight",
    "conv.out_proj.weight": "shortconv.out_proj.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.out_proj.weight": "attn_output.weight",
    "self_attn.q_layernorm.weight": "attn_q_norm.weight",
    "self_attn.k_layernorm.weight": "attn_k_norm.weight",
  };
  const suffix = per[m[2]];
  return suffix === undefined ? null : `blk.${m[1]}.${suffix}`;
}

function planTensors(ckpt: Checkpoint, quant: GgufFormat): PlannedTensor[] {
  const planned: PlannedTensor[] = [];
  let offset = 0;
  for (const hfName of ckpt.names()) {
    const ggufName = lfm2GgufName(hfName);
    if (ggufName === null) throw new Error(`gguf-writer: no GGUF name for tensor "${hfName}" (conv bias / MoE checkpoints are not supported)`);
    const info = ckpt.info(hfName);
    let shape = info.shape;
    if (ggufName.endsWith("shortconv.conv.weight")) {
      // [D, 1, L] → [D, L] (the converter squeezes it; ggml_ssm_conv wants a 2-D kernel).
      if (shape.length !== 3 || shape[1] !== 1) throw new Error(`gguf-writer: ${hfName} has shape [${shape}], expected [D, 1, L]`);
      shape = [shape[0], shape[2]];
    }
    const ne = [...shape].reverse();
    const count = shape.reduce((a, b) => a * b, 1);
    let type = GGML_F32;
    let bytes = count * 4;
    if (quant !== "F32" && shape.length === 2 && !ggufName.endsWith("shortconv.conv.weight")) {
      if (ne[0] % QK !== 0) throw new Error(`gguf-writer: ${hfName} rows of ${ne[0]} are not a whole number of ${QK}-value blocks`);
      type = quant === "Q4_0" ? GGML_Q4_0 : GGML_Q8_0;
      bytes = (count / QK) * BLOCK_BYTES[quant];
    }
    planned.push({ ggufName, source: info, ne, type, bytes, offset });
    offset += padTo(bytes, ALIGNMENT);
  }
  return planned;
}

/** Quantises `x` (a whole number of 32-value blocks) to Q4_0 blocks in `out`. */
export function quantizeQ4_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / QK) * BLOCK_BYTES.Q4_0)): Uint8Array {
  const nb = x.length / QK;
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const base = b * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[base + j];
      const a = Math.abs(v);
      if (a > amax) {
        amax = a;
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    scales[b] = d;
    const o = b * BLOCK_BYTES.Q4_0 + 2;
    for (let j = 0; j < QK / 2; j++) {
      const q0 = Math.min(15, Math.trunc(Math.fround(x[base + j] * id) + 8.5));
      const q1 = Math.min(15, Math.trunc(Math.fround(x[base + QK / 2 + j] * id) + 8.5));
      out[o + j] = q0 | (q1 << 4);
    }
  }
  writeScales(out, scales, BLOCK_BYTES.Q4_0);
  return out;
}

/** Quantises `x` (a whole number of 32-value blocks) to Q8_0 blocks in `out`. */
export function quantizeQ8_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / QK) * BLOCK_BYTES.Q8_0)): Uint8Array {
  const nb = x.length / QK;
  const scales = new Float32Array(nb);
  const q = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b < nb; b++) {
    const base = b * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[base + j]));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    scales[b] = d;
    const o = b * BLOCK_BYTES.Q8_0 + 2;
    for (let j = 0; j < QK; j++) {
      const v = Math.fround(x[base + j] * id);
      q[o + j] = v < 0 ? -Math.round(-v) : Math.round(v); // roundf: halves away from zero
    }
  }
  writeScales(out, scales, BLOCK_BYTES.Q8_0);
  return out;
}

function writeScales(out: Uint8Array, scales: Float32Array, blockBytes: number): void {
  const halves = float32ToF16(scales);
  for (let b = 0; b < halves.length; b++) {
    out[b * blockBytes] = halves[b] & 0xff;
    out[b * blockBytes + 1] = halves[b] >>> 8;
  }
}

function roundTrip(quant: GgufQuant, x: Float32Array): Float32Array {
  return dequantize(quant, quant === "Q4_0" ? quantizeQ4_0(x) : quantizeQ8_0(x), x.length);
}

/** Dequantises Q4_0 / Q8_0 blocks (for checks). */
export function dequantize(quant: GgufQuant, data: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const bb = BLOCK_BYTES[quant];
  const halfToFloat = (h: number) => {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  };
  for (let b = 0; b < count / QK; b++) {
    const d = halfToFloat(view.getUint16(b * bb, true));
    for (let j = 0; j < QK; j++) {
      if (quant === "Q4_0") {
        const byte = data[b * bb + 2 + (j % 16)];
        out[b * QK + j] = ((j < 16 ? byte & 0xf : byte >>> 4) - 8) * d;
      } else {
        out[b * QK + j] = view.getInt8(b * bb + 2 + j) * d;
      }
    }
  }
  return out;
}

// ── metadata ──────────────────────────────────────────────────────────────────────────────────

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  model: { type?: string; vocab: Record<string, number>; merges?: Array<string | [string, string]> };
}

/** tokens / token types / merges as llama.cpp's "gpt2" (byte-level BPE) vocabulary wants them. */
export function ggufVocab(tokenizerJson: string, vocabSize: number): { tokens: string[]; types: number[]; merges: string[] } {
  const tok = JSON.parse(tokenizerJson) as TokenizerJson;
  if (tok.model?.type !== undefined && tok.model.type !== "BPE") throw new Error(`gguf-writer: tokenizer model is ${tok.model.type}, expected BPE`);
  const tokens: Array<string | undefined> = new Array(vocabSize);
  const types = new Array<number>(vocabSize).fill(TOKEN_UNUSED);
  for (const [text, id] of Object.entries(tok.model.vocab)) {
    if (id < vocabSize) {
      tokens[id] = text;
      types[id] = TOKEN_NORMAL;
    }
  }
  for (const added of tok.added_tokens ?? []) {
    if (added.id >= vocabSize) continue;
    tokens[added.id] = added.content;
    types[added.id] = added.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
  }
  const seen = new Map<string, number>();
  const out = tokens.map((t, i) => {
    const text = t ?? `[PAD${i}]`; // ids the tokenizer does not use, as llama.cpp's converter names them
    const prev = seen.get(text);
    if (prev !== undefined) throw new Error(`gguf-writer: token ${JSON.stringify(text)} has ids ${prev} and ${i}; llama.cpp rejects duplicates`);
    seen.set(text, i);
    return text;
  });
  const merges = (tok.model.merges ?? []).map((m) => (typeof m === "string" ? m : `${m[0]} ${m[1]}`));
  return { tokens: out, types, merges };
}

function metadata(config: Lfm2Config, dir: string, quant: GgufFormat, vocabRows: number, name: string): Array<[string, KvValue]> {
  const vocab = ggufVocab(readFileSync(join(dir, "tokenizer.json"), "utf8"), vocabRows);
  const arch = "lfm2";
  const kv: Array<[string, KvValue]> = [
    ["general.architecture", { t: "str", v: arch }],
    ["general.type", { t: "str", v: "model" }],
    ["general.name", { t: "str", v: name }],
    ["general.alignment", { t: "u32", v: ALIGNMENT }],
    ["general.file_type", { t: "u32", v: FILE_TYPE[quant] }],
    ["general.quantization_version", { t: "u32", v: 2 }],
    [`${arch}.vocab_size`, { t: "u32", v: vocabRows }],
    [`${arch}.context_length`, { t: "u32", v: config.maxPositionEmbeddings }],
    [`${arch}.embedding_length`, { t: "u32", v: config.hiddenSize }],
    [`${arch}.block_count`, { t: "u32", v: config.numLayers }],
    [`${arch}.feed_forward_length`, { t: "u32", v: config.ffDim }],
    [`${arch}.attention.head_count`, { t: "u32", v: config.numHeads }],
    // Per layer; 0 marks a short-conv layer (how llama.cpp tells the layer kinds apart).
    [`${arch}.attention.head_count_kv`, { t: "i32[]", v: config.layerTypes.map((k) => (k === "conv" ? 0 : config.numKvHeads)) }],
    [`${arch}.rope.freq_base`, { t: "f32", v: config.ropeTheta }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { t: "f32", v: config.normEps }],
    [`${arch}.shortconv.l_cache`, { t: "u32", v: config.convLCache }],
    ["tokenizer.ggml.model", { t: "str", v: "gpt2" }],
    ["tokenizer.ggml.pre", { t: "str", v: "lfm2" }],
    ["tokenizer.ggml.tokens", { t: "str[]", v: vocab.tokens }],
    ["tokenizer.ggml.token_type", { t: "i32[]", v: vocab.types }],
    ["tokenizer.ggml.merges", { t: "str[]", v: vocab.merges }],
  ];
  if (config.bosTokenId !== null) kv.push(["tokenizer.ggml.bos_token_id", { t: "u32", v: config.bosTokenId }]);
  if (config.eosTokenIds.length > 0) kv.push(["tokenizer.ggml.eos_token_id", { t: "u32", v: config.eosTokenIds[0] }]);
  kv.push(["tokenizer.ggml.padding_token_id", { t: "u32", v: config.padTokenId }]);
  kv.push(["tokenizer.ggml.add_bos_token", { t: "bool", v: config.bosTokenId !== null }]);
  kv.push(["tokenizer.ggml.add_eos_token", { t: "bool", v: false }]);
  const template = join(dir, "chat_template.jinja");
  if (existsSync(template)) kv.push(["tokenizer.chat_template", { t: "str", v: readFileSync(template, "utf8") }]);
  return kv;
}

// ── writer ────────────────────────────────────────────────────────────────────────────────────

export interface GgufWriteResult {
  path: string;
  bytes: number;
  tensors: number;
  /** Bytes of quantised 2-D weights (token embedding included). */
  quantizedBytes: number;
}

/** Elements read and converted per chunk (~16 MB of float32). */
const CHUNK_ELEMENTS = 1 << 22;

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done);
}

/**
 * Writes `outPath` (via a temporary file renamed at the end) from the checkpoint in `dir`.
 * `quant` applies to every 2-D matrix; 1-D norms and the conv kernel stay F32.
 */
export interface GgufWriteOptions {
  /** general.name. */
  name?: string;
  onProgress?: (done: number, total: number) => void;
  /**
   * With format "F32": store each 2-D matrix as float32 after a quantise → dequantise round trip
   * through this format (the weights a Q4_0 / Q8_0 file holds, computed in float; for checks).
   */
  roundTrip?: GgufQuant;
}

export function writeLfm2Gguf(dir: string, outPath: string, quant: GgufFormat, opts: GgufWriteOptions = {}): GgufWriteResult {
  const config = loadLfm2Config(dir);
  const ckpt = Checkpoint.open(dir);
  const tmp = `${outPath}.tmp-${process.pid}`;
  let fd: number | null = null;
  const sourceFds = new Map<string, number>();
  try {
    const tensors = planTensors(ckpt, quant);
    const embed = tensors.find((t) => t.ggufName === "token_embd.weight");
    if (!embed) throw new Error("gguf-writer: the checkpoint has no model.embed_tokens.weight");
    const vocabRows = embed.ne[1];

    const head = new Bytes();
    const kv = metadata(config, dir, quant, vocabRows, opts.name ?? `LFM2 (${config.hiddenSize}d × ${config.numLayers})`);
    head.u8(0x47); // "GGUF"
    head.u8(0x47);
    head.u8(0x55);
    head.u8(0x46);
    head.u32(GGUF_VERSION);
    head.u64(tensors.length);
    head.u64(kv.length);
    for (const [key, value] of kv) writeKv(head, key, value);
    for (const t of tensors) {
      head.str(t.ggufName);
      head.u32(t.ne.length);
      for (const n of t.ne) head.u64(n);
      head.u32(t.type);
      head.u64(t.offset);
    }
    head.zeros(padTo(head.length, ALIGNMENT) - head.length);

    fd = openSync(tmp, "w");
    writeAll(fd, head.bytes());
    const zeros = new Uint8Array(ALIGNMENT);
    let quantizedBytes = 0;
    tensors.forEach((t, index) => {
      const src = t.source;
      let sfd = sourceFds.get(src.file);
      if (sfd === undefined) {
        sfd = openSync(src.file, "r");
        sourceFds.set(src.file, sfd);
      }
      const elementBytes = (src.end - src.start) / t.ne.reduce((a, b) => a * b, 1);
      const rowLength = t.ne[0];
      const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / rowLength));
      let written = 0;
      for (let r = 0; r < rows; r += rowsPerChunk) {
        const n = Math.min(rowsPerChunk, rows - r) * rowLength;
        const raw = new Uint8Array(n * elementBytes);
        const position = src.start + r * rowLength * elementBytes;
        let got = 0;
        while (got < raw.length) {
          const k = readSync(sfd, raw, got, raw.length - got, position + got);
          if (k === 0) throw new Error(`gguf-writer: ${src.file} ended inside tensor ${src.name}`);
          got += k;
        }
        const x = decodeFloat32(raw, src.dtype);
        let out: Uint8Array;
        if (t.type === GGML_Q4_0) out = quantizeQ4_0(x);
        else if (t.type === GGML_Q8_0) out = quantizeQ8_0(x);
        else {
          const values = opts.roundTrip && t.ne.length === 2 && !t.ggufName.endsWith("shortconv.conv.weight") ? roundTrip(opts.roundTrip, x) : x;
          out = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
        }
        writeAll(fd as number, out);
        written += out.length;
      }
      if (written !== t.bytes) throw new Error(`gguf-writer: wrote ${written} bytes for ${t.ggufName}, planned ${t.bytes}`);
      if (t.type !== GGML_F32) quantizedBytes += t.bytes;
      const pad = padTo(t.bytes, ALIGNMENT) - t.bytes;
      if (pad > 0) writeAll(fd as number, zeros.subarray(0, pad));
      opts.onProgress?.(index + 1, tensors.length);
    });
    const bytes = fstatSync(fd).size;
    fsyncSync(fd); // on disk before it is used: no write-back competing with whatever runs next
    closeSync(fd);
    fd = null;
    renameSync(tmp, outPath);
    return { path: outPath, bytes, tensors: tensors.length, quantizedBytes };
  } catch (e) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    for (const s of sourceFds.values()) closeSync(s);
    ckpt.close();
  }
}

/** The GGUF for checkpoint folder `dir` at `quant`, next to the folder; written on first use. */
export function cachedLfm2Gguf(dir: string, quant: GgufQuant, opts: GgufWriteOptions = {}): string {
  const path = `${resolve(dir)}.gguf-v${GGUF_WRITER_VERSION}.${quant}.gguf`;
  if (!existsSync(path)) writeLfm2Gguf(dir, path, quant, opts);
  return path;
}

// ── reader (for checks) ───────────────────────────────────────────────────────────────────────

export interface GgufInfo {
  version: number;
  metadata: Map<string, unknown>;
  tensors: Array<{ name: string; ne: number[]; type: number; offset: number }>;
  dataStart: number;
}

/** Parses a GGUF file's header, metadata and tensor table (reads the whole header into memory). */
export function readGgufInfo(path: string): GgufInfo {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const buf = new Uint8Array(Math.min(size, 64 << 20));
    readSync(fd, buf, 0, buf.length, 0);
    const view = new DataView(buf.buffer);
    let p = 0;
    const need = (n: number) => {
      if (p + n > buf.length) throw new Error(`readGgufInfo: header larger than ${buf.length} bytes`);
    };
    const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
    const u64 = () => (need(8), (p += 8), Number(view.getBigUint64(p - 8, true)));
    const str = () => {
      const n = u64();
      need(n);
      p += n;
      return new TextDecoder().decode(buf.subarray(p - n, p));
    };
    const scalar = (type: number): unknown => {
      switch (type) {
        case 0: need(1); return buf[p++];
        case 1: need(1); return view.getInt8(p++);
        case 2: need(2); p += 2; return view.getUint16(p - 2, true);
        case 3: need(2); p += 2; return view.getInt16(p - 2, true);
        case 4: return u32();
        case 5: need(4); p += 4; return view.getInt32(p - 4, true);
        case 6: need(4); p += 4; return view.getFloat32(p - 4, true);
        case 7: need(1); return buf[p++] !== 0;
        case 8: return str();
        case 10: return u64();
        case 11: need(8); p += 8; return Number(view.getBigInt64(p - 8, true));
        case 12: need(8); p += 8; return view.getFloat64(p - 8, true);
        default: throw new Error(`readGgufInfo: unknown value type ${type}`);
      }
    };
    if (new TextDecoder().decode(buf.subarray(0, 4)) !== "GGUF") throw new Error(`${path} is not a GGUF file`);
    p = 4;
    const version = u32();
    const nTensors = u64();
    const nKv = u64();
    const metadata = new Map<string, unknown>();
    for (let i = 0; i < nKv; i++) {
      const key = str();
      const type = u32();
      if (type === T_ARRAY) {
        const et = u32();
        const n = u64();
        const arr: unknown[] = [];
        for (let j = 0; j < n; j++) arr.push(scalar(et));
        metadata.set(key, arr);
      } else metadata.set(key, scalar(type));
    }
    const tensors: GgufInfo["tensors"] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = str();
      const nd = u32();
      const ne: number[] = [];
      for (let j = 0; j < nd; j++) ne.push(u64());
      tensors.push({ name, ne, type: u32(), offset: u64() });
    }
    const alignment = (metadata.get("general.alignment") as number | undefined) ?? ALIGNMENT;
    return { version, metadata, tensors, dataStart: padTo(p, alignment) };
  } finally {
    closeSync(fd);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dir, out, quant] = process.argv.slice(2);
  if (!dir || !out || (quant !== "Q4_0" && quant !== "Q8_0" && quant !== "F32")) {
    process.stderr.write("usage: node bin/run-ts.mjs bench/gguf-writer.ts CHECKPOINT_DIR OUT.gguf Q4_0|Q8_0|F32\n");
    process.exit(2);
  }
  const t0 = performance.now();
  const r = writeLfm2Gguf(dir, out, quant, { onProgress: (d, n) => process.stderr.isTTY && process.stderr.write(`\r${d}/${n} tensors`) });
  process.stderr.write(`\nwrote ${r.path}: ${(r.bytes / 1e6).toFixed(1)} MB, ${r.tensors} tensors, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
