/**
 * LFM2-Audio's audio head (liquid-audio `LFM2AudioModel._sample_audio_frame`): from the LM's last
 * hidden state h, one Mimi frame of `codebooks` codes, decoded one codebook at a time by a small
 * transformer running over the codebook axis with its own KV cache:
 *
 *   d = depth_linear(h).reshape(codebooks, dim)
 *   for k in 0..codebooks-1:
 *     y   = depthformer(d[k] + depth_embeddings[k-1].embedding[c_{k-1}])   (position k; 0 for k = 0)
 *     c_k = sample(depth_embeddings[k].to_logits(RMSNorm_k(y)))            (2049 classes, 2048 = end of audio)
 *
 * The depthformer is liquid-audio's `StandardBlock(MHA(dim))` stack: pre-RMSNorm GQA attention
 * (32 heads, 8 KV heads, per-head q/k RMSNorm, RoPE θ=1e6 on interleaved pairs) and SwiGLU, no
 * final norm. Built from the shared blocks over a renamed view of the weights
 * (`depthformerWeights`): q/k rows reordered so the interleaved-pair RoPE becomes the blocks'
 * rotate-half RoPE. Attention is spelled out (`depthAttention`) rather than the shared
 * `gqaAttention`: onnxruntime's GroupQueryAttention needs head widths that are multiples of 8, and
 * one query over at most `codebooks` keys needs no fused kernel.
 *
 * One graph runs one codebook step. The per-codebook parts (a slice of depth_linear, the output
 * norm and head) are selected by the `codebook` input without copying weights: each one's input is
 * sliced to one row for the selected codebook and to zero rows for the others, so only one of them
 * does any work. The embedding rows fed back (`prev_embedding`) and the LM-side frame embedding
 * (Σ_k audio_embedding[c_k + 2049·k]) are table lookups, read from disk like text-core's token
 * embeddings (`embeddings.ts`).
 */
import type { DepthformerConfig } from "./audio-config.ts";
import { writeEmbeddingTable } from "../text-core/embeddings.ts";
import { ElemType, GraphBuilder } from "../text-core/graph/builder.ts";
import { type RopeTables, applyRope, interleavedToRotateHalf, rmsNorm, ropeTables, swiglu } from "../text-core/graph/blocks.ts";
import { linear } from "../text-core/graph/linear.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { type BuildContext, type WeightSource, expectShape } from "../text-core/graph/weights.ts";

/** Side files of the depthformer graph: the stacked codebook embeddings and the LM's audio embedding. */
export const DEPTH_EMBEDDINGS_FILE = "depth_embeddings.bin";
export const AUDIO_EMBEDDINGS_FILE = "audio_embedding.bin";

export const depthPastKeyName = (i: number) => `past_key_values.${i}.key`;
export const depthPastValueName = (i: number) => `past_key_values.${i}.value`;
export const depthNewKeyName = (i: number) => `new_keys.${i}`;
export const depthNewValueName = (i: number) => `new_values.${i}`;

/** What the audio head is built from: the depthformer block of the config plus the sizes around it. */
export interface AudioHeadShape {
  depthformer: DepthformerConfig;
  codebooks: number;
  /** Codes per codebook incl. end of audio (2049). */
  audioVocabSize: number;
  /** LM hidden width. */
  lmHidden: number;
}

/**
 * The checkpoint as the blocks want it. Virtual names (read from the real ones):
 * `depthformer.layers.i.attn.{q,k,v,out}_proj.weight`, `…attn.{q,k}_layernorm.weight`,
 * `depth_linear.k.{weight,bias}` (codebook k's rows), `depth_embeddings.stacked` (all codebooks'
 * embedding rows, codebook after codebook).
 */
export function depthformerWeights(w: WeightSource, shape: AudioHeadShape): WeightSource {
  const { dim, numHeads, numKvHeads, headDim } = shape.depthformer;
  const qRows = numHeads * headDim;
  const kvRows = numKvHeads * headDim;
  const rowsOf = (m: Float32Array, cols: number, start: number, count: number) => m.slice(start * cols, (start + count) * cols);
  const permuteHeads = (m: Float32Array, cols: number, heads: number) => interleavedToRotateHalf(m, cols, heads, headDim);
  const vocab = shape.audioVocabSize;
  const readRows = (name: string, cols: number, start: number, count: number) =>
    w.readFloat32Rows ? w.readFloat32Rows(name, start, count) : rowsOf(w.readFloat32(name), cols, start, count);

  type Virtual = { shape: number[]; read: () => Float32Array; rows?: (start: number, count: number) => Float32Array };
  const virtual = (name: string): Virtual | undefined => {
    let m = /^depthformer\.layers\.(\d+)\.attn\.(q|k|v|out)_proj\.weight$/.exec(name);
    if (m) {
      const layer = `depthformer.layers.${m[1]}.operator`;
      if (m[2] === "out") return { shape: w.shape(`${layer}.out_proj.weight`), read: () => w.readFloat32(`${layer}.out_proj.weight`) };
      const qkv = `${layer}.qkv_proj.weight`;
      const [start, count, heads] = m[2] === "q" ? [0, qRows, numHeads] : m[2] === "k" ? [qRows, kvRows, numKvHeads] : [qRows + kvRows, kvRows, 0];
      return {
        shape: [count, dim],
        read: () => {
          const rows = readRows(qkv, dim, start, count);
          return heads > 0 ? permuteHeads(rows, dim, heads) : rows;
        },
      };
    }
    m = /^depthformer\.layers\.(\d+)\.attn\.(q|k)_layernorm\.weight$/.exec(name);
    if (m) {
      const stored = `depthformer.layers.${m[1]}.operator.bounded_attention.${m[2]}_layernorm.weight`;
      return { shape: [headDim], read: () => permuteHeads(w.readFloat32(stored), 1, 1) };
    }
    m = /^depth_linear\.(\d+)\.(weight|bias)$/.exec(name);
    if (m) {
      const k = Number(m[1]);
      const stored = `depth_linear.${m[2]}`;
      const cols = m[2] === "weight" ? shape.lmHidden : 1;
      const read = m[2] === "weight" ? () => readRows(stored, cols, k * dim, dim) : () => rowsOf(w.readFloat32(stored), 1, k * dim, dim);
      return { shape: m[2] === "weight" ? [dim, shape.lmHidden] : [dim], read };
    }
    if (name === "depth_embeddings.stacked") {
      // Rows [start, start + count) of the codebook tables laid end to end.
      const rows = (start: number, count: number) => {
        const out = new Float32Array(count * dim);
        for (let r = start; r < start + count; ) {
          const k = Math.floor(r / vocab);
          const n = Math.min(start + count, (k + 1) * vocab) - r;
          out.set(readRows(`depth_embeddings.${k}.embedding.weight`, dim, r - k * vocab, n), (r - start) * dim);
          r += n;
        }
        return out;
      };
      return { shape: [shape.codebooks * vocab, dim], read: () => rows(0, shape.codebooks * vocab), rows };
    }
    return undefined;
  };
  const cache = new Map<string, Virtual | undefined>();
  const find = (name: string) => {
    if (!cache.has(name)) cache.set(name, virtual(name));
    return cache.get(name);
  };
  return {
    has: (name) => find(name) !== undefined || w.has(name),
    shape: (name) => find(name)?.shape ?? w.shape(name),
    readFloat32: (name) => find(name)?.read() ?? w.readFloat32(name),
    readFloat32Rows: (name, start, count) => {
      const v = find(name);
      if (v?.rows) return v.rows(start, count);
      if (v) return rowsOf(v.read(), v.shape.slice(1).reduce((x, y) => x * y, 1), start, count);
      return readRows(name, w.shape(name).slice(1).reduce((x, y) => x * y, 1), start, count);
    },
    // The stacked table keeps the stored tables' value type (bf16 rows stay bf16 on disk).
    dtype: (name) => (name === "depth_embeddings.stacked" ? w.dtype?.("depth_embeddings.0.embedding.weight") : find(name) ? "F32" : w.dtype?.(name)) ?? "F32",
  };
}

/** Every stored tensor the audio head reads, with the shape the config implies. */
function checkShapes(w: WeightSource, shape: AudioHeadShape): void {
  const { dim, numHeads, numKvHeads, headDim, ffDim, layers, tie } = shape.depthformer;
  const V = shape.audioVocabSize;
  expectShape(w, "depth_linear.weight", [shape.codebooks * dim, shape.lmHidden], "codebooks·depthformer.dim × LM hidden");
  expectShape(w, "depth_linear.bias", [shape.codebooks * dim]);
  expectShape(w, "audio_embedding.embedding.weight", [shape.codebooks * V, shape.lmHidden], "codebooks·2049 × LM hidden");
  for (let i = 0; i < layers; i++) {
    const p = `depthformer.layers.${i}`;
    expectShape(w, `${p}.operator.qkv_proj.weight`, [(numHeads + 2 * numKvHeads) * headDim, dim], "fused q/k/v of 32 heads and 8 KV heads");
    expectShape(w, `${p}.operator.out_proj.weight`, [dim, dim]);
    expectShape(w, `${p}.operator.bounded_attention.q_layernorm.weight`, [headDim]);
    expectShape(w, `${p}.operator.bounded_attention.k_layernorm.weight`, [headDim]);
    expectShape(w, `${p}.operator_norm.weight`, [dim]);
    expectShape(w, `${p}.ffn_norm.weight`, [dim]);
    expectShape(w, `${p}.feed_forward.w1.weight`, [ffDim, dim], "SwiGLU width");
    expectShape(w, `${p}.feed_forward.w3.weight`, [ffDim, dim]);
    expectShape(w, `${p}.feed_forward.w2.weight`, [dim, ffDim]);
  }
  for (let k = 0; k < shape.codebooks; k++) {
    expectShape(w, `depth_embeddings.${k}.embedding.weight`, [V, dim]);
    expectShape(w, `depth_embeddings.${k}.embedding_norm.weight`, [dim]);
    if (!tie) expectShape(w, `depth_embeddings.${k}.to_logits.weight`, [V, dim]);
  }
}

/**
 * Rows of `x` [1, width] for codebook `k` only: one row when the `codebook` input is k, none
 * otherwise (so a per-codebook weight does work only when selected).
 */
function selectRow(ctx: BuildContext, x: string, codebook: string, k: number, name: string): string {
  const { b } = ctx;
  const isK = b.op("Cast", [b.op("Equal", [codebook, b.constInt64([k])], `${name}.is_selected`)], `${name}.rows`, { to: ElemType.INT64 }); // [1]: 1 or 0
  return b.op("Slice", [x, b.constInt64([0]), isK, b.constInt64([0])], name);
}

/**
 * Self-attention of one new position over the cached ones (liquid-audio `BoundedAttention`): per-head
 * RMSNorm on q and k, RoPE at the position, query head h reading KV head ⌊h / (heads/kvHeads)⌋,
 * scale 1/√hd. Past K/V come in as [1, kvHeads, P, hd]; this step's rows leave as [1, 1, kvHeads·hd].
 */
function depthAttention(ctx: BuildContext, x: string, layer: number, shape: AudioHeadShape, rope: RopeTables): string {
  const { b } = ctx;
  const { numHeads: H, numKvHeads: Hkv, headDim: hd, normEps } = shape.depthformer;
  const p = `depthformer.layers.${layer}.attn`;
  const pastKey = b.input(depthPastKeyName(layer), ElemType.FLOAT, [1, Hkv, "past", hd]);
  const pastValue = b.input(depthPastValueName(layer), ElemType.FLOAT, [1, Hkv, "past", hd]);
  const heads = (value: string, n: number, name: string) => b.op("Reshape", [value, b.constInt64([0, 0, n, hd])], name); // [1, 1, n, hd]
  const q = heads(linear(ctx, x, `${p}.q_proj.weight`, `${p}.q_proj`), H, `${p}.q_heads`);
  const k = heads(linear(ctx, x, `${p}.k_proj.weight`, `${p}.k_proj`), Hkv, `${p}.k_heads`);
  const v = linear(ctx, x, `${p}.v_proj.weight`, depthNewValueName(layer)); // [1, 1, Hkv·hd]
  const qRot = applyRope(ctx, rmsNorm(ctx, q, `${p}.q_layernorm.weight`, normEps, `${p}.q_layernorm`), rope, hd, `${p}.q_rope`);
  const kRot = applyRope(ctx, rmsNorm(ctx, k, `${p}.k_layernorm.weight`, normEps, `${p}.k_layernorm`), rope, hd, `${p}.k_rope`);
  const kNew = b.op("Reshape", [kRot, b.constInt64([0, 0, -1])], depthNewKeyName(layer)); // [1, 1, Hkv·hd]
  b.output(kNew, depthNewKeyName(layer), ElemType.FLOAT, [1, 1, Hkv * hd]);
  b.output(v, depthNewValueName(layer), ElemType.FLOAT, [1, 1, Hkv * hd]);

  const asCacheRow = (value: string, name: string) => b.op("Reshape", [value, b.constInt64([1, Hkv, 1, hd])], name); // [1, Hkv, 1, hd]
  const keys = b.op("Concat", [pastKey, asCacheRow(kNew, `${p}.k_row`)], `${p}.keys`, { axis: 2 }); // [1, Hkv, T, hd]
  const values = b.op("Concat", [pastValue, asCacheRow(v, `${p}.v_row`)], `${p}.values`, { axis: 2 });
  const grouped = b.op("Reshape", [qRot, b.constInt64([1, Hkv, H / Hkv, hd])], `${p}.q_grouped`); // [1, Hkv, G, hd]
  const scores = b.op("Mul", [b.op("MatMul", [grouped, b.op("Transpose", [keys], `${p}.keys_t`, { perm: [0, 1, 3, 2] })], `${p}.qk`), b.constFloat(1 / Math.sqrt(hd))], `${p}.scores`); // [1, Hkv, G, T]
  const context = b.op("MatMul", [b.op("Softmax", [scores], `${p}.probs`, { axis: -1 }), values], `${p}.context_grouped`); // [1, Hkv, G, hd]
  return linear(ctx, b.op("Reshape", [context, b.constInt64([1, 1, H * hd])], `${p}.context`), `${p}.out_proj.weight`, `${p}.out_proj`);
}

export function buildDepthformerGraph(weights: WeightSource, shape: AudioHeadShape, precision: Precision): GraphBuilder {
  checkShapes(weights, shape);
  const w = depthformerWeights(weights, shape);
  const b = new GraphBuilder("depthformer");
  b.useDomain("com.microsoft", 1);
  const ctx: BuildContext = { b, weights: w, precision };
  const { dim, layers, headDim, normEps, ropeTheta } = shape.depthformer;
  const V = shape.audioVocabSize;

  const lmHidden = b.input("lm_hidden", ElemType.FLOAT, [1, shape.lmHidden]);
  const codebook = b.input("codebook", ElemType.INT64, [1]);
  const prevEmbedding = b.input("prev_embedding", ElemType.FLOAT, [1, dim]);
  const positionIds = b.input("position_ids", ElemType.INT64, [1, 1]);

  // d[k] = depth_linear rows of codebook k, applied to h; plus the previous codebook's embedding.
  const parts = Array.from({ length: shape.codebooks }, (_, k) =>
    linear(ctx, selectRow(ctx, lmHidden, codebook, k, `depth_linear.${k}.input`), `depth_linear.${k}.weight`, `depth_linear.${k}`, `depth_linear.${k}.bias`),
  );
  const depthIn = b.op("Concat", parts, "depth_linear", { axis: 0 }); // [1, dim]
  let h = b.op("Unsqueeze", [b.op("Add", [depthIn, prevEmbedding], "depthformer.input2d"), b.constInt64([0])], "depthformer.input"); // [1, 1, dim]

  const rope = ropeTables(ctx, positionIds, headDim, ropeTheta, "f32");
  for (let i = 0; i < layers; i++) {
    const p = `depthformer.layers.${i}`;
    const normed = rmsNorm(ctx, h, `${p}.operator_norm.weight`, normEps, `${p}.operator_norm`);
    h = b.op("Add", [h, depthAttention(ctx, normed, i, shape, rope)], `${p}.attn_residual`);
    h = b.op("Add", [h, swiglu(ctx, rmsNorm(ctx, h, `${p}.ffn_norm.weight`, normEps, `${p}.ffn_norm`), `${p}.feed_forward`)], `${p}.out`);
  }

  // Codebook k's head: to_logits(RMSNorm_k(y)); `tie` shares the embedding matrix.
  const y = b.op("Reshape", [h, b.constInt64([1, dim])], "depthformer.out"); // [1, dim]
  const codebookHeads = Array.from({ length: shape.codebooks }, (_, k) => {
    const p = `depth_embeddings.${k}`;
    const normed = rmsNorm(ctx, selectRow(ctx, y, codebook, k, `${p}.input`), `${p}.embedding_norm.weight`, normEps, `${p}.embedding_norm`);
    return linear(ctx, normed, shape.depthformer.tie ? `${p}.embedding.weight` : `${p}.to_logits.weight`, `${p}.to_logits`);
  });
  b.output(b.op("Concat", codebookHeads, "codebook_logits", { axis: 0 }), "logits", ElemType.FLOAT, [1, V]);

  const bf16 = (name: string) => w.dtype?.(name) === "BF16";
  const rows = { readFloat32Rows: (name: string, start: number, count: number) => (w.readFloat32Rows as NonNullable<WeightSource["readFloat32Rows"]>)(name, start, count) };
  b.sideFile(DEPTH_EMBEDDINGS_FILE, (fd) => writeEmbeddingTable(fd, rows, "depth_embeddings.stacked", shape.codebooks * V, dim, bf16("depth_embeddings.stacked")));
  b.sideFile(AUDIO_EMBEDDINGS_FILE, (fd) =>
    writeEmbeddingTable(fd, rows, "audio_embedding.embedding.weight", shape.codebooks * V, shape.lmHidden, bf16("audio_embedding.embedding.weight")),
  );
  return b;
}
