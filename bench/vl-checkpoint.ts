/**
 * Random-weight LFM2-VL checkpoints with the published shapes (fixtures/real-configs/lfm2-vl-*.json),
 * for bench/vision.ts and bench/extract.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Lfm2VlConfig, parseLfm2VlConfig } from "../vision/vl-config.ts";
import { ROOT, benchCacheDir } from "./bench-kit.ts";
import { lfm2TensorShapes, writeSyntheticCheckpoint } from "./synthetic-checkpoint.ts";

/** The tower's and the projector's tensors (HF names; the unused pooling head is left out). */
export function visionTensorShapes(config: Lfm2VlConfig): Array<[string, number[]]> {
  const v = config.vision;
  const C = v.hiddenSize;
  const t = "model.vision_tower.";
  const out: Array<[string, number[]]> = [
    [`${t}embeddings.patch_embedding.weight`, [C, v.numChannels * v.patchSize ** 2]],
    [`${t}embeddings.patch_embedding.bias`, [C]],
    [`${t}embeddings.position_embedding.weight`, [v.positionGridSize ** 2, C]],
  ];
  for (let i = 0; i < v.checkpointLayers; i++) {
    const p = `${t}encoder.layers.${i}`;
    for (const ln of ["layer_norm1", "layer_norm2"]) out.push([`${p}.${ln}.weight`, [C]], [`${p}.${ln}.bias`, [C]]);
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) out.push([`${p}.self_attn.${proj}.weight`, [C, C]], [`${p}.self_attn.${proj}.bias`, [C]]);
    out.push([`${p}.mlp.fc1.weight`, [v.intermediateSize, C]], [`${p}.mlp.fc1.bias`, [v.intermediateSize]]);
    out.push([`${p}.mlp.fc2.weight`, [C, v.intermediateSize]], [`${p}.mlp.fc2.bias`, [C]]);
  }
  out.push([`${t}post_layernorm.weight`, [C]], [`${t}post_layernorm.bias`, [C]]);
  const m = "model.multi_modal_projector.";
  const unshuffled = C * config.downsampleFactor ** 2;
  out.push([`${m}layer_norm.weight`, [unshuffled]], [`${m}layer_norm.bias`, [unshuffled]]);
  out.push([`${m}linear_1.weight`, [config.projectorHiddenSize, unshuffled]], [`${m}linear_1.bias`, [config.projectorHiddenSize]]);
  out.push([`${m}linear_2.weight`, [config.text.hiddenSize, config.projectorHiddenSize]], [`${m}linear_2.bias`, [config.text.hiddenSize]]);
  return out;
}

/**
 * The model's random-weight checkpoint, written once: tower + projector, plus the language model
 * when `withLm` (the tile benchmark needs no LM, which spares the 1.6B's 2.3 GB). The tokenizer is
 * the tiny fixture's: same special tokens and image token id as LFM2's, ids all below 65536.
 */
export function vlCheckpoint(model: string, withLm: boolean): { dir: string; config: Lfm2VlConfig } {
  const file = (suffix: string) => JSON.parse(readFileSync(join(ROOT, `fixtures/real-configs/lfm2-vl-${model}.${suffix}.json`), "utf8"));
  const raw = file("config");
  const config = parseLfm2VlConfig(raw, `lfm2-vl-${model}`);
  const name = `lfm2-vl-${model}${withLm ? "" : "-vision"}`;
  process.stderr.write(`${name}: random-weight checkpoint… `);
  const dir = writeSyntheticCheckpoint(join(benchCacheDir, "bench-checkpoints", name), {
    config: raw,
    tensors: [...visionTensorShapes(config), ...(withLm ? lfm2TensorShapes(config.text, "model.language_model.") : [])],
    values: "random",
    tokenizerFrom: join(ROOT, "fixtures/text/tiny-lfm2"),
    extraFiles: { "processor_config.json": file("processor_config") },
  });
  process.stderr.write("ready\n");
  return { dir, config };
}
