/**
 * Tensor lists for the audio benchmark's random-weight checkpoints: the FastConformer encoder and
 * adapter of an LFM2-Audio config (the names and shapes `checkEncoderShapes` expects; the LM's come
 * from text-core's `lfm2TensorShapes`), and Kyutai's Mimi decoder (moshi naming, 24 kHz shape).
 * Transcription needs neither the depthformer nor the audio-out embeddings (`audioHeadTensorShapes`
 * adds them, for speech generation).
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Lfm2AudioConfig } from "../audio/audio-config.ts";
import { KYUTAI_MIMI_CONFIG, KYUTAI_MIMI_FILE } from "../audio/mimi-config.ts";
import { ADAPTER_PREFIX, ENCODER_PREFIX } from "../audio/fastconformer.ts";
import { writeSafetensors } from "./safetensors-writer.ts";
import { uniformNoise } from "./synthetic-checkpoint.ts";

export function audioTensorShapes(config: Lfm2AudioConfig): Array<[string, number[]]> {
  const { dModel: D, subsamplingChannels: C, ffDim, numHeads: H, headDim: dk, convKernelSize: K } = config.encoder;
  const p = ENCODER_PREFIX;
  const t: Array<[string, number[]]> = [];
  t.push([`${p}.pre_encode.conv.0.weight`, [C, 1, 3, 3]], [`${p}.pre_encode.conv.0.bias`, [C]]);
  for (let s = 1; s < config.encoder.subsamplingStages; s++) {
    const dw = 3 * s - 1;
    t.push([`${p}.pre_encode.conv.${dw}.weight`, [C, 1, 3, 3]], [`${p}.pre_encode.conv.${dw}.bias`, [C]]);
    t.push([`${p}.pre_encode.conv.${dw + 1}.weight`, [C, C, 1, 1]], [`${p}.pre_encode.conv.${dw + 1}.bias`, [C]]);
  }
  t.push([`${p}.pre_encode.out.weight`, [D, C * config.encoder.subsampledFeatures]], [`${p}.pre_encode.out.bias`, [D]]);
  for (let i = 0; i < config.encoder.numLayers; i++) {
    const l = `${p}.layers.${i}`;
    for (const norm of ["norm_feed_forward1", "norm_self_att", "norm_conv", "norm_feed_forward2", "norm_out"]) t.push([`${l}.${norm}.weight`, [D]], [`${l}.${norm}.bias`, [D]]);
    for (const ff of ["feed_forward1", "feed_forward2"]) {
      t.push([`${l}.${ff}.linear1.weight`, [ffDim, D]], [`${l}.${ff}.linear1.bias`, [ffDim]]);
      t.push([`${l}.${ff}.linear2.weight`, [D, ffDim]], [`${l}.${ff}.linear2.bias`, [D]]);
    }
    for (const proj of ["linear_q", "linear_k", "linear_v", "linear_out"]) t.push([`${l}.self_attn.${proj}.weight`, [D, D]], [`${l}.self_attn.${proj}.bias`, [D]]);
    t.push([`${l}.self_attn.linear_pos.weight`, [D, D]], [`${l}.self_attn.pos_bias_u`, [H, dk]], [`${l}.self_attn.pos_bias_v`, [H, dk]]);
    t.push([`${l}.conv.pointwise_conv1.weight`, [2 * D, D, 1]], [`${l}.conv.pointwise_conv1.bias`, [2 * D]]);
    t.push([`${l}.conv.depthwise_conv.weight`, [D, 1, K]], [`${l}.conv.depthwise_conv.bias`, [D]]);
    t.push([`${l}.conv.pointwise_conv2.weight`, [D, D, 1]], [`${l}.conv.pointwise_conv2.bias`, [D]]);
    for (const bn of ["weight", "bias", "running_mean", "running_var"]) t.push([`${l}.conv.batch_norm.${bn}`, [D]]);
  }
  const L = config.lfm.hiddenSize;
  t.push([`${ADAPTER_PREFIX}.0.weight`, [D]], [`${ADAPTER_PREFIX}.0.bias`, [D]]);
  t.push([`${ADAPTER_PREFIX}.1.weight`, [L, D]], [`${ADAPTER_PREFIX}.1.bias`, [L]]);
  t.push([`${ADAPTER_PREFIX}.3.weight`, [L, L]], [`${ADAPTER_PREFIX}.3.bias`, [L]]);
  return t;
}

/**
 * The audio head's tensors (depthformer, `depth_linear`, per-codebook `depth_embeddings`) and the
 * audio-out embedding table (`audio_embedding`): what speech generation reads besides the LM.
 */
export function audioHeadTensorShapes(config: Lfm2AudioConfig): Array<[string, number[]]> {
  const { dim, numHeads, numKvHeads, headDim, ffDim, layers, tie } = config.depthformer;
  const V = config.audioVocabSize;
  const L = config.lfm.hiddenSize;
  const t: Array<[string, number[]]> = [];
  t.push(["depth_linear.weight", [config.codebooks * dim, L]], ["depth_linear.bias", [config.codebooks * dim]]);
  t.push(["audio_embedding.embedding.weight", [config.codebooks * V, L]], ["audio_embedding.embedding_norm.weight", [L]], ["audio_embedding.to_logits.weight", [config.codebooks * V, L]]);
  for (let i = 0; i < layers; i++) {
    const p = `depthformer.layers.${i}`;
    t.push([`${p}.operator.qkv_proj.weight`, [(numHeads + 2 * numKvHeads) * headDim, dim]], [`${p}.operator.out_proj.weight`, [dim, dim]]);
    t.push([`${p}.operator.bounded_attention.q_layernorm.weight`, [headDim]], [`${p}.operator.bounded_attention.k_layernorm.weight`, [headDim]]);
    t.push([`${p}.operator_norm.weight`, [dim]], [`${p}.ffn_norm.weight`, [dim]]);
    t.push([`${p}.feed_forward.w1.weight`, [ffDim, dim]], [`${p}.feed_forward.w3.weight`, [ffDim, dim]], [`${p}.feed_forward.w2.weight`, [dim, ffDim]]);
  }
  for (let k = 0; k < config.codebooks; k++) {
    t.push([`depth_embeddings.${k}.embedding.weight`, [V, dim]], [`depth_embeddings.${k}.embedding_norm.weight`, [dim]]);
    if (!tie) t.push([`depth_embeddings.${k}.to_logits.weight`, [V, dim]]);
  }
  return t;
}

/** Kyutai's Mimi file at its real shape with random float32 weights, written once into `dir`; returns its path. */
export function writeMimiCheckpoint(dir: string): string {
  const file = join(dir, KYUTAI_MIMI_FILE);
  if (existsSync(file)) return file;
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const tensors = mimiTensorShapes().map(([name, shape], i) => ({
    name,
    dtype: "F32" as const,
    shape,
    data: () => new Uint8Array(mimiRandomValues(name, shape, i + 1).buffer),
  }));
  writeSafetensors(tmp, tensors);
  renameSync(tmp, file);
  return file;
}

/** Random float32 values for a Mimi tensor: usage counts and norm gains near 1, layer scales 0.01, weights ~1/√fan-in. */
export function mimiRandomValues(name: string, shape: number[], seed: number): Float32Array {
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  const [offset, scale] = name.endsWith("cluster_usage") || (name.includes("norm") && name.endsWith(".weight")) ? [1, 0.1] : name.includes("layer_scale") ? [0.01, 0.005] : name.endsWith("embedding_sum") ? [0, 1] : shape.length === 1 ? [0, 0.01] : [0, 1 / Math.sqrt(fanIn)];
  return uniformNoise(shape.reduce((a, b) => a * b, 1), seed, offset, scale);
}

/** Kyutai's Mimi decoder side (split RVQ, upsampling, transformer, SEANet decoder), moshi names. */
export function mimiTensorShapes(): Array<[string, number[]]> {
  const c = KYUTAI_MIMI_CONFIG;
  const D = c.seanet.dimension;
  const q = c.quantizer;
  const tr = c.transformer;
  const t: Array<[string, number[]]> = [];
  for (let k = 0; k < c.num_codebooks; k++) {
    const p = k === 0 ? "quantizer.rvq_first.vq.layers.0._codebook" : `quantizer.rvq_rest.vq.layers.${k - 1}._codebook`;
    t.push([`${p}.embedding_sum`, [q.bins, q.dimension]], [`${p}.cluster_usage`, [q.bins]]);
  }
  t.push(["quantizer.rvq_first.output_proj.weight", [D, q.dimension, 1]], ["quantizer.rvq_rest.output_proj.weight", [D, q.dimension, 1]]);
  t.push(["upsample.convtr.convtr.convtr.weight", [D, 1, 4]]);
  for (let l = 0; l < tr.num_layers; l++) {
    const p = `decoder_transformer.transformer.layers.${l}`;
    t.push([`${p}.self_attn.in_projs.0.weight`, [3 * D, D]], [`${p}.self_attn.out_projs.0.weight`, [D, D]]);
    t.push([`${p}.linear1.weight`, [tr.dim_feedforward, D]], [`${p}.linear2.weight`, [D, tr.dim_feedforward]]);
    for (const n of ["norm1", "norm2"]) t.push([`${p}.${n}.weight`, [D]], [`${p}.${n}.bias`, [D]]);
    t.push([`${p}.layer_scale_1.scale`, [D]], [`${p}.layer_scale_2.scale`, [D]]);
  }
  const s = c.seanet;
  let mult = 2 ** s.ratios.length;
  let idx = 0;
  const conv = (p: string, cout: number, cin: number, k: number) => t.push([`${p}.conv.conv.weight`, [cout, cin, k]], [`${p}.conv.conv.bias`, [cout]]);
  conv(`decoder.model.${idx++}`, mult * s.n_filters, D, s.kernel_size);
  for (const r of s.ratios) {
    idx++; // ELU
    const w = mult * s.n_filters;
    t.push([`decoder.model.${idx}.convtr.convtr.weight`, [w, w / 2, 2 * r]], [`decoder.model.${idx++}.convtr.convtr.bias`, [w / 2]]);
    const p = `decoder.model.${idx++}`;
    conv(`${p}.block.1`, w / 4, w / 2, s.residual_kernel_size);
    conv(`${p}.block.3`, w / 2, w / 4, 1);
    mult /= 2;
  }
  idx++;
  conv(`decoder.model.${idx}`, 1, s.n_filters, s.last_kernel_size);
  return t;
}
