/** fixtures/realshape `lfm2-vl-450m`: the published LFM2-VL-450M layout with closed-form weights, rebuilt here once. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { paddedTokenizerJson, writeSyntheticCheckpoint } from "../../bench/synthetic-checkpoint.ts";
import { FIXTURES, TEST_CACHE, readJson } from "../helpers/reference.ts";
import { realshapeReference } from "../helpers/realshape.ts";

export interface RealshapeVlReference {
  names: Array<[string, number[]]>;
  image: string;
  prompt_ids: number[];
  last_logits: number[];
  greedy_new_ids: number[];
}

export function realshapeVlReference(): RealshapeVlReference {
  return realshapeReference<RealshapeVlReference>("lfm2-vl-450m");
}

/** Writes (once) the LFM2-VL-450M-shaped checkpoint (config, processor config, padded tokenizer). */
export function realshapeVlCheckpoint(): string {
  const files = readJson<Record<string, Record<string, Record<string, unknown>>>>("realshape/configs.json")["lfm2-vl-450m"];
  const tokenizerDir = join(FIXTURES, "text/tiny-lfm2");
  return writeSyntheticCheckpoint(join(TEST_CACHE, "realshape-lfm2-vl-450m"), {
    config: files["config.json"],
    tensors: realshapeVlReference().names,
    values: "formula",
    tokenizerFrom: tokenizerDir,
    tokenizerJson: paddedTokenizerJson(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8"), 65536),
    extraFiles: { "processor_config.json": files["processor_config.json"] },
  });
}
