/**
 * Sampling defaults from a checkpoint's `generation_config.json`, as HF `generate` uses them:
 * `do_sample: false` (or no file) means greedy. A file that is there but malformed is
 * `CONFIG_INVALID` naming the file and the field: silently generating greedily instead of with the
 * published sampling would be a wrong answer nobody notices.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LfmError } from "./errors.ts";
import type { SamplingOptions } from "./sampler.ts";

export const GENERATION_CONFIG_FILE = "generation_config.json";

/** The sampling a checkpoint asks for; `temperature: 0` is greedy. */
export type GenerationDefaults = Readonly<Omit<SamplingOptions, "seed">>;

export const GREEDY: GenerationDefaults = Object.freeze({ temperature: 0 });

/** `dir/generation_config.json` as sampling defaults; greedy when the file is absent. */
export function readGenerationDefaults(dir: string): GenerationDefaults {
  const file = join(dir, GENERATION_CONFIG_FILE);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return GREEDY;
    throw new LfmError("CONFIG_INVALID", `cannot read ${file}: ${(e as Error).message}.`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new LfmError("CONFIG_INVALID", `${file} is not valid JSON (${(e as Error).message}); restore the file published with the checkpoint or delete it (greedy decoding).`, { cause: e });
  }
  return parseGenerationDefaults(raw, file);
}

/** Checks every sampling field (even with `do_sample` off: a malformed file is malformed). */
export function parseGenerationDefaults(raw: unknown, source: string = GENERATION_CONFIG_FILE): GenerationDefaults {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new LfmError("CONFIG_INVALID", `${source} is not a JSON object; restore the file published with the checkpoint or delete it (greedy decoding).`);
  }
  const fields = raw as Record<string, unknown>;
  // `null` is absent, as transformers writes an unset field.
  const field = (key: string): unknown => (fields[key] === null ? undefined : fields[key]);
  const number = (key: string, what: string, ok: (n: number) => boolean): number | undefined => {
    const v = field(key);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) {
      throw new LfmError("CONFIG_INVALID", `${source}: "${key}" must be ${what}, found ${JSON.stringify(v)}. Restore the file published with the checkpoint.`);
    }
    return v;
  };
  const doSample = field("do_sample");
  if (doSample !== undefined && typeof doSample !== "boolean") {
    throw new LfmError("CONFIG_INVALID", `${source}: "do_sample" must be true or false, found ${JSON.stringify(doSample)}. Restore the file published with the checkpoint.`);
  }
  const temperature = number("temperature", "a number ≥ 0", (n) => n >= 0);
  const topK = number("top_k", "a non-negative integer", (n) => Number.isInteger(n) && n >= 0);
  const topP = number("top_p", "a number in (0, 1]", (n) => n > 0 && n <= 1);
  const minP = number("min_p", "a number in [0, 1]", (n) => n >= 0 && n <= 1);
  const repetitionPenalty = number("repetition_penalty", "a number > 0", (n) => n > 0);
  if (doSample !== true) return GREEDY;
  return Object.freeze({ temperature: temperature ?? 1, topK, topP, minP, repetitionPenalty });
}

const SAMPLING_FIELDS = ["temperature", "topK", "topP", "minP", "repetitionPenalty"] as const;

/** The options of one call: each sampling option the caller gave wins over the checkpoint's default for it. */
export function withGenerationDefaults<T extends SamplingOptions>(defaults: GenerationDefaults, opts: T): T {
  const merged: T = { ...opts };
  for (const key of SAMPLING_FIELDS) {
    if (merged[key] === undefined && defaults[key] !== undefined) (merged as SamplingOptions)[key] = defaults[key];
  }
  return merged;
}
