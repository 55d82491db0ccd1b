/**
 * fixtures/realshape `lfm2-colbert-350m`: the LFM2-ColBERT-350M shapes with the fixtures'
 * closed-form weights, written once (never downloaded) as a PyLate folder: the backbone through
 * the text core's synthetic-checkpoint writer, the PyLate files from configs.json, and the
 * projection in 1_Dense/model.safetensors.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { formulaWeights, paddedTokenizerJson, writeSyntheticCheckpoint } from "../../bench/synthetic-checkpoint.ts";
import { writeSafetensors } from "../../bench/safetensors-writer.ts";
import { FIXTURES, TEST_CACHE, readJson } from "../helpers/reference.ts";
import { realshapeReference } from "../helpers/realshape.ts";

export interface RealshapeColbertReference {
  names: Array<[string, number[]]>;
  query: string;
  document: string;
  query_real_ids: number[];
  doc_ids: number[];
  query_real_rows: number[][];
  doc_rows: number[][];
}

const DENSE = "1_Dense/linear.weight";

export function realshapeColbertCheckpoint(): string {
  const ref = realshapeReference<RealshapeColbertReference>("lfm2-colbert-350m");
  const files = readJson<Record<string, Record<string, unknown>>>("realshape/configs.json")["lfm2-colbert-350m"];
  const tokenizerDir = join(FIXTURES, "text/tiny-lfm2");
  const { "config.json": config, ...pylateFiles } = files;
  const dir = writeSyntheticCheckpoint(join(TEST_CACHE, "realshape-lfm2-colbert-350m"), {
    config: config as Record<string, unknown>,
    tensors: ref.names.filter(([name]) => name !== DENSE),
    values: "formula",
    tokenizerFrom: tokenizerDir,
    // Ids 65534 and 65535 are PyLate's added prefix tokens.
    tokenizerJson: paddedTokenizerJson(readFileSync(join(tokenizerDir, "tokenizer.json"), "utf8"), 65536, ["[Q] ", "[D] "]),
    extraFiles: pylateFiles,
  });
  const denseFile = join(dir, "1_Dense", "model.safetensors");
  if (!existsSync(denseFile)) {
    const shape = (ref.names.find(([name]) => name === DENSE) as [string, number[]])[1];
    const w = formulaWeights(DENSE, shape);
    writeSafetensors(denseFile, [{ name: "linear.weight", dtype: "BF16", shape, data: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) }], { format: "pt" });
  }
  return dir;
}
