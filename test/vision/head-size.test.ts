/**
 * SigLIP2's attention at head sizes that are not a multiple of 8 (12, 20), through the real graph
 * block, against a float64 multi-head attention with biased projections and padded keys masked.
 */
import { describe, it } from "vitest";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import type { WeightSource } from "../../text-core/graph/weights.ts";
import { createSession } from "../../text-core/runtime.ts";
import { uniformNoise } from "../../bench/synthetic-checkpoint.ts";
import { siglip2SelfAttention } from "../../vision/siglip2.ts";
import type { Siglip2Config } from "../../vision/vl-config.ts";
import * as ort from "onnxruntime-node";
import { expectClose } from "../helpers/reference.ts";

/** Float tensors held in memory, as a checkpoint would give them. */
function memoryWeights(tensors: Map<string, { shape: number[]; data: Float32Array }>): WeightSource {
  const get = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new Error(`no ${name}`);
    return t;
  };
  return { has: (n) => tensors.has(n), shape: (n) => get(n).shape, readFloat32: (n) => get(n).data };
}

describe.each([
  { headDim: 12, heads: 2 },
  { headDim: 20, heads: 3 },
])("SigLIP2 attention with head size $headDim", ({ headDim, heads }) => {
  it("matches a float64 attention, padded patches masked", async () => {
    const C = heads * headDim;
    const [crops, N] = [2, 7];
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    let seed = 1;
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      tensors.set(`attn.${proj}.weight`, { shape: [C, C], data: uniformNoise(C * C, seed++, 0, 1 / Math.sqrt(C)) });
      tensors.set(`attn.${proj}.bias`, { shape: [C], data: uniformNoise(C, seed++, 0, 0.1) });
    }
    const cfg: Siglip2Config = { hiddenSize: C, intermediateSize: 4 * C, numHeads: heads, headDim, numLayers: 1, checkpointLayers: 1, patchSize: 16, numChannels: 3, positionGridSize: 16, layerNormEps: 1e-6 };
    const b = new GraphBuilder("siglip2-attention");
    const x = b.input("x", ElemType.FLOAT, [crops, N, C]);
    const maskBias = b.input("mask_bias", ElemType.FLOAT, [crops, 1, 1, N]);
    b.output(siglip2SelfAttention({ b, weights: memoryWeights(tensors), precision: "fp32" }, cfg, x, "attn", maskBias), "y", ElemType.FLOAT, [crops, N, C]);

    const xs = uniformNoise(crops * N * C, 99, 0, 1);
    const valid = [N, 4]; // crop 1: the last 3 patches are padding
    const bias = new Float32Array(crops * N);
    for (let c = 0; c < crops; c++) for (let j = valid[c]; j < N; j++) bias[c * N + j] = -1e30;
    const session = await createSession(b.toBytes(), { threads: 1 });
    const out = await session.run({ x: new ort.Tensor("float32", xs, [crops, N, C]), mask_bias: new ort.Tensor("float32", bias, [crops, 1, 1, N]) });
    await session.release();

    const w = (name: string) => Float64Array.from((tensors.get(name) as { data: Float32Array }).data);
    const project = (row: Float64Array, proj: string) => {
      const [W, bb] = [w(`attn.${proj}.weight`), w(`attn.${proj}.bias`)];
      return Float64Array.from({ length: C }, (_, o) => row.reduce((s, v, i) => s + v * W[o * C + i], bb[o]));
    };
    const expected = new Float64Array(crops * N * C);
    for (let c = 0; c < crops; c++) {
      const rows = Array.from({ length: N }, (_, t) => Float64Array.from(xs.subarray((c * N + t) * C, (c * N + t + 1) * C)));
      const [q, k, v] = ["q_proj", "k_proj", "v_proj"].map((p) => rows.map((r) => project(r, p)));
      for (let t = 0; t < N; t++) {
        const context = new Float64Array(C);
        for (let h = 0; h < heads; h++) {
          const at = (m: Float64Array[], s: number, d: number) => m[s][h * headDim + d];
          const scores = Array.from({ length: valid[c] }, (_, s) => {
            let dot = 0;
            for (let d = 0; d < headDim; d++) dot += at(q, t, d) * at(k, s, d);
            return dot / Math.sqrt(headDim);
          });
          const max = Math.max(...scores);
          const e = scores.map((z) => Math.exp(z - max));
          const sum = e.reduce((a, z) => a + z, 0);
          for (let s = 0; s < valid[c]; s++) for (let d = 0; d < headDim; d++) context[h * headDim + d] += (e[s] / sum) * at(v, s, d);
        }
        expected.set(project(context, "out_proj"), (c * N + t) * C);
      }
    }
    expectClose(out.y.data as Float32Array, expected, `SigLIP2 attention, head size ${headDim}`);
  });
});
