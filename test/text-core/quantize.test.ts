import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import { linear } from "../../text-core/graph/linear.ts";
import type { BuildContext, WeightSource } from "../../text-core/graph/weights.ts";
import { dequantizeBlocks, dequantizeChannels, quantizeBlocks, quantizeChannels } from "../../text-core/graph/quantize.ts";
import { TextModel } from "../../text-core/model.ts";
import { agreement } from "../../text-core/logit-agreement.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE } from "../helpers/reference.ts";

function pseudoRandom(n: number, seed: number, scale: number): Float32Array {
  let x = seed;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x / 2 ** 32 - 0.5) * 2 * scale;
  });
}

describe("q4 block quantisation (MatMulNBits layout)", () => {
  it("codes reconstruct every weight within one step (half a step but at the clamped end), also in a padded last block", () => {
    for (const cols of [256, 80, 7]) {
      const rows = 8;
      const w = pseudoRandom(rows * cols, 7 + cols, 0.1);
      const q = quantizeBlocks(w, rows, cols);
      const perRow = Math.ceil(cols / 32);
      expect(q.scales.length).toBe(rows * perRow);
      expect(q.codes.length).toBe(rows * perRow * 16);
      const back = dequantizeBlocks(q);
      for (let i = 0; i < w.length; i++) {
        const step = Math.abs(q.scales[Math.floor(i / cols) * perRow + Math.floor((i % cols) / 32)]);
        expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(step + 1e-7);
      }
      // Padding is the zero point (onnxruntime 1.30 reads only K values of a row, but a zero costs nothing).
      if (cols % 32 !== 0) {
        const lastBlob = q.codes.subarray((perRow - 1) * 16, perRow * 16);
        for (let i = cols % 32; i < 32; i++) expect((lastBlob[i >> 1] >> ((i & 1) * 4)) & 15).toBe(8);
      }
    }
  });

  /** MatMulNBits over our packing at `accuracyLevel`, and x·dequant(W)ᵀ in plain arithmetic. */
  async function nbitsProduct(M: number, N: number, K: number, accuracyLevel: number): Promise<{ y: Float32Array; ref: Float64Array }> {
    const w = pseudoRandom(N * K, 3 + K, 0.05);
    const x = pseudoRandom(M * K, 11 + K, 1);
    const q = quantizeBlocks(w, N, K);
    const blocks = Math.ceil(K / q.block);
    const b = new GraphBuilder("q");
    b.useDomain("com.microsoft", 1);
    b.input("x", ElemType.FLOAT, [M, K]);
    b.initializer("codes", ElemType.UINT8, [N, blocks, q.block / 2], () => q.codes);
    b.floatInitializer("scales", [N, blocks], () => q.scales);
    b.output(b.op("MatMulNBits", ["x", "codes", "scales"], "y", { K, N, bits: 4, block_size: q.block, accuracy_level: accuracyLevel }, "com.microsoft"), "y", ElemType.FLOAT, [M, N]);
    const session = await ort.InferenceSession.create(b.toBytes());
    const y = (await session.run({ x: new ort.Tensor("float32", x, [M, K]) })).y.data as Float32Array;
    await session.release();
    const wd = dequantizeBlocks(q);
    const ref = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) ref[m * N + n] += x[m * K + k] * wd[n * K + k];
      }
    }
    return { y, ref };
  }

  it("onnxruntime's MatMulNBits computes x·dequant(W)ᵀ for our packing, K a multiple of 32 or not", async () => {
    for (const K of [128, 80, 7]) {
      const { y, ref } = await nbitsProduct(3, 96, K, 0);
      for (let i = 0; i < ref.length; i++) expect(Math.abs(y[i] - ref[i])).toBeLessThan(1e-5);
    }
  });

  it("the int8-activation kernel (accuracy level 4, what linear() uses) handles a row's partial last block", async () => {
    for (const K of [128, 80, 7]) {
      // Rows enough for MLAS's tiled prompt path, and one row for its decode path.
      for (const M of [1, 33]) {
        const { y, ref } = await nbitsProduct(M, 96, K, 4);
        let err = 0;
        let norm = 0;
        for (let i = 0; i < ref.length; i++) {
          err += (y[i] - ref[i]) ** 2;
          norm += ref[i] ** 2;
        }
        // int8 activations cost ~1e-2 relative; a misread partial block costs ~1.
        expect(Math.sqrt(err / norm)).toBeLessThan(2e-2);
      }
    }
  });
});

/** Round half to even, as QuantizeLinear does. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The q8 product in plain arithmetic: each row of x to 8 bits by its own max|x|/127, W per channel. */
function int8Reference(x: Float32Array, rows: number, K: number, W: Float32Array, N: number, bias?: Float32Array): Float32Array {
  const q = quantizeChannels(W, N, K);
  const wd = dequantizeChannels(q);
  const y = new Float32Array(rows * N);
  for (let m = 0; m < rows; m++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(x[m * K + k]));
    const s = Math.max(Math.fround(amax * Math.fround(1 / 127)), 1e-30);
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += Math.max(-128, Math.min(127, roundEven(x[m * K + k] / s))) * s * wd[n * K + k];
      y[m * N + n] = acc + (bias ? bias[n] : 0);
    }
  }
  return y;
}

describe("q8 (per-row activations × per-channel weights on the integer GEMM)", () => {
  it("codes reconstruct every weight within half a step of its channel", () => {
    const [N, K] = [16, 40];
    const w = pseudoRandom(N * K, 5, 0.2);
    const q = quantizeChannels(w, N, K);
    const back = dequantizeChannels(q);
    for (let i = 0; i < w.length; i++) expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(q.scales[Math.floor(i / K)] * 0.5 + 1e-7);
    // A channel of zeros quantises to its zero point and comes back as zeros.
    const zeros = quantizeChannels(new Float32Array(K), 1, K);
    expect(Array.from(dequantizeChannels(zeros)).every((v) => v === 0)).toBe(true);
  });

  it("linear() at q8 computes the quantised product for rank 2 and 3 inputs, with bias, a zero row and no rows", async () => {
    const [N, K] = [24, 48];
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {
      "w.weight": { shape: [N, K], data: pseudoRandom(N * K, 21, 0.1) },
      "w.bias": { shape: [N], data: pseudoRandom(N, 22, 0.5) },
    };
    const weights: WeightSource = {
      has: (name) => name in tensors,
      shape: (name) => tensors[name].shape,
      readFloat32: (name) => tensors[name].data,
    };
    for (const rank of [2, 3] as const) {
      for (const activationRank of [undefined, rank]) {
        const b = new GraphBuilder("q8");
        const dims = rank === 2 ? ["rows", K] : [1, "rows", K];
        const x = b.input("x", ElemType.FLOAT, dims);
        const ctx: BuildContext = { b, weights, precision: "q8", activationRank };
        b.output(linear(ctx, x, "w.weight", "y", "w.bias"), "y", ElemType.FLOAT, rank === 2 ? ["rows", N] : [1, "rows", N]);
        b.output(linear(ctx, x, "w.weight", "y_nobias"), "y_nobias", ElemType.FLOAT, rank === 2 ? ["rows", N] : [1, "rows", N]);
        const session = await ort.InferenceSession.create(b.toBytes());
        for (const rows of [0, 1, 5]) {
          const data = pseudoRandom(rows * K, 30 + rows, 3);
          if (rows === 5) data.fill(0, 2 * K, 3 * K); // a row of zeros
          const feed = new ort.Tensor("float32", data, rank === 2 ? [rows, K] : [1, rows, K]);
          const out = await session.run({ x: feed });
          expect(out.y.dims).toEqual(rank === 2 ? [rows, N] : [1, rows, N]);
          const withBias = int8Reference(data, rows, K, tensors["w.weight"].data, N, tensors["w.bias"].data);
          const without = int8Reference(data, rows, K, tensors["w.weight"].data, N);
          const y = out.y.data as Float32Array;
          const y0 = out.y_nobias.data as Float32Array;
          for (let i = 0; i < rows * N; i++) {
            expect(Math.abs(y[i] - withBias[i])).toBeLessThan(1e-4);
            expect(Math.abs(y0[i] - without[i])).toBeLessThan(1e-4);
          }
          if (rows === 5) for (let n = 0; n < N; n++) expect(y[2 * N + n]).toBeCloseTo(tensors["w.bias"].data[n], 6);
        }
        await session.release();
      }
    }
  });
});

describe("quantised models vs fp32", () => {
  // Quality on the tiny fixture (random weights, so near-flat distributions: a regression bound,
  // not a statement about real checkpoints). Measured: q8 (per-row × per-channel int8) top-1 0.91, KL 0.031; q4 top-1 0.29, KL 2.06.
  it("q8/q4 logits on the fixture prompt stay within the measured quality bounds of fp32", async () => {
    const ref = new ReferenceTensors("text/reference.safetensors");
    const ids = ref.ints("forward.input_ids");
    const fp32 = ref.float("forward.logits");
    const results: Record<string, { top1: number; kl: number }> = {};
    for (const precision of ["q8", "q4"] as const) {
      const model = await TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision, threads: 2 });
      const out = await model.runtime.forward(model.runtime.newState(1), { ids: [ids], keep: ids.length });
      results[precision] = agreement(fp32, out.output, model.config.vocabSize);
      await model.release();
    }
    console.log(`fixture quantisation quality vs fp32: ${JSON.stringify(results)}`);
    expect(results.q8.top1).toBeGreaterThanOrEqual(0.85);
    expect(results.q8.kl).toBeLessThanOrEqual(0.05);
    expect(results.q4.kl).toBeLessThanOrEqual(3);
    expect(results.q4.kl).toBeGreaterThan(results.q8.kl);
  });
});
