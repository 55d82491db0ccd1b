/**
 * fixtures/realshape: the published shapes with closed-form weights, rebuilt here (never
 * downloaded) and cached across test runs.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { paddedTokenizerJson, writeSyntheticCheckpoint } from "../../bench/synthetic-checkpoint.ts";
import { FIXTURES, TEST_CACHE, readJson } from "./reference.ts";

export interface RealshapeLfm2Reference {
  names: Array<[string, number[]]>;
  prompt_ids: number[];
  last_logits: number[];
  top5_per_position: number[][];
  greedy_new_ids: number[];
  effective_ff: number;
}

export function realshapeReference<T = RealshapeLfm2Reference>(key: string): T {
  return readJson<Record<string, T>>("realshape/reference.json")[key];
}

/** Writes (once) the LFM2-350M-shaped checkpoint with the fixtures' closed-form weights. */
export function realshapeLfm2Checkpoint(): string {
  const ref = realshapeReference("lfm2-350m");
  const config = readJson<Record<string, Record<string, Record<string, unknown>>>>("realshape/configs.json")["lfm2-350m"]["config.json"];
  const tokenizerDir = join(FIXTURES, "text/tiny-lfm2");
  return writeSyntheticCheckpoint(join(TEST_CACHE, "realshape-lfm2-350m"), {
    config,
    tensors: ref.names,
    values: "formula",
    tokenizerFrom: tokenizerDir,
    tokenizerJson: paddedTokenizerJson(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8"), 65536),
  });
}
