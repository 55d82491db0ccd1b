/**
 * One structured-output benchmark configuration in its own process (see bench/structured.ts).
 * Prints one JSON line.
 * Usage: node bin/run-ts.mjs bench/structured-worker.ts DIR PRECISION THREADS RUNS DECODE SEEDS
 * RUNS = 0: only build the graph into the cache and exit.
 *
 * Per run:
 * - decode tok/s of `DECODE` greedy tokens without a format and with a one-string-field schema whose
 *   string is longer than the run (so both go the full length), each step one forward call
 *   (`jumpForward: false`): the difference is the cost of the mask. Greedy, because sampling costs
 *   differ with and without a mask on random weights (their flat distribution over 65,536 ids makes
 *   the sampler walk far more of the vocabulary than the mask leaves it), which would hide the
 *   mask's own cost;
 * - the extraction form × SEEDS seeds, with jump-forward and without: wall time of each whole reply
 *   (prefill included, a short prompt), forward calls, and the check that both give the same ids
 *   (sampled at temperature 1, and one greedy reply each way).
 * Once per process: the tokenizer info + first compile, then each schema's compile time.
 */
import { loadLfm2Config } from "../text-core/config.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { TextModel, type TextGenerateOptions } from "../text-core/model.ts";
import { generate } from "../text-core/generate.ts";
import { compileStructuredOutput } from "../text-core/structured/response-format.ts";
import { benchPromptIds, flushWrites, peakRssMb } from "./prompt.ts";

const [dir, precision, threadsArg, runsArg, decodeArg, seedsArg] = process.argv.slice(2);
const runs = Number(runsArg);
const decodeLength = Number(decodeArg);
const seeds = Number(seedsArg);

/** An inspection form: what field extraction asks of a small model. Decimal ranges are unsupported, so pressure_bar is an unbounded number. */
const EXTRACTION_SCHEMA = {
  type: "object",
  properties: {
    pump_id: { type: "integer", minimum: 1, maximum: 500 },
    pressure_bar: { type: "number" },
    status: { enum: ["ok", "leaking", "offline", "needs_service"] },
    inspected_by: { type: "string", maxLength: 24 },
    notes: { type: "string", maxLength: 60 },
  },
  required: ["pump_id", "pressure_bar", "status", "inspected_by", "notes"],
  additionalProperties: false,
};

/** One free string: the model writes until `maxTokens`, as unconstrained decoding does. */
const FREE_TEXT_SCHEMA = { type: "object", properties: { notes: { type: "string" } }, required: ["notes"] };
/** The decode run's schema: one string field that cannot close within the run. */
const DECODE_SCHEMA = { type: "object", properties: { notes: { type: "string", minLength: 4096 } }, required: ["notes"] };

/** Schemas whose compile time is reported (each compiled once, uncached). */
const COMPILE_SCHEMAS: Record<string, unknown> = {
  extraction: EXTRACTION_SCHEMA,
  freeText: FREE_TEXT_SCHEMA,
  nested: {
    type: "object",
    properties: {
      site: { type: "string", minLength: 1, maxLength: 16 },
      readings: {
        type: "array",
        minItems: 1,
        maxItems: 8,
        items: { type: "object", properties: { sensor: { enum: ["p", "t", "flow"] }, value: { type: "number" }, ok: { type: "boolean" } }, required: ["sensor", "value"], additionalProperties: false },
      },
      alarm: { anyOf: [{ type: "null" }, { type: "integer", minimum: 0, maximum: 99 }] },
    },
    required: ["site", "readings"],
    additionalProperties: false,
  },
  refs: {
    $defs: { point: { type: "object", properties: { x: { type: "integer", minimum: -100, maximum: 100 }, y: { type: "integer", minimum: -100, maximum: 100 } }, required: ["x", "y"], additionalProperties: false } },
    type: "object",
    properties: { from: { $ref: "#/$defs/point" }, to: { $ref: "#/$defs/point" }, label: { type: "string", pattern: "^[A-Za-z0-9 -]{1,20}$" } },
    required: ["from", "to"],
    additionalProperties: false,
  },
};

const loadStart = performance.now();
const config = loadLfm2Config(dir);
const model = await TextModel.load(dir, { precision: precision as Precision, threads: Number(threadsArg), cacheDir: process.env.LFM_CACHE_DIR });
const loadMs = performance.now() - loadStart;
if (runs === 0) {
  await model.release();
  process.stdout.write(`${JSON.stringify({ loadMs, samples: [], peakRssMb: peakRssMb() })}\n`);
  process.exit(0);
}
flushWrites();

// Compile times first, while every schema is still uncached (the first call also builds the tokenizer info).
const info: Record<string, number> = {};
const compile = async (schema: unknown) => {
  const t0 = performance.now();
  await compileStructuredOutput(model.tokenizer, config.vocabSize, { responseFormat: { type: "json_schema", schema } });
  return performance.now() - t0;
};
info.firstCompileWithTokenizerInfoMs = await compile({ type: "object", properties: { warm: { type: "boolean" } }, required: ["warm"] });
for (const [name, schema] of Object.entries(COMPILE_SCHEMAS)) info[`compileMs_${name}`] = await compile(schema);

// Forward calls, counted on this instance: jump-forward's gain is fewer calls.
let forwardCalls = 0;
const forward = model.runtime.forward.bind(model.runtime);
let forwardMs = 0;
model.runtime.forward = async (...args: Parameters<typeof forward>) => {
  forwardCalls++;
  const t0 = performance.now();
  try {
    return await forward(...args);
  } finally {
    forwardMs += performance.now() - t0;
  }
};

const decodePrompt = benchPromptIds(64, config.vocabSize);
/** Decode tok/s from the first new token to the last (prefill excluded), and the count. */
/**
 * Also the split of each step into the forward call and the rest (mask and pick): the two runs feed
 * different tokens, so the rest is where the mask's own cost shows.
 */
async function decodeSpeed(opts: TextGenerateOptions): Promise<{ tokPerS: number; tokens: number; forwardMsPerToken: number; otherMsPerToken: number }> {
  let first = 0;
  let last = 0;
  let n = 0;
  let forwardAtFirst = 0;
  // Ids, not text: the synthetic tokenizer's 64k filler ids are special added tokens, and streaming
  // them to text costs ~30 ms each (a real vocabulary has a few hundred added tokens).
  const tokens = generate(model.runtime, decodePrompt, await model.generationOptions({ ...opts, temperature: 0, maxTokens: decodeLength, stopTokenIds: [] }));
  for await (const _ of tokens) {
    last = performance.now();
    if (n++ === 0) {
      first = last;
      forwardAtFirst = forwardMs;
    }
  }
  const steps = n - 1;
  const forwardMsPerToken = (forwardMs - forwardAtFirst) / steps;
  return { tokPerS: (steps / (last - first)) * 1000, tokens: n, forwardMsPerToken, otherMsPerToken: (last - first) / steps - forwardMsPerToken };
}

const extractionPrompt = benchPromptIds(32, config.vocabSize);
/** The extraction form over `seeds` seeds: total wall time, forward calls and the ids of each reply. */
async function extraction(jumpForward: boolean, temperature = 1, count = seeds): Promise<{ ms: number; calls: number; tokens: number; ids: number[][]; incomplete: number }> {
  const ids: number[][] = [];
  let ms = 0;
  let incomplete = 0;
  const calls0 = forwardCalls;
  for (let seed = 1; seed <= count; seed++) {
    const t0 = performance.now();
    const out = await model.complete(extractionPrompt, { responseFormat: { type: "json_schema", schema: EXTRACTION_SCHEMA }, jumpForward, temperature, seed, maxTokens: 256 });
    ms += performance.now() - t0;
    ids.push(out.ids);
    if (out.finishReason !== "stop") incomplete++;
  }
  return { ms, calls: forwardCalls - calls0, tokens: ids.reduce((s, r) => s + r.length, 0), ids, incomplete };
}

/** Index of the first token where two sets of replies differ (-1: identical). */
function firstDifference(a: number[][], b: number[][]): number {
  let first = -1;
  a.forEach((row, i) => {
    const at = row.length === b[i].length && row.every((id, j) => id === b[i][j]) ? -1 : Math.max(0, row.findIndex((id, j) => id !== b[i][j]));
    if (at >= 0 && (first < 0 || at < first)) first = at;
  });
  return first;
}

const samples: Array<Record<string, number>> = [];
let firstDiff = -1;
let incomplete = 0;
for (let r = 0; r < runs + 1; r++) {
  const plain = await decodeSpeed({});
  const schema = await decodeSpeed({ responseFormat: { type: "json_schema", schema: DECODE_SCHEMA }, jumpForward: false });
  // A plain unbounded string, the common case: it may close before the run's end, but the mask's
  // cost is per step, so the steps it ran are enough.
  const freeText = await decodeSpeed({ responseFormat: { type: "json_schema", schema: FREE_TEXT_SCHEMA }, jumpForward: false });
  const step = await extraction(false);
  const jump = await extraction(true);
  const diff = firstDifference(step.ids, jump.ids);
  if (diff >= 0 && (firstDiff < 0 || diff < firstDiff)) firstDiff = diff;
  incomplete += step.incomplete + jump.incomplete;
  info.extractionTokens = step.tokens;
  info.extractionForwardCallsStepwise = step.calls;
  info.extractionForwardCallsJumpForward = jump.calls;
  info.schemaDecodeTokens = schema.tokens;
  info.freeTextDecodeTokens = freeText.tokens;
  // The first run warms caches and thread pools and is not counted.
  if (r > 0) {
    samples.push({
      decodeTokPerS: plain.tokPerS,
      decodeTokPerSSchema: schema.tokPerS,
      schemaSlowdown: 1 - schema.tokPerS / plain.tokPerS,
      decodeForwardMsPerToken: plain.forwardMsPerToken,
      decodeForwardMsPerTokenSchema: schema.forwardMsPerToken,
      decodeOtherMsPerToken: plain.otherMsPerToken,
      decodeOtherMsPerTokenSchema: schema.otherMsPerToken,
      // The mask's cost per token over a plain step's whole time: what the schema costs on equal forward calls.
      maskMsPerToken: schema.otherMsPerToken - plain.otherMsPerToken,
      maskSlowdown: (schema.otherMsPerToken - plain.otherMsPerToken) / (1000 / plain.tokPerS),
      maskMsPerTokenFreeText: freeText.otherMsPerToken - plain.otherMsPerToken,
      maskSlowdownFreeText: (freeText.otherMsPerToken - plain.otherMsPerToken) / (1000 / plain.tokPerS),
      extractionMsStepwise: step.ms / seeds,
      extractionMsJumpForward: jump.ms / seeds,
      jumpForwardSpeedup: step.ms / jump.ms,
    });
  }
}
info.jumpForwardIdentical = firstDiff < 0 ? 1 : 0;
info.jumpForwardFirstDifference = firstDiff;
const greedyStep = await extraction(false, 0, 1);
const greedyJump = await extraction(true, 0, 1);
info.jumpForwardIdenticalGreedy = firstDifference(greedyStep.ids, greedyJump.ids) < 0 ? 1 : 0;
info.extractionIncomplete = incomplete;
await model.release();
process.stdout.write(`${JSON.stringify({ loadMs, samples, peakRssMb: peakRssMb(), info })}\n`);
