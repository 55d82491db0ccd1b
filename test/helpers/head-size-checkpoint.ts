/**
 * A fixture checkpoint copied with attention heads of another width: the language core's
 * attention tensors get new random weights of the new shape (config `head_dim`), tensors listed in
 * `relabel` keep their values under a new shape (a tower's head count changed at the same width),
 * everything else is copied as is. For the tests that prove every attention runs any head size.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type TensorToWrite, writeSafetensors } from "../../bench/safetensors-writer.ts";
import { SafetensorsFile } from "../../text-core/safetensors.ts";
import { uniformNoise } from "../../bench/synthetic-checkpoint.ts";

export type ConfigObject = { [key: string]: unknown };

export interface HeadSizeEdit {
  /** The copied config.json, changed in place (set the text block's `head_dim`, a tower's head count). */
  config: (raw: ConfigObject) => void;
  /** Checkpoint prefix of the language core ("model.", "model.language_model.", "lfm.", ""). */
  textPrefix: string;
  heads: number;
  kvHeads: number;
  hidden: number;
  headDim: number;
  /** Tensor name → its new shape (same number of values). */
  relabel?: (name: string) => number[] | undefined;
  weightsFile?: string;
}

export function copyWithHeadSize(src: string, dst: string, edit: HeadSizeEdit): string {
  rmSync(dst, { recursive: true, force: true });
  cpSync(src, dst, { recursive: true });
  const raw = JSON.parse(readFileSync(join(src, "config.json"), "utf8")) as ConfigObject;
  edit.config(raw);
  writeFileSync(join(dst, "config.json"), JSON.stringify(raw, null, 1));

  const { heads: H, kvHeads: Hkv, hidden: D, headDim: hd, textPrefix } = edit;
  const attention = new RegExp(`^${textPrefix.replace(/\./g, "\\.")}layers\\.\\d+\\.self_attn\\.(q_proj|k_proj|v_proj|out_proj|q_layernorm|k_layernorm)\\.weight$`);
  const newShape: Record<string, number[]> = { q_proj: [H * hd, D], k_proj: [Hkv * hd, D], v_proj: [Hkv * hd, D], out_proj: [D, H * hd], q_layernorm: [hd], k_layernorm: [hd] };
  const file = join(dst, edit.weightsFile ?? "model.safetensors");
  const ck = SafetensorsFile.open(join(src, edit.weightsFile ?? "model.safetensors"));
  const tensors: TensorToWrite[] = ck.names().map((name, i) => {
    const info = ck.info(name);
    const kind = attention.exec(name)?.[1];
    if (kind) {
      const shape = newShape[kind];
      const norm = shape.length === 1;
      const values = uniformNoise(shape.reduce((a, b) => a * b, 1), 1000 + i, norm ? 1 : 0, norm ? 0.2 : 1.6 / Math.sqrt(shape[1]));
      return { name, dtype: "F32", shape, data: new Uint8Array(values.buffer) };
    }
    return { name, dtype: info.dtype, shape: edit.relabel?.(name) ?? info.shape, data: ck.readRaw(name) };
  });
  writeSafetensors(file, tensors, { format: "pt" });
  ck.close();
  return dst;
}
