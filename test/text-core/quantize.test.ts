import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import { dequantizeBlocks, quantizeBlocks } from "../../text-core/graph/quantize.ts";
import { TextModel } from "../../text-core/model.ts";
import { agreement } from "../helpers/quality.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE } from "../helpers/reference.ts";

function pseudoRandom(n: number, seed: number, scale: number): Float32Array {
  let x = seed;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x / 2 ** 32 - 0.5) * 2 * scale;
  });
}

describe("block quantisation (MatMulNBits layout)", () => {
  it("q8 and q4 codes reconstruct every weight within half a step (q4: one step at the clamped end)", () => {
    const rows = 8;
    const cols = 256;
    const w = pseudoRandom(rows * cols, 7, 0.1);
    for (const bits of [8, 4] as const) {
      const q = quantizeBlocks(w, rows, cols, bits);
      const back = dequantizeBlocks(q);
      for (let i = 0; i < w.length; i++) {
        const step = Math.abs(q.scales[Math.floor(i / q.block)]);
        expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(step * (bits === 4 ? 1 : 0.5) + 1e-7);
      }
    }
  });

  it("onnxruntime's MatMulNBits computes x·dequant(W)ᵀ for our packing", async () => {
    const [M, N, K] = [3, 96, 128];
    const w = pseudoRandom(N * K, 3, 0.05);
    const x = pseudoRandom(M * K, 11, 1);
    for (const bits of [4, 8] as const) {
      const q = quantizeBlocks(w, N, K, bits);
      const b = new GraphBuilder("q");
      b.useDomain("com.microsoft", 1);
      b.input("x", ElemType.FLOAT, [M, K]);
      b.initializer("codes", ElemType.UINT8, [N, K / q.block, (q.block * bits) / 8], () => q.codes);
      b.floatInitializer("scales", [N, K / q.block], () => q.scales);
      b.output(b.op("MatMulNBits", ["x", "codes", "scales"], "y", { K, N, bits, block_size: q.block, accuracy_level: 0 }, "com.microsoft"), "y", ElemType.FLOAT, [M, N]);
      const session = await ort.InferenceSession.create(b.toBytes());
      const y = (await session.run({ x: new ort.Tensor("float32", x, [M, K]) })).y.data as Float32Array;
      const wd = dequantizeBlocks(q);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let ref = 0;
          for (let k = 0; k < K; k++) ref += x[m * K + k] * wd[n * K + k];
          expect(Math.abs(y[m * N + n] - ref)).toBeLessThan(1e-5);
        }
      }
      await session.release();
    }
  });

  // Quality on the tiny fixture (random weights, so near-flat distributions: a regression bound,
  // not a statement about real checkpoints). Measured: q8 (blocks of 64) top-1 0.88, KL 0.030; q4 top-1 0.29, KL 2.06.
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
