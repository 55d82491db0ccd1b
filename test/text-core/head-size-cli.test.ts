/**
 * The CLI paths run checkpoints whose attention heads are not a multiple of 8 wide (onnxruntime's
 * GroupQueryAttention rejects those): `lfm generate`, `lfm chat --image` (LFM2-VL), `lfm encode`
 * (ColBERT) and `lfm audio-chat` (LFM2-Audio) each exit 0 and print what the library call gives.
 * The checkpoints are the fixtures with the language core's attention at head size 12 (new random
 * weights), and the VL, audio encoder and Mimi towers at head size 4 (same weights, more heads).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { AudioChat } from "../../pipelines/audio-chat.ts";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { TextModel } from "../../text-core/model.ts";
import { VlModel } from "../../vision/vl-model.ts";
import { type ConfigObject, copyWithHeadSize } from "../helpers/head-size-checkpoint.ts";
import { runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE, expectClose } from "../helpers/reference.ts";

const HD = 12;
const EXACT = ["--temperature", "0", "--precision", "fp32", "--threads", "2", "--json"];
const LOAD = { precision: "fp32", threads: 2, cacheDir: TEST_CACHE } as const;
const root = mkdtempSync(join(tmpdir(), "lfm2-head-size-cli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The fixture language cores: hidden 64, 4 heads over 2 KV heads; head_dim 12 instead of 16. */
const core = { heads: 4, kvHeads: 2, hidden: 64, headDim: HD };
const setHeadDim = (block: ConfigObject) => {
  block.head_dim = HD;
};

interface Completion {
  prompt_ids: number[];
  ids: number[];
  text: string;
  timings: Record<string, number | null>;
}

/** The CLI's --json without its timings (which no two runs share), and the timings' keys. */
function withoutTimings({ timings, ...rest }: Completion): [Omit<Completion, "timings">, string[]] {
  return [rest, Object.keys(timings)];
}
const usage = (lib: { promptIds: number[]; ids: number[] }) => ({ prompt_tokens: lib.promptIds.length, completion_tokens: lib.ids.length });
const TIMINGS = ["ttft_ms", "tokens_per_s", "total_ms"];

describe(`the CLI at attention head size ${HD} (and 4 in the towers)`, () => {
  it("lfm generate", async () => {
    const dir = copyWithHeadSize(join(FIXTURES, "text/tiny-lfm2"), join(root, "text"), { ...core, textPrefix: "model.", config: setHeadDim });
    const cli = runLfmJson<Completion>(["generate", "--model", dir, "--prompt", "The pump", "--max-tokens", "8", ...EXACT]);
    const model = await TextModel.load(dir, LOAD);
    try {
      expect(model.config.headDim).toBe(HD);
      const lib = await model.complete(model.encodePrompt("The pump"), { maxTokens: 8, temperature: 0 });
      expect(withoutTimings(cli)).toEqual([{ prompt_ids: lib.promptIds, ids: lib.ids, text: lib.text, finish_reason: lib.finishReason, usage: usage(lib) }, TIMINGS]);
      expect(cli.ids).toHaveLength(8);
    } finally {
      await model.release();
    }
  });

  it("lfm chat --image (LFM2-VL; SigLIP2 at head size 4)", async () => {
    const dir = copyWithHeadSize(join(FIXTURES, "vision/tiny-lfm2-vl"), join(root, "vl"), {
      ...core,
      textPrefix: "model.language_model.",
      config: (raw) => {
        setHeadDim(raw.text_config as ConfigObject);
        (raw.vision_config as ConfigObject).num_attention_heads = 8; // hidden 32 → head size 4
      },
    });
    const image = join(FIXTURES, "vision/images/photo_320x240.jpg");
    const cli = runLfmJson<Completion>(["chat", "--model", dir, "--image", image, "--message", "What is this?", "--max-tokens", "6", ...EXACT]);
    const model = await VlModel.load(dir, LOAD);
    try {
      expect([model.config.text.headDim, model.config.vision.headDim]).toEqual([HD, 4]);
      const prompt = await model.prepareChat([{ role: "user", content: [{ type: "image", image }, { type: "text", text: "What is this?" }] }]);
      const lib = await model.complete(prompt, { maxTokens: 6, temperature: 0 });
      expect(withoutTimings(cli)).toEqual([{ prompt_ids: lib.promptIds, ids: lib.ids, text: lib.text, finish_reason: lib.finishReason, usage: usage(lib) }, TIMINGS]);
      expect(cli.ids).toHaveLength(6);
    } finally {
      await model.release();
    }
  });

  it("lfm encode (ColBERT)", async () => {
    const dir = copyWithHeadSize(join(FIXTURES, "retrieval/tiny-lfm2-colbert"), join(root, "colbert"), { ...core, textPrefix: "", config: setHeadDim });
    const query = "how does the pump work";
    const cli = runLfmJson<{ embeddings: number[][] }>(["encode", "--model", dir, "--query", query, "--precision", "fp32", "--threads", "2", "--json"]);
    const encoder = await ColbertEncoder.load(dir, LOAD);
    try {
      expect(encoder.config.headDim).toBe(HD);
      const [lib] = await encoder.encodeQueries([query]);
      expect(cli.embeddings).toHaveLength(lib.rows);
      expect(cli.embeddings[0]).toHaveLength(lib.dim);
      expectClose(Float32Array.from(cli.embeddings.flat()), lib.data, "encode --json vs encodeQueries", { maxAbs: 1e-6, relL2: 1e-7 });
    } finally {
      await encoder.release();
    }
  });

  it("lfm audio-chat (LFM2-Audio; FastConformer and Mimi at head size 4)", async () => {
    const dir = copyWithHeadSize(join(FIXTURES, "audio/tiny-lfm2-audio"), join(root, "audio"), {
      ...core,
      textPrefix: "lfm.",
      config: (raw) => {
        setHeadDim(raw.lfm as ConfigObject);
        (raw.encoder as ConfigObject).n_heads = 8; // d_model 32 → head size 4
      },
      // NeMo's per-head position biases [heads, head size]: the same values, 8 heads of 4.
      relabel: (name) => (/\.self_attn\.pos_bias_[uv]$/.test(name) ? [8, 4] : undefined),
    });
    const mimi = copyWithHeadSize(join(FIXTURES, "audio/tiny-mimi"), join(root, "mimi"), {
      ...core,
      textPrefix: "no language core.",
      weightsFile: "mimi.safetensors",
      config: (raw) => {
        (raw.transformer as ConfigObject).num_heads = 8; // d_model 32 → head size 4
      },
    });
    const clipPath = join(FIXTURES, "audio/clips/speech_en_16k.wav");
    const out = join(root, "reply.wav");
    const cli = runLfmJson<{ steps: number[][]; seconds?: number }>([
      "audio-chat", "--model", dir, "--mimi", mimi, "--audio", clipPath, "--mode", "interleaved", "--max-tokens", "24", "--out", out, ...EXACT,
    ]);
    const chat = await AudioChat.load(dir, { ...LOAD, mimi });
    try {
      const mimiLayers = chat.mimi?.config.transformer;
      expect([chat.model.config.lfm.headDim, chat.model.config.encoder.headDim, mimiLayers && mimiLayers.dModel / mimiLayers.numHeads]).toEqual([HD, 4, 4]);
      const prompt = await chat.prompt(await readAudioFile(clipPath));
      const steps: number[][] = [];
      let samples = 0;
      for await (const e of chat.reply(prompt, { mode: "interleaved", maxSteps: 24, text: { temperature: 0 }, audio: { temperature: 0, topK: 4 } })) {
        if (e.kind === "text") {
          if (e.id !== null) steps.push([e.id]);
        } else if (e.kind === "audio") {
          steps.push(e.codes);
          samples += e.samples?.length ?? 0;
        }
      }
      expect(cli.steps).toEqual(steps);
      expect(cli.steps).toHaveLength(24);
      expect(cli.seconds ?? 0).toBeCloseTo(samples / 24000, 6);
    } finally {
      await chat.release();
    }
  });
});
