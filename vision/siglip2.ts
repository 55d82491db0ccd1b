/**
 * SigLIP2 NaFlex vision tower as ONNX graph blocks — matches HF `Siglip2VisionTransformer`
 * (no pooling head):
 *
 *   x = patch_embedding(patches) + resize(position_grid, hp × wp)     patches [crops, N, 3·P·P]
 *   for each layer:  x = x + out_proj(attn(layer_norm1(x)))           non-causal, padded keys masked
 *                    x = x + fc2(gelu_tanh(fc1(layer_norm2(x))))
 *   x = post_layernorm(x)                                            → last_hidden_state [crops, N, C]
 *
 * The position grid is resized as `F.interpolate(bilinear, align_corners=False, antialias=True)`
 * does. The weights of that resize depend only on (hp, wp), so they are computed here in plain
 * numbers (`positionResizeMatrix`) and enter the graph as an input: the graph multiplies them
 * with the learned grid.
 */
import { ElemType } from "../text-core/graph/builder.ts";
import { layerNorm } from "../text-core/graph/blocks.ts";
import { linear } from "../text-core/graph/linear.ts";
import { type BuildContext, expectShape, weight } from "../text-core/graph/weights.ts";
import type { Siglip2Config } from "./vl-config.ts";

/** The tower's graph inputs. */
export interface VisionTowerInputs {
  /** [crops, N, 3·P·P]: normalised patch rows, zero rows after each crop's hp·wp patches. */
  pixelValues: string;
  /** [crops, N] float: 1 for a real patch, 0 for padding. */
  patchMask: string;
  /** [crops, N, grid²]: `positionResizeMatrix` of each crop (zero rows for padding). */
  positionResize: string;
}

/**
 * PyTorch's antialiased linear resize weights along one axis (`_upsample_bilinear2d_aa`): output
 * i is centred at `scale·(i + ½)` in input coordinates, the triangle filter is widened by `scale`
 * when shrinking, taps outside the input are dropped and the rest renormalised. For growing
 * sizes this is plain half-pixel bilinear with edge clamping. Returns [outSize, inSize].
 */
export function antialiasedLinearWeights(inSize: number, outSize: number): Float64Array {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const invScale = scale >= 1 ? 1 / scale : 1;
  const w = new Float64Array(outSize * inSize);
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const t = Math.abs((j - center + 0.5) * invScale);
      const tap = t < 1 ? 1 - t : 0;
      w[i * inSize + j] = tap;
      total += tap;
    }
    if (total !== 0) for (let j = lo; j < hi; j++) w[i * inSize + j] /= total;
  }
  return w;
}

/**
 * [gridH·gridW, G²] weights that turn the G×G position grid (flattened y·G + x) into a
 * gridH×gridW grid (flattened row-major): the separable resize as one matrix, kron(Rh, Rw).
 */
export function positionResizeMatrix(gridH: number, gridW: number, G: number): Float32Array {
  const rh = antialiasedLinearWeights(G, gridH);
  const rw = antialiasedLinearWeights(G, gridW);
  const out = new Float32Array(gridH * gridW * G * G);
  for (let y = 0; y < gridH; y++) {
    for (let x = 0; x < gridW; x++) {
      const row = (y * gridW + x) * G * G;
      for (let i = 0; i < G; i++) {
        const a = rh[y * G + i];
        if (a === 0) continue;
        for (let j = 0; j < G; j++) out[row + i * G + j] = a * rw[x * G + j];
      }
    }
  }
  return out;
}

/** Every tower tensor the config implies (the layers the tower runs), checked before building. */
export function checkTowerShapes(ctx: BuildContext, cfg: Siglip2Config, prefix: string): void {
  const C = cfg.hiddenSize;
  const { weights } = ctx;
  const patchIn = cfg.numChannels * cfg.patchSize * cfg.patchSize;
  expectShape(weights, `${prefix}embeddings.patch_embedding.weight`, [C, patchIn], "hidden × channels·patch²");
  expectShape(weights, `${prefix}embeddings.patch_embedding.bias`, [C]);
  expectShape(weights, `${prefix}embeddings.position_embedding.weight`, [cfg.positionGridSize ** 2, C], "num_patches × hidden");
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `${prefix}encoder.layers.${i}`;
    for (const ln of ["layer_norm1", "layer_norm2"]) {
      expectShape(weights, `${p}.${ln}.weight`, [C]);
      expectShape(weights, `${p}.${ln}.bias`, [C]);
    }
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      expectShape(weights, `${p}.self_attn.${proj}.weight`, [C, C]);
      expectShape(weights, `${p}.self_attn.${proj}.bias`, [C]);
    }
    expectShape(weights, `${p}.mlp.fc1.weight`, [cfg.intermediateSize, C], "intermediate_size × hidden");
    expectShape(weights, `${p}.mlp.fc1.bias`, [cfg.intermediateSize]);
    expectShape(weights, `${p}.mlp.fc2.weight`, [C, cfg.intermediateSize]);
    expectShape(weights, `${p}.mlp.fc2.bias`, [C]);
  }
  expectShape(weights, `${prefix}post_layernorm.weight`, [C]);
  expectShape(weights, `${prefix}post_layernorm.bias`, [C]);
}

/** The tower on `inputs`; returns last_hidden_state [crops, N, C] (post_layernorm applied). */
export function siglip2Tower(ctx: BuildContext, cfg: Siglip2Config, prefix: string, inputs: VisionTowerInputs): string {
  const { b } = ctx;
  checkTowerShapes(ctx, cfg, prefix);
  const patches = linear(ctx, inputs.pixelValues, `${prefix}embeddings.patch_embedding.weight`, `${prefix}embeddings.patch_embedding`, `${prefix}embeddings.patch_embedding.bias`);
  const positions = b.op("MatMul", [inputs.positionResize, weight(ctx, `${prefix}embeddings.position_embedding.weight`)], `${prefix}embeddings.position_embedding`); // [crops, N, C]
  let x = b.op("Add", [patches, positions], `${prefix}embeddings`);

  // Additive key mask [crops, 1, 1, N]: 0 for real patches, a large negative number for padding.
  const maskBias = b.op("Unsqueeze", [b.op("Mul", [b.op("Sub", [inputs.patchMask, b.constFloat(1)], "attn.mask_minus_one"), b.constFloat(1e30)], "attn.mask_bias2d"), b.constInt64([1, 2])], "attn.mask_bias");

  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `${prefix}encoder.layers.${i}`;
    const attnIn = layerNorm(ctx, x, `${p}.layer_norm1`, cfg.layerNormEps, `${p}.layer_norm1`);
    x = b.op("Add", [x, siglip2SelfAttention(ctx, cfg, attnIn, `${p}.self_attn`, maskBias)], `${p}.attn_residual`);
    const mlpIn = layerNorm(ctx, x, `${p}.layer_norm2`, cfg.layerNormEps, `${p}.layer_norm2`);
    x = b.op("Add", [x, tanhGeluMlp(ctx, mlpIn, `${p}.mlp`)], `${p}.out`);
  }
  return layerNorm(ctx, x, `${prefix}post_layernorm`, cfg.layerNormEps, `${prefix}post_layernorm`);
}

/**
 * Bidirectional multi-head attention with biased q/k/v/out projections, padded keys masked
 * (`maskBias` [crops, 1, 1, N]). Plain MatMul/Softmax: any head size.
 */
export function siglip2SelfAttention(ctx: BuildContext, cfg: Siglip2Config, x: string, prefix: string, maskBias: string): string {
  const { b } = ctx;
  const { numHeads: H, headDim: hd } = cfg;
  const proj = (name: string) => linear(ctx, x, `${prefix}.${name}.weight`, `${prefix}.${name}`, `${prefix}.${name}.bias`);
  const heads = (value: string, name: string) => b.op("Reshape", [value, b.constInt64([0, 0, H, hd])], name); // [crops, N, H, hd]
  const q = b.op("Transpose", [heads(proj("q_proj"), `${prefix}.q_heads`)], `${prefix}.q`, { perm: [0, 2, 1, 3] }); // [crops, H, N, hd]
  const kT = b.op("Transpose", [heads(proj("k_proj"), `${prefix}.k_heads`)], `${prefix}.kT`, { perm: [0, 2, 3, 1] }); // [crops, H, hd, N]
  const v = b.op("Transpose", [heads(proj("v_proj"), `${prefix}.v_heads`)], `${prefix}.v`, { perm: [0, 2, 1, 3] }); // [crops, H, N, hd]
  const scores = b.op("MatMul", [b.op("Mul", [q, b.constFloat(1 / Math.sqrt(hd))], `${prefix}.q_scaled`), kT], `${prefix}.scores`); // [crops, H, N, N]
  const probs = b.op("Softmax", [b.op("Add", [scores, maskBias], `${prefix}.scores_masked`)], `${prefix}.probs`, { axis: -1 });
  const context = b.op("Transpose", [b.op("MatMul", [probs, v], `${prefix}.context_heads`)], `${prefix}.context_t`, { perm: [0, 2, 1, 3] });
  const merged = b.op("Reshape", [context, b.constInt64([0, 0, -1])], `${prefix}.context`); // [crops, N, C]
  return linear(ctx, merged, `${prefix}.out_proj.weight`, `${prefix}.out_proj`, `${prefix}.out_proj.bias`);
}

/** fc1 → gelu_pytorch_tanh (onnxruntime's FastGelu is exactly that formula) → fc2. */
function tanhGeluMlp(ctx: BuildContext, x: string, prefix: string): string {
  const h = linear(ctx, x, `${prefix}.fc1.weight`, `${prefix}.fc1`, `${prefix}.fc1.bias`);
  const act = ctx.b.op("FastGelu", [h], `${prefix}.gelu`, {}, "com.microsoft");
  return linear(ctx, act, `${prefix}.fc2.weight`, `${prefix}.fc2`, `${prefix}.fc2.bias`);
}

/** Graph input declarations for the tower (dims named for onnxruntime's shape checks). */
export function declareTowerInputs(ctx: BuildContext, cfg: Siglip2Config): VisionTowerInputs {
  const { b } = ctx;
  const patchIn = cfg.numChannels * cfg.patchSize * cfg.patchSize;
  return {
    pixelValues: b.input("pixel_values", ElemType.FLOAT, ["crops", "patches", patchIn]),
    patchMask: b.input("patch_mask", ElemType.FLOAT, ["crops", "patches"]),
    positionResize: b.input("position_resize", ElemType.FLOAT, ["crops", "patches", cfg.positionGridSize ** 2]),
  };
}
