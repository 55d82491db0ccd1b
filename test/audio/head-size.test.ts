/**
 * The audio towers' attention at head sizes that are not a multiple of 8 (12, 20), through the
 * real graph blocks, against float64: Mimi's decoder transformer (`mimiDecoderTransformer`:
 * LayerNorm, fused q/k/v, rotate-half RoPE, causal attention over a sliding context, LayerScale,
 * exact-GELU MLP) and the FastConformer's relative-position attention (`relPosAttention`).
 * (The depthformer runs head size 4 in depthformer.parity.test.ts: 32 heads over dim 128.)
 */
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { loadLfm2AudioConfig } from "../../audio/audio-config.ts";
import { relPosAttention, relShiftIndex, relativePositionTable } from "../../audio/fastconformer.ts";
import { parseMimiConfig } from "../../audio/mimi-config.ts";
import { mimiDecoderTransformer } from "../../audio/mimi.ts";
import { readConfigJson } from "../../text-core/config.ts";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import type { WeightSource } from "../../text-core/graph/weights.ts";
import { createSession } from "../../text-core/runtime.ts";
import { uniformNoise } from "../../bench/synthetic-checkpoint.ts";
import { FIXTURES, expectClose } from "../helpers/reference.ts";

/** erf to ~1e-12 (Maclaurin series near 0, continued fraction beyond): enough for a float64 reference. */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 60; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f);
}

describe.each([
  { headDim: 12, heads: 3 },
  { headDim: 20, heads: 2 },
])("Mimi decoder transformer with head size $headDim", ({ headDim, heads }) => {
  it("matches a float64 layer over a sliding context", async () => {
    const D = heads * headDim;
    const F = 2 * D;
    const S = 7;
    const base = parseMimiConfig(readConfigJson(join(FIXTURES, "audio/tiny-mimi")), "tiny-mimi");
    const config = { ...base, transformer: { ...base.transformer, dModel: D, numHeads: heads, numLayers: 1, context: 4, dimFeedforward: F, layerScale: 0.5 } };
    const p = "decoder_transformer.transformer.layers.0";
    const shapes: Record<string, number[]> = {
      [`${p}.self_attn.in_proj_rotate_half.weight`]: [3 * D, D],
      [`${p}.self_attn.out_projs.0.weight`]: [D, D],
      [`${p}.linear1.weight`]: [F, D],
      [`${p}.linear2.weight`]: [D, F],
      [`${p}.norm1.weight`]: [D],
      [`${p}.norm1.bias`]: [D],
      [`${p}.norm2.weight`]: [D],
      [`${p}.norm2.bias`]: [D],
      [`${p}.layer_scale_1.scale`]: [D],
      [`${p}.layer_scale_2.scale`]: [D],
    };
    const data = new Map<string, Float32Array>();
    Object.entries(shapes).forEach(([name, shape], i) => {
      const isWeightOfNorm = name.endsWith("norm1.weight") || name.endsWith("norm2.weight");
      const scale = shape.length === 2 ? 1.6 / Math.sqrt(shape[1]) : name.includes("layer_scale") ? 0.4 : 0.2;
      data.set(name, uniformNoise(shape.reduce((a, b) => a * b, 1), i + 1, isWeightOfNorm || name.includes("layer_scale") ? 0.6 : 0, scale));
    });
    const weights: WeightSource = {
      has: (n) => data.has(n),
      shape: (n) => shapes[n],
      readFloat32: (n) => data.get(n) as Float32Array,
    };
    const b = new GraphBuilder("mimi-transformer");
    const h = b.input("h", ElemType.FLOAT, [1, S, D]);
    b.output(mimiDecoderTransformer({ b, weights, precision: "fp32" }, h, config), "y", ElemType.FLOAT, [1, S, D]);
    const xs = uniformNoise(S * D, 77, 0, 1);
    const session = await createSession(b.toBytes(), { threads: 1 });
    const empty = new ort.Tensor("float32", new Float32Array(0), [1, 0, D]);
    const out = await session.run({
      h: new ort.Tensor("float32", xs, [1, S, D]),
      "past_key.0": empty,
      "past_value.0": empty,
      position_offset: new ort.Tensor("int64", BigInt64Array.from([0n]), [1]),
    });
    await session.release();

    const w = (name: string) => Float64Array.from(data.get(`${p}.${name}`) as Float32Array);
    const mat = (name: string, x: Float64Array) => {
      const W = w(name);
      return Float64Array.from({ length: W.length / x.length }, (_, o) => x.reduce((s, v, i) => s + v * W[o * x.length + i], 0));
    };
    const layerNorm = (x: Float64Array, n: string) => {
      const mean = x.reduce((a, v) => a + v, 0) / D;
      const variance = x.reduce((a, v) => a + (v - mean) ** 2, 0) / D;
      const [g, beta] = [w(`${n}.weight`), w(`${n}.bias`)];
      return x.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-5)) * g[i] + beta[i]);
    };
    const rope = (v: Float64Array, pos: number) => {
      const half = headDim / 2;
      const out = new Float64Array(headDim);
      for (let i = 0; i < half; i++) {
        const angle = pos * Math.exp((-Math.log(config.transformer.maxPeriod) * 2 * i) / headDim);
        out[i] = v[i] * Math.cos(angle) - v[i + half] * Math.sin(angle);
        out[i + half] = v[i + half] * Math.cos(angle) + v[i] * Math.sin(angle);
      }
      return out;
    };
    const x = Array.from({ length: S }, (_, t) => Float64Array.from(xs.subarray(t * D, (t + 1) * D)));
    const qkv = x.map((r) => mat("self_attn.in_proj_rotate_half.weight", layerNorm(r, "norm1")));
    const head = (t: number, which: number, hh: number) => qkv[t].slice(which * D + hh * headDim, which * D + (hh + 1) * headDim);
    const expected = new Float64Array(S * D);
    for (let t = 0; t < S; t++) {
      const context = new Float64Array(D);
      for (let hh = 0; hh < heads; hh++) {
        const q = rope(head(t, 0, hh), t);
        const keys = Array.from({ length: S }, (_, j) => j).filter((j) => t - j >= 0 && t - j < config.transformer.context);
        const scores = keys.map((j) => rope(head(j, 1, hh), j).reduce((a, kv, d) => a + kv * q[d], 0) / Math.sqrt(headDim));
        const max = Math.max(...scores);
        const e = scores.map((z) => Math.exp(z - max));
        const sum = e.reduce((a, z) => a + z, 0);
        keys.forEach((j, n) => head(j, 2, hh).forEach((v, d) => (context[hh * headDim + d] += (e[n] / sum) * v)));
      }
      const ls1 = w("layer_scale_1.scale");
      const ls2 = w("layer_scale_2.scale");
      const afterAttn = mat("self_attn.out_projs.0.weight", context).map((v, i) => x[t][i] + ls1[i] * v);
      const up = mat("linear1.weight", layerNorm(afterAttn, "norm2")).map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
      expected.set(mat("linear2.weight", up).map((v, i) => afterAttn[i] + ls2[i] * v), t * D);
    }
    expectClose(out.y.data as Float32Array, expected, `Mimi transformer, head size ${headDim}`);
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 12);
  });
});

describe.each([
  { headDim: 12, heads: 2 },
  { headDim: 20, heads: 3 },
])("FastConformer relative-position attention with head size $headDim", ({ headDim, heads }) => {
  it("matches a float64 Transformer-XL attention (content + position scores, biases u and v)", async () => {
    const D = heads * headDim;
    const T = 6;
    const base = loadLfm2AudioConfig(join(FIXTURES, "audio/tiny-lfm2-audio")).encoder;
    const cfg = { ...base, dModel: D, numHeads: heads, headDim };
    const shapes: Record<string, number[]> = {};
    for (const n of ["q", "k", "v", "out"]) Object.assign(shapes, { [`att.linear_${n}.weight`]: [D, D], [`att.linear_${n}.bias`]: [D] });
    Object.assign(shapes, { "att.linear_pos.weight": [D, D], "att.pos_bias_u": [heads, headDim], "att.pos_bias_v": [heads, headDim] });
    const data = new Map<string, Float32Array>();
    Object.entries(shapes).forEach(([name, shape], i) => data.set(name, uniformNoise(shape.reduce((a, b) => a * b, 1), i + 1, 0, name.endsWith(".weight") ? 1.6 / Math.sqrt(D) : 0.3)));
    const weights: WeightSource = { has: (n) => data.has(n), shape: (n) => shapes[n], readFloat32: (n) => data.get(n) as Float32Array };
    const b = new GraphBuilder("conformer-attention");
    const ctx = { b, weights, precision: "fp32" as const };
    const x = b.input("x", ElemType.FLOAT, [1, T, D]);
    const pe = b.input("pos_emb", ElemType.FLOAT, [2 * T - 1, D]);
    b.output(relPosAttention(ctx, cfg, x, "att", pe, relShiftIndex(ctx, x)), "y", ElemType.FLOAT, [1, T, D]);
    const xs = uniformNoise(T * D, 55, 0, 1);
    const table = relativePositionTable(T, D);
    const session = await createSession(b.toBytes(), { threads: 1 });
    const out = await session.run({ x: new ort.Tensor("float32", xs, [1, T, D]), pos_emb: new ort.Tensor("float32", table, [2 * T - 1, D]) });
    await session.release();

    const w = (name: string) => Float64Array.from(data.get(`att.${name}`) as Float32Array);
    const lin = (name: string, row: Float64Array, bias = true) => {
      const W = w(`${name}.weight`);
      const bb = bias ? w(`${name}.bias`) : new Float64Array(D);
      return Float64Array.from({ length: D }, (_, o) => row.reduce((s, v, i) => s + v * W[o * D + i], bb[o]));
    };
    const rows = Array.from({ length: T }, (_, t) => Float64Array.from(xs.subarray(t * D, (t + 1) * D)));
    const [q, k, v] = ["linear_q", "linear_k", "linear_v"].map((n) => rows.map((r) => lin(n, r)));
    // Table row T−1−r holds relative position r = i − j.
    const pos = Array.from({ length: 2 * T - 1 }, (_, r) => lin("linear_pos", Float64Array.from(table.subarray(r * D, (r + 1) * D)), false));
    const [u, vb] = [w("pos_bias_u"), w("pos_bias_v")];
    const expected = new Float64Array(T * D);
    for (let i = 0; i < T; i++) {
      const context = new Float64Array(D);
      for (let h = 0; h < heads; h++) {
        const scores = Array.from({ length: T }, (_, j) => {
          let s = 0;
          for (let d = 0; d < headDim; d++) {
            const c = h * headDim + d;
            s += (q[i][c] + u[c]) * k[j][c] + (q[i][c] + vb[c]) * pos[T - 1 - (i - j)][c];
          }
          return s / Math.sqrt(headDim);
        });
        const max = Math.max(...scores);
        const e = scores.map((z) => Math.exp(z - max));
        const sum = e.reduce((a, z) => a + z, 0);
        for (let j = 0; j < T; j++) for (let d = 0; d < headDim; d++) context[h * headDim + d] += (e[j] / sum) * v[j][h * headDim + d];
      }
      expected.set(lin("linear_out", context), i * D);
    }
    expectClose(out.y.data as Float32Array, expected, `FastConformer attention, head size ${headDim}`);
  });
});

describe("depthformer", () => {
  it("its parity against liquid-audio (depthformer.parity.test.ts) runs head size 4: 32 heads over the fixture's dim 128", () => {
    const depth = loadLfm2AudioConfig(join(FIXTURES, "audio/tiny-lfm2-audio")).depthformer;
    expect([depth.numHeads, depth.headDim, depth.headDim % 8 !== 0]).toEqual([32, 4, true]);
  });
});
