/**
 * The tensor lists the audio benchmarks write their random-weight checkpoints from
 * (bench/audio-shapes.ts) name and shape every tensor exactly as a real LFM2-Audio checkpoint
 * does: checked against the tiny fixture, whose config they are computed from; and the padded
 * tokenizer of bench:agent decodes random ids to words. (The benchmarks write gigabytes at the
 * real shapes; a wrong name, shape or vocabulary would only show there.)
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadLfm2AudioConfig } from "../../audio/audio-config.ts";
import { audioHeadTensorShapes, audioTensorShapes } from "../../bench/audio-shapes.ts";
import { plainWordsTokenizerJson } from "../../bench/synthetic-checkpoint.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { FIXTURES } from "../helpers/reference.ts";

const DIR = join(FIXTURES, "audio", "tiny-lfm2-audio");

describe("bench/audio-shapes.ts", () => {
  it("the encoder, adapter, audio head and audio-out embedding tensors are the fixture's, name for name and shape for shape", () => {
    const config = loadLfm2AudioConfig(DIR);
    const checkpoint = Checkpoint.open(DIR);
    try {
      const listed = [...audioTensorShapes(config), ...audioHeadTensorShapes(config)];
      for (const [name, shape] of listed) expect(checkpoint.has(name) ? checkpoint.info(name).shape : "missing", name).toEqual(shape);
      // Every non-LM tensor of the fixture is listed, but the tied depth to_logits and the buffers
      // no loader reads (training's codebook offsets and loss weights, BatchNorm's step counter).
      const names = new Set(listed.map(([n]) => n));
      const unread = (n: string) => n === "codebook_offsets" || n === "audio_loss_weights" || n.endsWith(".num_batches_tracked");
      const tiedLogits = (n: string) => config.depthformer.tie && /^depth_embeddings\.\d+\.to_logits\.weight$/.test(n);
      const unlisted = checkpoint.names().filter((n) => !n.startsWith("lfm.") && !names.has(n) && !unread(n) && !tiedLogits(n));
      expect(unlisted).toEqual([]);
    } finally {
      checkpoint.close();
    }
  });

  it("plainWordsTokenizerJson: 65536 entries, random ids past the fixture's vocabulary decode to words that encode back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm2-words-tokenizer-"));
    try {
      const from = join(FIXTURES, "text", "tiny-lfm2");
      for (const f of ["tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"]) copyFileSync(join(from, f), join(dir, f));
      writeFileSync(join(dir, "tokenizer.json"), plainWordsTokenizerJson(readFileSync(join(from, "tokenizer.json"), "utf8"), 65536));
      const tokenizer = await Lfm2Tokenizer.fromDir(dir);
      expect(tokenizer.vocabSize).toBe(65536);
      const ids = [40000, 65535, 12345];
      const text = tokenizer.decode(ids, { skipSpecialTokens: true });
      expect(text).toBe(" w40000 w65535 w12345");
      expect(tokenizer.encode(text, { addSpecialTokens: false })).toEqual(ids);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
