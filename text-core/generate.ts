/**
 * Autoregressive generation over an `Lfm2Runtime`: the prompt in one call (prefill), then one
 * token per call reusing the conv/KV state. Streams tokens; stops on stop ids, max tokens or an
 * AbortSignal. Batches are left-padded so every prompt ends at the same column, which gives each
 * row exactly the result it gets alone (pads are masked out of attention and zeroed in the conv).
 */
import { LfmError } from "./errors.ts";
import type { DecodeState, ForwardRequest, Lfm2Runtime } from "./runtime.ts";
import { Sampler, type SamplingOptions } from "./sampler.ts";

export interface GenerateOptions extends SamplingOptions {
  /** Maximum number of new tokens (default 256). */
  maxTokens?: number;
  /** Token ids that end generation (not included in the output). Default: the config's EOS ids. */
  stopTokenIds?: number[];
  signal?: AbortSignal;
  /** Replaced embedding rows for the prompt (vision/audio), flattened [S·D] indices of row 0. */
  promptOverrides?: ForwardRequest["overrides"];
}

export interface GeneratedToken {
  id: number;
  /** Index of this token among the new ones (0-based). */
  index: number;
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new LfmError("ABORTED", "generation was cancelled.");
}

function resolveMaxTokens(runtime: Lfm2Runtime, promptLength: number, requested: number | undefined): number {
  const maxTokens = requested ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) {
    throw new LfmError("INVALID_ARGUMENT", `maxTokens must be a non-negative integer (got ${requested}).`);
  }
  const context = runtime.config.maxPositionEmbeddings;
  if (promptLength >= context) {
    throw new LfmError("PROMPT_TOO_LONG", `the prompt has ${promptLength} tokens but the model's context is ${context}; shorten it.`);
  }
  return Math.min(maxTokens, context - promptLength);
}

/** Streams the new tokens for one prompt. */
export async function* generate(runtime: Lfm2Runtime, promptIds: readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken> {
  if (promptIds.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty: give at least one token (e.g. BOS).");
  const maxTokens = resolveMaxTokens(runtime, promptIds.length, opts.maxTokens);
  const stop = new Set(opts.stopTokenIds ?? runtime.config.eosTokenIds);
  const sampler = new Sampler(opts);
  checkAbort(opts.signal);
  if (maxTokens === 0) return;

  const state: DecodeState = runtime.newState(1);
  const seen = [...promptIds];
  let logits = (await runtime.forward(state, { ids: [promptIds.slice()], overrides: opts.promptOverrides })).output;
  for (let index = 0; index < maxTokens; index++) {
    checkAbort(opts.signal);
    const id = sampler.pick(logits, seen);
    if (stop.has(id)) return;
    seen.push(id);
    yield { id, index };
    if (index + 1 === maxTokens) return;
    checkAbort(opts.signal); // the consumer may have aborted on this token: run nothing more
    logits = (await runtime.forward(state, { ids: [[id]] })).output;
  }
}

/** Generates for several prompts at once; returns each prompt's new ids, as if run alone. */
export async function generateBatch(runtime: Lfm2Runtime, prompts: readonly (readonly number[])[], opts: GenerateOptions = {}): Promise<number[][]> {
  if (prompts.length === 0) return [];
  if (prompts.some((p) => p.length === 0)) throw new LfmError("EMPTY_PROMPT", "one of the prompts is empty.");
  const longest = Math.max(...prompts.map((p) => p.length));
  const maxTokens = resolveMaxTokens(runtime, longest, opts.maxTokens);
  const stop = new Set(opts.stopTokenIds ?? runtime.config.eosTokenIds);
  const pad = runtime.config.padTokenId;
  const samplers = prompts.map((_, i) => new Sampler({ ...opts, seed: opts.seed === undefined ? undefined : opts.seed + i }));
  checkAbort(opts.signal);
  const results: number[][] = prompts.map(() => []);
  const done = prompts.map(() => maxTokens === 0);
  if (maxTokens === 0) return results;

  const B = prompts.length;
  const state = runtime.newState(B);
  const ids = prompts.map((p) => [...new Array(longest - p.length).fill(pad), ...p]);
  const mask = prompts.map((p) => [...new Array(longest - p.length).fill(0), ...p.map(() => 1)]);
  let logits = await runtime.forward(state, { ids, mask });
  for (let step = 0; step < maxTokens; step++) {
    checkAbort(opts.signal);
    const next: number[] = [];
    for (let b = 0; b < B; b++) {
      if (done[b]) {
        next.push(pad);
        continue;
      }
      const row = logits.output.subarray(b * logits.width, (b + 1) * logits.width);
      const id = samplers[b].pick(row, [...prompts[b], ...results[b]]);
      if (stop.has(id)) done[b] = true;
      else results[b].push(id);
      if (results[b].length >= maxTokens) done[b] = true;
      next.push(id);
    }
    if (done.every(Boolean)) break;
    logits = await runtime.forward(state, { ids: next.map((id) => [id]) });
  }
  return results;
}
