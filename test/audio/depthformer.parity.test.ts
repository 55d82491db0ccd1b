import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadLfm2AudioConfig } from "../../audio/audio-config.ts";
import { AudioHead } from "../../audio/audio-head.ts";
import { depthformerWeights } from "../../audio/depthformer.ts";
import { audioHeadShape } from "../../audio/audio-head.ts";
import { LfmError } from "../../text-core/errors.ts";
import { checkpointWeights } from "../../text-core/model.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";
import { argmax } from "../../text-core/sampler.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const DIR = join(FIXTURES, "audio/tiny-lfm2-audio");
const ref = new ReferenceTensors("audio/reference.safetensors");
const json = readJson<{ depthformer_greedy_frame: number[] }>("audio/reference.json");

describe("depthformer matches liquid-audio _sample_audio_frame on fixtures/audio/tiny-lfm2-audio", () => {
  const config = loadLfm2AudioConfig(DIR);
  let head: AudioHead;
  beforeAll(async () => {
    head = await AudioHead.load(DIR, config, { precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
  });

  it("decodes the reference frame greedily, code for code", async () => {
    const codes = await head.frame(ref.float("depthformer.input_hidden"), (logits) => argmax(logits));
    expect(codes).toEqual(json.depthformer_greedy_frame);
  });

  it("shows `pick` each codebook's 2049 logits in order, and feeds back the code it returns", async () => {
    const seen: number[] = [];
    const forced = [5, 2048, 0, 17, 2047, 3, 1, 9];
    const codes = await head.frame(ref.float("depthformer.input_hidden"), (logits, k) => {
      expect(logits.length).toBe(2049);
      seen.push(k);
      return forced[k];
    });
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(codes).toEqual(forced);
    // Different codes fed back give different later logits: the first greedy code is the
    // reference's, but what follows a forced code 5 is not the reference continuation.
    const after5: number[] = [];
    await head.frame(ref.float("depthformer.input_hidden"), (logits, k) => {
      after5.push(argmax(logits));
      return k === 0 ? 5 : argmax(logits);
    });
    expect(after5[0]).toBe(json.depthformer_greedy_frame[0]);
    expect(after5.slice(1)).not.toEqual(json.depthformer_greedy_frame.slice(1));
  });

  it("embeds a frame for the LM as the plain sum of its 8 codebook rows", () => {
    const codes = [3, 2048, 0, 1000, 5, 6, 7, 2047];
    const ck = Checkpoint.open(DIR);
    const D = config.lfm.hiddenSize;
    const expected = new Float32Array(D);
    codes.forEach((c, k) => {
      const row = ck.readFloat32Rows("audio_embedding.embedding.weight", c + 2049 * k, 1);
      for (let i = 0; i < D; i++) expected[i] += row[i];
    });
    ck.close();
    expect(Array.from(head.frameEmbedding(codes))).toEqual(Array.from(expected));
  });

  it("refuses a hidden state of the wrong width and codes outside [0, 2048]", async () => {
    await expectCode(head.frame(new Float32Array(10), argmax), "INVALID_ARGUMENT");
    for (const bad of [[1, 2, 3], [0, 0, 0, 0, 0, 0, 0, 2049], [0, 0, 0, 0, 0, 0, 0, -1]]) {
      expect(() => head.frameEmbedding(bad)).toThrow(LfmError);
    }
  });

  it("q8 gives the same greedy frame on this fixture (q4's 4-bit error changes codes of a random model)", async () => {
    const q8 = await AudioHead.load(DIR, config, { precision: "q8", cacheDir: TEST_CACHE, threads: 2 });
    expect(await q8.frame(ref.float("depthformer.input_hidden"), (l) => argmax(l))).toEqual(json.depthformer_greedy_frame);
    await q8.release();
  });

  it("refuses a config whose depthformer does not match the weights, naming the tensor", async () => {
    const dir = mkdtempSync(join(tmpdir(), "depthformer-mismatch-"));
    const raw = JSON.parse(readFileSync(join(DIR, "config.json"), "utf8"));
    raw.depthformer.dim = 256;
    writeFileSync(join(dir, "config.json"), JSON.stringify(raw));
    symlinkSync(join(DIR, "model.safetensors"), join(dir, "model.safetensors"));
    await expectCode(AudioHead.load(dir, loadLfm2AudioConfig(dir), { precision: "fp32", cacheDir: false }), "TENSOR_SHAPE_MISMATCH", "depth_linear.weight");
  });

  it("rewrites the fused q/k/v rows per head so the interleaved-pair RoPE becomes rotate-half", () => {
    const ck = Checkpoint.open(DIR);
    const raw = checkpointWeights(ck);
    const w = depthformerWeights(raw, audioHeadShape(config));
    const { dim, headDim, numHeads, numKvHeads } = config.depthformer;
    const qkv = raw.readFloat32("depthformer.layers.1.operator.qkv_proj.weight");
    const q = w.readFloat32("depthformer.layers.1.attn.q_proj.weight");
    const k = w.readFloat32("depthformer.layers.1.attn.k_proj.weight");
    const v = w.readFloat32("depthformer.layers.1.attn.v_proj.weight");
    expect(w.shape("depthformer.layers.1.attn.k_proj.weight")).toEqual([numKvHeads * headDim, dim]);
    const row = (m: Float32Array, r: number) => Array.from(m.subarray(r * dim, (r + 1) * dim));
    // head 3, rotate-half feature 1 = interleaved feature 2; feature hd/2 + 1 = interleaved 3
    expect(row(q, 3 * headDim + 1)).toEqual(row(qkv, 3 * headDim + 2));
    expect(row(q, 3 * headDim + headDim / 2 + 1)).toEqual(row(qkv, 3 * headDim + 3));
    expect(row(k, 0)).toEqual(row(qkv, numHeads * headDim));
    expect(row(v, 5)).toEqual(row(qkv, (numHeads + numKvHeads) * headDim + 5));
    ck.close();
  });
});
