/**
 * Mimi's checkpoint (moshi naming) as the graph builder's `WeightSource`, with the tensors the
 * decoder graph wants that the file stores in another form:
 *
 * - `<vq layer>.codebook` [bins, dim]: `embedding_sum / clamp(cluster_usage, 1e-5)`, as moshi's
 *   `EuclideanCodebook.embedding` computes it (older files name them `embed_sum` / `cluster_size`);
 * - `<conv>.weight` from weight-norm pairs (`weight_g`/`weight_v`, or torch parametrizations):
 *   `g · v / ‖v‖`, the norm over every axis but the first, folded once at build time;
 * - `<attention>.in_proj_rotate_half.weight`: the fused q/k/v projection with the q and k rows of
 *   each head reordered (even features first, then odd), so that moshi's interleaved-pair RoPE
 *   becomes the rotate-half RoPE of the shared `applyRope` block. q·k is unchanged by a
 *   permutation applied to both, and v keeps its order.
 */
import { interleavedToRotateHalf } from "../text-core/graph/blocks.ts";
import type { WeightSource } from "../text-core/graph/weights.ts";
import { LfmError } from "../text-core/errors.ts";
import { SafetensorsFile, checkFloatDType } from "../text-core/safetensors.ts";

const CODEBOOK_EPS = 1e-5;

interface Virtual {
  shape: number[];
  read: () => Float32Array;
}

export interface MimiWeightSource extends WeightSource {
  close(): void;
  /** The file the weights come from (for cache keys and messages). */
  readonly file: string;
}

export function openMimiWeights(path: string, opts: { numHeads: number }): MimiWeightSource {
  const file = SafetensorsFile.open(path);
  const stored = (name: string) => file.has(name);
  const storedShape = (name: string) => {
    const info = file.info(name);
    checkFloatDType(info);
    return info.shape;
  };
  const missing = (name: string, hint: string) =>
    new LfmError("TENSOR_MISSING", `Mimi tensor "${name}" is missing from ${path}${hint}. The file is not a Mimi checkpoint in moshi naming, or the config does not match it.`);

  /** The first of `names` the file holds. */
  const pick = (names: string[]) => names.find(stored);

  function codebook(prefix: string): Virtual | undefined {
    const sum = pick([`${prefix}.embedding_sum`, `${prefix}.embed_sum`, `${prefix}.embed_avg`]);
    const usage = pick([`${prefix}.cluster_usage`, `${prefix}.cluster_size`]);
    if (!sum || !usage) return undefined;
    const shape = storedShape(sum);
    return {
      shape,
      read: () => {
        const e = file.readFloat32(sum);
        const u = file.readFloat32(usage);
        const dim = shape[1];
        if (u.length !== shape[0]) throw new LfmError("TENSOR_SHAPE_MISMATCH", `${usage} has ${u.length} entries but ${sum} has ${shape[0]} rows.`);
        const out = new Float32Array(e.length);
        for (let r = 0; r < shape[0]; r++) {
          const d = Math.max(u[r], CODEBOOK_EPS);
          for (let c = 0; c < dim; c++) out[r * dim + c] = e[r * dim + c] / d;
        }
        return out;
      },
    };
  }

  function weightNorm(prefix: string): Virtual | undefined {
    const pairs: [string, string][] = [
      [`${prefix}.weight_g`, `${prefix}.weight_v`],
      [`${prefix}.parametrizations.weight.original0`, `${prefix}.parametrizations.weight.original1`],
    ];
    const pair = pairs.find(([g, v]) => stored(g) && stored(v));
    if (!pair) return undefined;
    const [gName, vName] = pair;
    const shape = storedShape(vName);
    return {
      shape,
      read: () => {
        const g = file.readFloat32(gName);
        const v = file.readFloat32(vName);
        const rows = shape[0];
        const per = v.length / rows;
        if (g.length !== rows) throw new LfmError("TENSOR_SHAPE_MISMATCH", `${gName} has ${g.length} entries, expected ${rows}.`);
        const out = new Float32Array(v.length);
        for (let r = 0; r < rows; r++) {
          let sq = 0;
          for (let i = 0; i < per; i++) sq += v[r * per + i] ** 2;
          const scale = g[r] / Math.sqrt(sq);
          for (let i = 0; i < per; i++) out[r * per + i] = v[r * per + i] * scale;
        }
        return out;
      },
    };
  }

  function rotateHalfInProj(attn: string): Virtual | undefined {
    const fused = pick([`${attn}.in_projs.0.weight`, `${attn}.in_proj_weight`, `${attn}.in_proj.weight`]);
    if (!fused) return undefined;
    const shape = storedShape(fused); // [3·D, D]
    const [rows, cols] = shape;
    const D = rows / 3;
    const hd = D / opts.numHeads;
    return {
      shape,
      // q rows [0, D) and k rows [D, 2D) are 2·numHeads consecutive heads.
      read: () => interleavedToRotateHalf(file.readFloat32(fused), cols, 2 * opts.numHeads, hd),
    };
  }

  const virtuals = new Map<string, Virtual | undefined>();
  function virtual(name: string): Virtual | undefined {
    if (virtuals.has(name)) return virtuals.get(name);
    let v: Virtual | undefined;
    if (name.endsWith("._codebook.codebook")) v = codebook(name.slice(0, -".codebook".length));
    else if (name.endsWith(".in_proj_rotate_half.weight")) v = rotateHalfInProj(name.slice(0, -".in_proj_rotate_half.weight".length));
    else if (name.endsWith(".out_projs.0.weight") && !stored(name)) {
      const alias = name.replace(/\.out_projs\.0\.weight$/, ".out_proj.weight");
      if (stored(alias)) v = { shape: storedShape(alias), read: () => file.readFloat32(alias) };
    } else if (name.endsWith(".weight") && !stored(name)) v = weightNorm(name.slice(0, -".weight".length));
    virtuals.set(name, v);
    return v;
  }

  return {
    file: path,
    has: (name) => stored(name) || virtual(name) !== undefined,
    shape: (name) => {
      if (stored(name)) return storedShape(name);
      const v = virtual(name);
      if (!v) throw missing(name, "");
      return v.shape;
    },
    readFloat32: (name) => {
      if (stored(name)) return file.readFloat32(name);
      const v = virtual(name);
      if (!v) throw missing(name, "");
      return v.read();
    },
    close: () => file.close(),
  };
}
