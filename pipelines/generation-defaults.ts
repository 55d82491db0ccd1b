/**
 * Sampling defaults from a checkpoint's `generation_config.json`, as HF `generate` uses them:
 * `do_sample: false` (or no file) means greedy.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { SamplingOptions } from "../text-core/sampler.ts";

export function readGenerationDefaults(modelDir: string): SamplingOptions {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(join(modelDir, "generation_config.json"), "utf8"));
  } catch {
    return { temperature: 0 };
  }
  if (raw.do_sample !== true) return { temperature: 0 };
  const n = (k: string) => (typeof raw[k] === "number" ? (raw[k] as number) : undefined);
  return {
    temperature: n("temperature") ?? 1,
    topK: n("top_k"),
    topP: n("top_p"),
    minP: n("min_p"),
    repetitionPenalty: n("repetition_penalty"),
  };
}
