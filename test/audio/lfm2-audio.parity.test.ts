import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { AUDIO_TOKENS, Modality, loadLfm2AudioConfig } from "../../audio/audio-config.ts";
import { buildAudioEncoderGraph, relativePositionTable } from "../../audio/fastconformer.ts";
import { Lfm2AudioModel } from "../../audio/lfm2-audio-model.ts";
import { SYSTEM_PROMPTS } from "../../audio/prompt.ts";
import { readAudioFile } from "../../audio/audio-file.ts";
import { transcribeWindow } from "../../pipelines/transcribe.ts";
import { checkpointWeights } from "../../text-core/model.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, expectClose, readJson } from "../helpers/reference.ts";

interface AudioReference {
  chat: { text_ids: number[]; modality_flag: number[] };
  greedy_sequential: number[][];
  conformer_len: number;
}

const MODEL_DIR = join(FIXTURES, "audio/tiny-lfm2-audio");
const EN_CLIP = join(FIXTURES, "audio/clips/speech_en_16k.wav");

describe("LFM2-Audio input side matches liquid-audio on fixtures/audio/tiny-lfm2-audio", () => {
  const ref = new ReferenceTensors("audio/reference.safetensors");
  const json = readJson<AudioReference>("audio/reference.json");
  let model: Lfm2AudioModel;
  beforeAll(async () => {
    model = await Lfm2AudioModel.load(MODEL_DIR, { precision: "fp32", cacheDir: TEST_CACHE, threads: 2, exposeHidden: true });
  });
  afterAll(async () => {
    await model?.release();
  });

  /** The reference's mel with only its valid frames (what the encoder is fed). */
  function referenceMel() {
    const [bins, frames] = ref.shape("speech_en_16k.wav.mel");
    return { data: ref.float("speech_en_16k.wav.mel"), melBins: bins, frames, validFrames: frames - 1 };
  }

  it("FastConformer output and adapter output are within tolerance (from the reference mel)", async () => {
    const out = await model.encoder.encode(referenceMel());
    expect(out.frames).toBe(json.conformer_len);
    const [D, T] = ref.shape("conformer.out"); // NeMo layout [D, T']
    const transposed = new Float32Array(D * T);
    for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) transposed[d * T + t] = out.encoderOut[t * D + d];
    // Measured: conformer.out 1.2e-6 / relL2 2.8e-7; adapter.out 8.9e-8 / 1.4e-7.
    expectClose(transposed, ref.float("conformer.out"), "conformer.out");
    expectClose(out.embeddings, ref.float("adapter.out"), "adapter.out");
  });

  it("the whole input side from the WAV file (read, mel, encoder, adapter) gives the reference audio rows", async () => {
    const audio = await model.embedAudio(await readAudioFile(EN_CLIP));
    expect(audio.count).toBe(json.conformer_len);
    expectClose(audio.rows, ref.float("adapter.out"), "adapter.out from the wav");
  });

  it("assembles the chat prompt exactly: text ids and modality flags per position", async () => {
    const audio = await model.embedAudio(await readAudioFile(EN_CLIP));
    const prompt = model.newPrompt().newTurn("system").addText(SYSTEM_PROMPTS.interleavedChat).endTurn().newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant").build();
    expect(prompt.textIds).toEqual(json.chat.text_ids);
    expect(prompt.modality).toEqual(json.chat.modality_flag);
    expect(prompt.overrides.index).toEqual(prompt.modality.flatMap((m, i) => (m === Modality.AUDIO_IN ? [i] : [])));
  });

  it("prefill embeddings (text rows and audio rows, in flag order) are within tolerance", async () => {
    const audio = await model.embedAudio(await readAudioFile(EN_CLIP));
    const prompt = model.newPrompt().newTurn("system").addText(SYSTEM_PROMPTS.interleavedChat).endTurn().newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant").build();
    const out = await model.lm.forward(model.lm.newState(1), { ids: [prompt.ids], overrides: prompt.overrides, extraOutputs: ["hidden.0"] });
    expectClose(out.extra["hidden.0"].data as Float32Array, ref.float("prefill.embeddings"), "prefill.embeddings");
  });

  it("greedy text generation from that prompt reproduces liquid-audio's generate_sequential steps exactly", async () => {
    const expected = json.greedy_sequential.map((step) => {
      expect(step.length, "the fixture's sequential run is text only").toBe(1);
      return step[0];
    });
    expect(expected).not.toContain(AUDIO_TOKENS.imEnd);
    const clip = await readAudioFile(EN_CLIP);
    const ids = await transcribeWindow(model, clip.samples, clip.sampleRateHz, { systemPrompt: SYSTEM_PROMPTS.interleavedChat, maxTokens: expected.length });
    expect(ids).toEqual(expected);
  });

  it("an audio-out frame enters the prompt as the sum of its 8 codebook rows (offset 2049·k)", () => {
    const codes = [5, 2048, 17, 0, 1999, 3, 1024, 7];
    const row = model.audioFrameEmbedding(codes);
    const table = new ReferenceTable(MODEL_DIR);
    const expected = new Float32Array(model.config.lfm.hiddenSize);
    codes.forEach((c, k) => table.row(c + 2049 * k).forEach((v, d) => (expected[d] += v)));
    expect(Array.from(row)).toEqual(Array.from(expected));
    const prompt = model.newPrompt().newTurn("assistant").addAudioOut([codes, codes]).endTurn().build();
    expect(prompt.modality.filter((m) => m === Modality.AUDIO_OUT)).toHaveLength(2);
    expect(Array.from(prompt.overrides.values.subarray(0, row.length))).toEqual(Array.from(row));
    expect(() => model.audioFrameEmbedding([1, 2, 3])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => model.audioFrameEmbedding([0, 0, 0, 0, 0, 0, 0, 2049])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    table.close();
  });

  it("position table: rows T'−1 … −(T'−1), sin/cos pairs, bf16-rounded", () => {
    const pe = relativePositionTable(3, 4);
    expect(pe.length).toBe(5 * 4);
    expect(pe[2 * 4]).toBe(0); // row for r = 0: sin 0
    expect(pe[2 * 4 + 1]).toBe(1); // cos 0
    expect(pe[0]).toBeCloseTo(Math.sin(2), 2); // r = 2, w₀ = 1
    expect(pe[4 * 4]).toBeCloseTo(Math.sin(-2), 2);
    for (const v of pe) expect(new Uint32Array(new Float32Array([v]).buffer)[0] & 0xffff).toBe(0);
  });

  it("a config that does not match the weights is TENSOR_SHAPE_MISMATCH before anything is built", () => {
    const config = loadLfm2AudioConfig(MODEL_DIR);
    const ck = Checkpoint.open(MODEL_DIR);
    try {
      const wrong = { ...config.encoder, numHeads: 8, headDim: 4 };
      expect(() => buildAudioEncoderGraph(wrong, checkpointWeights(ck), 64, { precision: "fp32" })).toThrow(expect.objectContaining({ code: "TENSOR_SHAPE_MISMATCH" }));
      expect(() => buildAudioEncoderGraph(config.encoder, checkpointWeights(ck), 128, { precision: "fp32" })).toThrow(expect.objectContaining({ code: "TENSOR_SHAPE_MISMATCH" }));
    } finally {
      ck.close();
    }
  });
});

describe("quantised encoder stays close to the fp32 reference", () => {
  it("the default for a q4 LM is a q8 encoder: adapter output relative L2 under 2% (measured 0.5%)", async () => {
    const model = await Lfm2AudioModel.load(MODEL_DIR, { precision: "q4", cacheDir: TEST_CACHE, threads: 2 });
    try {
      const audio = await model.embedAudio(await readAudioFile(EN_CLIP));
      const expected = new ReferenceTensors("audio/reference.safetensors").float("adapter.out");
      let num = 0;
      let den = 0;
      for (let i = 0; i < expected.length; i++) {
        num += (audio.rows[i] - expected[i]) ** 2;
        den += expected[i] ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(0.02);
    } finally {
      await model.release();
    }
  });
});

/** Rows of `audio_embedding.embedding.weight`, read independently of the model. */
class ReferenceTable {
  private readonly ck: Checkpoint;
  constructor(dir: string) {
    this.ck = Checkpoint.open(dir);
  }
  row(i: number): Float32Array {
    return this.ck.readFloat32Rows("audio_embedding.embedding.weight", i, 1);
  }
  close(): void {
    this.ck.close();
  }
}
