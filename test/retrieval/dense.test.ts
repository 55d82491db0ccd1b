import { describe, expect, it } from "vitest";
import * as ort from "onnxruntime-node";
import { type DenseLayer, projectAndNormalize } from "../../retrieval/colbert-graph.ts";
import type { DenseActivation, DenseLayerSpec } from "../../retrieval/pylate-config.ts";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import type { WeightSource } from "../../text-core/graph/weights.ts";
import { createSession } from "../../text-core/runtime.ts";

/** Deterministic small values. */
const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, k) => Math.sin(0.7 * k + seed) * 0.8);

function layer(path: string, inF: number, outF: number, opts: { bias?: boolean; activation?: DenseActivation; residual?: boolean }): DenseLayer & { w: Float32Array; b: Float32Array; r: Float32Array } {
  const spec: DenseLayerSpec = { path, inFeatures: inF, outFeatures: outF, bias: opts.bias ?? false, activation: opts.activation ?? "identity", useResidual: opts.residual ?? false, weightsFile: "" };
  const w = values(outF * inF, 1);
  const b = values(outF, 2);
  const r = values(outF * inF, 3);
  const tensors: Record<string, [number[], Float32Array]> = {
    [`${path}.linear.weight`]: [[outF, inF], w],
    [`${path}.linear.bias`]: [[outF], b],
    [`${path}.residual.weight`]: [[outF, inF], r],
  };
  const weights: WeightSource = {
    has: (n) => n in tensors,
    shape: (n) => tensors[n][0],
    readFloat32: (n) => tensors[n][1],
  };
  return { spec, weights, w, b, r };
}

const ACT: Record<DenseActivation, (x: number) => number> = {
  identity: (x) => x,
  tanh: Math.tanh,
  relu: (x) => Math.max(0, x),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  silu: (x) => x / (1 + Math.exp(-x)),
  leaky_relu: (x) => (x > 0 ? x : 0.01 * x),
  gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
};

function erf(x: number): number {
  // Taylor series: converges fast for the |x| < 3 used here.
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** PyLate Dense.forward in plain JS for one vector. */
function reference(x: number[], l: ReturnType<typeof layer>): number[] {
  const { inFeatures: n, outFeatures: m, bias, activation, useResidual } = l.spec;
  const out: number[] = [];
  for (let o = 0; o < m; o++) {
    let y = bias ? l.b[o] : 0;
    for (let i = 0; i < n; i++) y += l.w[o * n + i] * x[i];
    y = ACT[activation](y);
    if (useResidual) {
      if (n === m) y += x[o];
      else for (let i = 0; i < n; i++) y += l.r[o * n + i] * x[i];
    }
    out.push(y);
  }
  return out;
}

async function run(layers: ReturnType<typeof layer>[], rows: number[][]): Promise<Float32Array> {
  const b = new GraphBuilder("dense-test");
  const input = b.input("h", ElemType.FLOAT, ["n", layers[0].spec.inFeatures]);
  b.output(projectAndNormalize(b, input, layers), "out", ElemType.FLOAT, ["n", layers[layers.length - 1].spec.outFeatures]);
  const session = await createSession(b.toBytes(), { threads: 1 });
  try {
    const out = await session.run({ h: new ort.Tensor("float32", Float32Array.from(rows.flat()), [rows.length, rows[0].length]) });
    return out.out.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe("Dense chain + L2 normalisation (PyLate Dense.forward, F.normalize)", () => {
  const rows = [Array.from(values(6, 5)), Array.from(values(6, 9))];

  for (const activation of Object.keys(ACT) as DenseActivation[]) {
    it(`${activation} with bias, then normalised`, async () => {
      const l = layer("1_Dense", 6, 4, { bias: true, activation });
      const got = await run([l], rows);
      rows.forEach((x, r) => {
        const y = reference(x, l);
        const norm = Math.hypot(...y);
        y.forEach((v, k) => expect(got[r * 4 + k]).toBeCloseTo(v / norm, 5));
      });
    });
  }

  it("several layers in order, residual over equal widths and through residual.weight", async () => {
    const layers = [layer("1_Dense", 6, 6, { residual: true, activation: "tanh" }), layer("2_Dense", 6, 3, { residual: true, bias: true }), layer("3_Dense", 3, 3, {})];
    const got = await run(layers, rows);
    rows.forEach((x, r) => {
      const y = layers.reduce((v, l) => reference(v, l), x);
      const norm = Math.hypot(...y);
      y.forEach((v, k) => expect(got[r * 3 + k]).toBeCloseTo(v / norm, 5));
    });
  });

  it("a zero vector stays zero (eps clamp) instead of NaN", async () => {
    const l = layer("1_Dense", 6, 4, {});
    const got = await run([l], [[0, 0, 0, 0, 0, 0]]);
    expect(Array.from(got)).toEqual([0, 0, 0, 0]);
  });

  it("a weight of the wrong shape is TENSOR_SHAPE_MISMATCH", async () => {
    const l = layer("1_Dense", 6, 4, {});
    l.spec.outFeatures = 5;
    await expect(run([l], rows)).rejects.toMatchObject({ code: "TENSOR_SHAPE_MISMATCH" });
  });
});
