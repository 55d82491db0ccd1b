import { beforeAll, describe, expect, it } from "vitest";
import { TextModel } from "../../text-core/model.ts";
import { runLfmJson } from "../helpers/cli.ts";
import { TEST_CACHE, expectClose } from "../helpers/reference.ts";
import { agreement } from "../../text-core/logit-agreement.ts";
import { realshapeLfm2Checkpoint, realshapeReference } from "../helpers/realshape.ts";

// A second LFM2 with another layer layout (attention at 2,5,8,10,12,14 of 16), head count (16/8),
// vocabulary (65536), legacy 4.5x config keys and FF auto-adjust 6656 → 4608: the code must not
// assume the tiny fixture's shapes.
describe("LFM2-350M shape (closed-form weights) matches HF transformers", () => {
  const ref = realshapeReference("lfm2-350m");
  let model: TextModel;
  let dir: string;
  beforeAll(async () => {
    dir = realshapeLfm2Checkpoint();
    model = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  }, 600_000);

  it("reads the legacy config: effective FF width, layer layout, heads", () => {
    expect(model.config.ffDim).toBe(ref.effective_ff);
    expect(model.config.layerTypes.flatMap((t, i) => (t === "full_attention" ? [i] : []))).toEqual([2, 5, 8, 10, 12, 14]);
    expect([model.config.numHeads, model.config.numKvHeads, model.config.vocabSize]).toEqual([16, 8, 65536]);
  });

  it("last-position logits within tolerance and top-5 exact at every position", async () => {
    const V = model.config.vocabSize;
    const out = await model.runtime.forward(model.runtime.newState(1), { ids: [ref.prompt_ids], keep: ref.prompt_ids.length });
    const last = out.output.subarray((ref.prompt_ids.length - 1) * V);
    expectClose(last, ref.last_logits, "last_logits");
    ref.top5_per_position.forEach((expected, p) => {
      const row = out.output.subarray(p * V, (p + 1) * V);
      const top = Array.from(row.keys()).sort((a, b) => row[b] - row[a]).slice(0, 5);
      expect(top, `top-5 at position ${p}`).toEqual(expected);
    });
  });

  it("greedy continuation is exact", async () => {
    const out = await model.complete(ref.prompt_ids, { maxTokens: ref.greedy_new_ids.length, stopTokenIds: [] });
    expect(out.ids).toEqual(ref.greedy_new_ids);
  });

  it("loads and generates through the CLI", () => {
    const out = runLfmJson<{ prompt_ids: number[]; ids: number[] }>([
      "generate", "--model", dir, "--prompt-ids", ref.prompt_ids.join(","), "--max-tokens", "8",
      "--temperature", "0", "--precision", "fp32", "--threads", "2", "--json",
    ]);
    expect(out.prompt_ids).toEqual(ref.prompt_ids);
    expect(out.ids).toEqual(ref.greedy_new_ids);
  });

  // A regression bound, not a quality statement: the closed-form network has 1.6× gain per
  // matrix and amplifies any perturbation (fp32 rounding noise of 1e-7 already shows as 4e-5 in
  // its logits), and its top logits lie within 0.01 of each other, so top-1 agreement is ~0 even
  // for q8. Measured (2026-11-23): q8 KL 0.117, q4 KL 4.11 over 20 positions. README: Precision.
  it("q8 and q4 stay within the measured KL of fp32 over every prompt position", async () => {
    const V = model.config.vocabSize;
    const ids = ref.prompt_ids;
    const fp32 = (await model.runtime.forward(model.runtime.newState(1), { ids: [ids], keep: ids.length })).output.slice();
    const results: Record<string, { top1: number; kl: number }> = {};
    for (const precision of ["q8", "q4"] as const) {
      const quantised = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision, threads: 2 });
      try {
        results[precision] = agreement(fp32, (await quantised.runtime.forward(quantised.runtime.newState(1), { ids: [ids], keep: ids.length })).output, V);
      } finally {
        await quantised.release();
      }
    }
    console.log(`LFM2-350M shape quantisation quality vs fp32 (${ids.length} positions): ${JSON.stringify(results)}`);
    expect(results.q8.kl).toBeLessThanOrEqual(0.25);
    expect(results.q4.kl).toBeLessThanOrEqual(6);
    expect(results.q4.kl).toBeGreaterThan(results.q8.kl);
  }, 600_000);
});
