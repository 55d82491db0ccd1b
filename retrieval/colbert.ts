/**
 * LFM2-ColBERT encoder: a PyLate folder → one L2-normalised vector per kept token, matching
 * PyLate `ColBERT.encode(texts, is_query=…)` (see colbert-tokenizer.ts for the token layout and
 * colbert-graph.ts for the graph).
 *
 * Batches are right-padded. LFM2 is causal (short conv and attention), so real tokens never see
 * the padding: a text's vectors do not depend on what it is batched with. Padding and
 * non-attended expansion positions are masked in the conv and in attention in every batch, as HF
 * does for batches of more than one (`apply_mask_to_padding_states`; HF skips that mask for a
 * batch of one, which only changes the vectors of non-attended expansion tokens). Positions are
 * 0…S−1 for every row, as `Lfm2Model` numbers them without `position_ids`.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import { ChatTemplate } from "../text-core/chat.ts";
import { type Lfm2Config, loadLfm2Config, readConfigJson } from "../text-core/config.ts";
import { LfmError } from "../text-core/errors.ts";
import { builderFingerprint } from "../text-core/graph-cache.ts";
import { type Precision, precisionOption } from "../text-core/graph/precision.ts";
import type { WeightSource } from "../text-core/graph/weights.ts";
import { EmbeddingTable } from "../text-core/embeddings.ts";
import { findTextPrefix, lfm2GraphIO, type Lfm2GraphIO, pastConvName, pastKeyName, pastValueName } from "../text-core/lfm2.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import { checkpointWeights, openLfm2Graph } from "../text-core/model.ts";
import { Checkpoint } from "../text-core/checkpoint.ts";
import { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import { buildColbertGraph, type DenseLayer, EMBEDDINGS_OUTPUT } from "./colbert-graph.ts";
import { type ColbertInput, ColbertTokenizer } from "./colbert-tokenizer.ts";
import { type PylateFolder, type PylateSettings, loadPylateFolder } from "./pylate-config.ts";

/** The vectors of one text: `rows` kept tokens × `dim`, row-major, each row L2-normalised. */
export interface TokenEmbeddings {
  rows: number;
  dim: number;
  data: Float32Array;
}

export interface ColbertLoadOptions {
  /**
   * Backbone MatMul precision: "q8" (default), "q4", or "fp32" (matches PyLate). Encoding is all
   * prompt, where onnxruntime's 8-bit integer GEMM is the fastest kernel: at the LFM2-ColBERT-350M
   * shape q8 encodes 45% more documents per second than q4 in the same memory (bench:colbert).
   */
  precision?: Precision;
  /** Intra-op threads (default: physical cores). */
  threads?: number;
  /** Where built graphs are cached; `false` builds in a temporary folder removed after loading. */
  cacheDir?: string | false;
  onProgress?: (stage: string) => void;
}

export interface EncodeDocumentsOptions {
  signal?: AbortSignal;
  /**
   * Texts per model run (default 1). On a CPU one text per run is the fastest and the leanest:
   * at the 350M shape, 16 passages of 250–512 tokens encode at 0.81 documents/s one at a time
   * (peak RSS 512 MB) against 0.58 in batches of 16 (1928 MB): a text is already a large GEMM,
   * and a batch only adds activation memory. Batches are grouped by length, so little is padding.
   */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** See `ColbertLoadOptions.precision`. */
export const DEFAULT_COLBERT_PRECISION: Precision = "q8";

const QUERY_BATCH = 32;
const DEFAULT_DOCUMENT_BATCH = 1;

/** The graph's own source is part of the cache key, as text-core's builder sources are. */
const GRAPH_SOURCES = ["colbert-graph"];

export class ColbertEncoder {
  /** Width of every output vector (the last Dense layer's `out_features`). */
  readonly dim: number;

  private constructor(
    readonly dir: string,
    readonly config: Lfm2Config,
    readonly tokenizer: ColbertTokenizer,
    /** The backbone's MatMul precision. */
    readonly precision: Precision,
    private readonly session: ort.InferenceSession,
    /** Token-embedding rows, looked up outside the graph as text-core does (see embeddings.ts). */
    private readonly embeddings: EmbeddingTable,
    private readonly io: Lfm2GraphIO,
    folder: PylateFolder,
  ) {
    this.dim = folder.dense[folder.dense.length - 1].outFeatures;
  }

  /** PyLate's resolved settings (prefixes, lengths, expansion, skiplist). */
  get settings(): PylateSettings {
    return this.tokenizer.settings;
  }

  /** Loads a PyLate ColBERT folder (or an HF cache folder of one); builds or reuses the cached graph. */
  static async load(path: string, opts: ColbertLoadOptions = {}): Promise<ColbertEncoder> {
    const progress = opts.onProgress ?? (() => {});
    const dir = resolvePylateDir(path);
    const folder = loadPylateFolder(dir);
    const raw = readConfigJson(folder.backboneDir);
    if (raw.is_causal === false || raw.use_bidirectional_attention === true) {
      throw new LfmError(
        "UNKNOWN_ARCHITECTURE",
        `${join(folder.backboneDir, "config.json")} declares a bidirectional backbone (LFM2.5-ColBERT style); only the causal LFM2 backbone of LFM2-ColBERT-350M is supported.`,
      );
    }
    const config = loadLfm2Config(folder.backboneDir);
    const { queryLength, documentLength } = folder.settings;
    if (Math.max(queryLength, documentLength) > config.maxPositionEmbeddings) {
      throw new LfmError("CONFIG_INVALID", `config_sentence_transformers.json lengths (${queryLength}/${documentLength}) exceed the backbone's context of ${config.maxPositionEmbeddings}.`);
    }
    const tokenizer = await Lfm2Tokenizer.fromDir(folder.backboneDir);
    const colbertTokenizer = new ColbertTokenizer(tokenizer, {
      settings: folder.settings,
      inputFormat: folder.inputFormat,
      lowercase: folder.lowercase,
      template: folder.inputFormat.kind === "message" ? ChatTemplate.fromTokenizer(tokenizer) : undefined,
      maskToken: maskTokenOf(folder.backboneDir),
      vocabSize: config.vocabSize,
    });
    const precision = precisionOption(opts.precision, DEFAULT_COLBERT_PRECISION);
    const { session, embeddings } = await openSession(folder, config, precision, opts, progress);
    const io = lfm2GraphIO(config, { precision, head: "hidden", exposeHidden: false });
    return new ColbertEncoder(dir, config, colbertTokenizer, precision, session, embeddings, io, folder);
  }

  /** PyLate's query input ids: BOS, prefix, text, expansion tokens up to `query_length`. */
  tokenizeQuery(text: string): number[] {
    return this.tokenizer.query(text).ids;
  }

  /** PyLate's document input ids: BOS, prefix, text (skiplist tokens included; their vectors are dropped). */
  tokenizeDocument(text: string): number[] {
    return this.tokenizer.document(text).ids;
  }

  /** One vector per query position (`query_length` of them with query expansion). */
  async encodeQueries(texts: string[], opts: { signal?: AbortSignal } = {}): Promise<TokenEmbeddings[]> {
    const inputs = texts.map((t, i) => this.tokenizer.query(checkText(t, "query", i)));
    return this.encode(inputs, QUERY_BATCH, opts);
  }

  /** One vector per kept document token (padding and skiplist tokens dropped). */
  async encodeDocuments(texts: string[], opts: EncodeDocumentsOptions = {}): Promise<TokenEmbeddings[]> {
    const batch = opts.batchSize ?? DEFAULT_DOCUMENT_BATCH;
    if (!Number.isInteger(batch) || batch < 1) throw new LfmError("INVALID_ARGUMENT", `batchSize must be a positive integer, got ${batch}.`);
    const inputs = texts.map((t, i) => this.tokenizer.document(checkText(t, "document", i)));
    return this.encode(inputs, batch, opts);
  }

  async release(): Promise<void> {
    this.embeddings.close();
    await this.session.release();
  }

  /** Runs the inputs longest first in batches of similar length; results in input order. */
  private async encode(inputs: ColbertInput[], batchSize: number, opts: EncodeDocumentsOptions): Promise<TokenEmbeddings[]> {
    const order = inputs.map((_, i) => i).sort((a, b) => inputs[b].ids.length - inputs[a].ids.length);
    const out = new Array<TokenEmbeddings>(inputs.length);
    for (let start = 0; start < order.length; start += batchSize) {
      if (opts.signal?.aborted) throw new LfmError("ABORTED", "encoding was cancelled.");
      const chunk = order.slice(start, start + batchSize);
      const vectors = await this.run(chunk.map((i) => inputs[i]));
      chunk.forEach((i, k) => (out[i] = vectors[k]));
      opts.onProgress?.(Math.min(start + batchSize, order.length), order.length);
    }
    return out;
  }

  /** One model run over right-padded inputs; returns each input's kept rows. */
  private async run(batch: ColbertInput[]): Promise<TokenEmbeddings[]> {
    const B = batch.length;
    const S = Math.max(...batch.map((x) => x.ids.length));
    const D = this.config.hiddenSize;
    const embeds = new Float32Array(B * S * D);
    const mask = new BigInt64Array(B * S);
    const positions = new BigInt64Array(B * S);
    batch.forEach((x, b) => {
      const bad = x.ids.find((id) => id >= this.config.vocabSize);
      if (bad !== undefined) {
        throw new LfmError("TOKENIZER_INVALID", `token id ${bad} is outside the model's ${this.config.vocabSize}-row embedding table; the tokenizer does not belong to these weights.`);
      }
      // Padding rows hold the expansion token, as PyLate pads with it (masked, so only for form).
      const row = [...x.ids, ...new Array<number>(S - x.ids.length).fill(this.tokenizer.expansionId)];
      this.embeddings.lookup(row, embeds, b * S * D);
      x.mask.forEach((m, s) => (mask[b * S + s] = BigInt(m)));
      for (let s = 0; s < S; s++) positions[b * S + s] = BigInt(s);
    });
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor("float32", embeds, [B, S, D]),
      attention_mask: new ort.Tensor("int64", mask, [B, S]),
      position_ids: new ort.Tensor("int64", positions, [B, S]),
      num_logits_to_keep: new ort.Tensor("int64", BigInt64Array.from([BigInt(S)]), [1]),
    };
    // A fresh sequence: zero conv windows (the causal conv's left padding) and empty KV caches.
    const window = this.config.convLCache - 1;
    for (const i of this.io.convLayers) feeds[pastConvName(i)] = new ort.Tensor("float32", new Float32Array(B * window * D), [B, window, D]);
    const emptyKv = new ort.Tensor("float32", new Float32Array(0), [B, this.config.numKvHeads, 0, this.config.headDim]);
    for (const i of this.io.attentionLayers) feeds[pastKeyName(i)] = feeds[pastValueName(i)] = emptyKv;

    let result: ort.InferenceSession.ReturnType;
    try {
      result = await this.session.run(feeds, [EMBEDDINGS_OUTPUT]);
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while encoding: ${(e as Error).message}`, { cause: e });
    }
    const all = result[EMBEDDINGS_OUTPUT].data as Float32Array; // [B, S, dim]
    const dim = this.dim;
    return batch.map((x, b) => {
      const rows = x.keep.reduce((n, k) => n + (k ? 1 : 0), 0);
      const data = new Float32Array(rows * dim);
      let r = 0;
      x.keep.forEach((kept, s) => {
        if (kept) data.set(all.subarray((b * S + s) * dim, (b * S + s + 1) * dim), r++ * dim);
      });
      return { rows, dim, data };
    });
  }
}

/** Loads a PyLate ColBERT folder: `ColbertEncoder.load`. */
export function loadColbert(path: string, opts: ColbertLoadOptions = {}): Promise<ColbertEncoder> {
  return ColbertEncoder.load(path, opts);
}

function checkText(text: unknown, kind: "query" | "document", index: number): string {
  if (typeof text !== "string") throw new LfmError("INVALID_ARGUMENT", `${kind} ${index} is not a string (${typeof text}).`);
  if (text.trim() === "") {
    throw new LfmError("EMPTY_TEXT", `${kind} ${index} is empty: there is nothing to encode (it would match everything alike). Drop it or give it some text.`);
  }
  return text;
}

/** A folder with modules.json as given, else the HF-cache resolution of text-core (a snapshot of a PyLate repo). */
function resolvePylateDir(path: string): string {
  if (existsSync(join(path, "modules.json"))) return path;
  return resolveModelDir(path);
}

/** `mask_token` of tokenizer_config.json (a string or an AddedToken dict), if any. */
function maskTokenOf(dir: string): string | undefined {
  try {
    const raw = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    const mask = raw.mask_token;
    if (typeof mask === "string") return mask;
    if (typeof mask === "object" && mask !== null && typeof (mask as { content?: unknown }).content === "string") return (mask as { content: string }).content;
  } catch {
    // Lfm2Tokenizer.fromDir has already reported a missing or broken tokenizer_config.json.
  }
  return undefined;
}

/** A Dense layer's file, seen under the graph names `<path>.linear.weight`, …. */
function denseWeights(path: string, ck: Checkpoint): WeightSource {
  const inner = checkpointWeights(ck);
  const local = (name: string) => name.slice(path.length + 1);
  return {
    has: (name) => inner.has(local(name)),
    shape: (name) => inner.shape(local(name)),
    readFloat32: (name) => inner.readFloat32(local(name)),
  };
}

/** Builds (or finds in the cache) the ColBERT graph and opens an onnxruntime session on it. */
async function openSession(
  folder: PylateFolder,
  config: Lfm2Config,
  precision: Precision,
  opts: ColbertLoadOptions,
  progress: (stage: string) => void,
): Promise<{ session: ort.InferenceSession; embeddings: EmbeddingTable }> {
  const checkpoints: Checkpoint[] = [];
  try {
    const backbone = Checkpoint.open(folder.backboneDir);
    checkpoints.push(backbone);
    const dense: DenseLayer[] = folder.dense.map((spec) => {
      const ck = Checkpoint.open(dirname(spec.weightsFile));
      checkpoints.push(ck);
      return { spec, weights: denseWeights(spec.path, ck) };
    });
    const weights = checkpointWeights(backbone);
    const prefix = findTextPrefix(weights);
    const files = [
      join(folder.backboneDir, "config.json"),
      ...backbone.files,
      ...folder.dense.flatMap((d) => [join(folder.dir, d.path, "config.json"), d.weightsFile]),
    ];
    const { session, embeddings } = await openLfm2Graph({
      kind: "colbert",
      files,
      options: { precision, graph: builderFingerprint(import.meta.dirname, GRAPH_SOURCES) },
      build: () => buildColbertGraph(config, weights, prefix, dense, precision).builder,
      vocabSize: config.vocabSize,
      hiddenSize: config.hiddenSize,
      cacheDir: opts.cacheDir,
      threads: opts.threads,
      progress,
    });
    return { session, embeddings };
  } finally {
    for (const ck of checkpoints) ck.close();
  }
}
