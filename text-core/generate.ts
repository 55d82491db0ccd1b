/**
 * Autoregressive generation over an `Lfm2Runtime`: the prompt in one call (prefill), then one
 * token per call reusing the conv/KV state. Streams tokens; stops on stop ids, max tokens or an
 * AbortSignal. Batches are left-padded so every prompt ends at the same column, which gives each
 * row exactly the result it gets alone (pads are masked out of attention and zeroed in the conv).
 *
 * With a `constraint` (structured output), every step first sets the logits of the tokens the
 * grammar rejects to -Infinity, so the sampler (all of its options) only ever sees allowed tokens,
 * and generation stops as soon as the grammar is complete. A token the grammar forces (the only
 * one allowed) is taken without a draw, so the random stream, and with it every later token, is
 * the same whether forced runs are fed one by one or in one call (jump-forward).
 */
import type { BatchRow, DecodeBatcher } from "./decode-batcher.ts";
import { LfmError } from "./errors.ts";
import type { DecodeState, ForwardRequest, Lfm2Runtime } from "./runtime.ts";
import { Sampler, type SamplingOptions } from "./sampler.ts";
import type { CompiledConstraint, TokenMatcher } from "./structured/xgrammar.ts";

export interface GenerateOptions extends SamplingOptions {
  /** Maximum number of new tokens (default 256). */
  maxTokens?: number;
  /** Token ids that end generation (not included in the output). Default: the config's EOS ids. */
  stopTokenIds?: number[];
  signal?: AbortSignal;
  /** Replaced embedding rows for the prompt (vision/audio), flattened [S·D] indices of row 0. */
  promptOverrides?: ForwardRequest["overrides"];
  /** A compiled grammar (see structured/response-format.ts): each sequence gets its own matcher. */
  constraint?: CompiledConstraint;
  /**
   * With a constraint: where the grammar allows exactly one next token (the key after `{"`), take
   * it and run the whole forced run in one forward call instead of one call per token (default
   * true; single sequences only). The tokens are those of the step-by-step run.
   */
  jumpForward?: boolean;
  /**
   * A prompt prefix already run through the model (`prefillPrefix`): when the prompt starts with
   * its ids, generation continues from a copy of its state and runs only the rest of the prompt.
   * The tokens are those of a full prefill (the same computation, split in two calls). Single
   * sequences only (`generate`, `TextModel.stream`/`complete`); batches always prefill in full.
   */
  prefix?: PrefilledPrefix;
  /**
   * Report each chosen token's log-probability (`GeneratedToken.logprob`): the log-softmax of the
   * chosen id over the logits after the grammar mask, at temperature 1, before any sampling option
   * (repetition penalty, top-k/p, min-p) — the model's own distribution over what the format
   * allows. A token the grammar forces has probability 1 (log-probability 0). Changes no output:
   * the sampler sees the same logits and draws the same numbers. Single-sequence generation
   * (`generate`, `TextModel.complete`: `Completion.logprobs`); batches ignore it.
   */
  logprobs?: boolean;
  /**
   * With `logprobs`: also report the `topLogprobs` most likely ids at each step
   * (`GeneratedToken.topLogprobs`), from the same masked distribution, most likely first (ties:
   * lower id first). A forced token's only alternative is itself. Changes no output.
   */
  topLogprobs?: number;
  /**
   * Receives the decode state to continue a conversation from (see prompt-cache.ts): at "prompt",
   * a copy of the state after the prompt; at "end", when generation finishes (not when it throws
   * or its consumer stops early), the state itself after every token that went through the model
   * (the prompt and the new tokens, all but the last one: it was chosen, never run). Single
   * sequences only (`generate`); batches ignore it.
   */
  onState?: (kept: PrefilledPrefix, at: "prompt" | "end") => void;
  /**
   * Share decode steps with the other generations on the same runtime (decode-batcher.ts): the
   * prompt runs alone in pieces between their steps, then each new token goes through one forward
   * call with theirs. The tokens are those of running alone (see decode-batcher.ts for how close
   * the logits are); every other option works as without it. Single sequences only (`generate`).
   */
  batcher?: DecodeBatcher;
}

/** The decode state after a fixed prompt prefix, reusable by any number of prompts that start with it. */
export interface PrefilledPrefix {
  readonly ids: readonly number[];
  /** The state after `ids`; never advanced (each use runs on a clone). */
  readonly state: DecodeState;
  /** Last-position logits after `ids` (for a prompt that is the prefix alone). */
  readonly logits: Float32Array;
}

/** Runs `ids` through the model once and keeps the state, for `GenerateOptions.prefix`. */
export async function prefillPrefix(runtime: Lfm2Runtime, ids: readonly number[]): Promise<PrefilledPrefix> {
  if (ids.length === 0) throw new LfmError("EMPTY_PROMPT", "the prefix to prefill is empty.");
  if (ids.length >= runtime.config.maxPositionEmbeddings) {
    throw new LfmError("PROMPT_TOO_LONG", `the prefix has ${ids.length} tokens but the model's context is ${runtime.config.maxPositionEmbeddings}.`);
  }
  const state = runtime.newState(1, ids.length);
  const { output } = await runtime.forward(state, { ids: [ids.slice()] });
  return { ids: ids.slice(), state, logits: output };
}

/** Whether `promptIds` starts with all of `prefix`. */
export function startsWithPrefix(promptIds: readonly number[], prefix: readonly number[]): boolean {
  if (prefix.length > promptIds.length) return false;
  for (let i = 0; i < prefix.length; i++) if (promptIds[i] !== prefix[i]) return false;
  return true;
}

/**
 * The state and the last logits after `promptIds`: from a clone of `prefix` when the prompt starts
 * with it (only the rest runs), else a full prefill.
 */
async function prefill(runtime: Lfm2Runtime, promptIds: readonly number[], opts: GenerateOptions): Promise<{ state: DecodeState; logits: Float32Array }> {
  const batcher = opts.batcher;
  // With a batcher, the prompt's pieces take turns with the batch's steps.
  const run = async (state: DecodeState, ids: readonly number[], overrides?: ForwardRequest["overrides"]) =>
    batcher ? batcher.prefill(state, ids, overrides, opts.signal) : (await runtime.forward(state, { ids: [ids.slice()], overrides })).output;
  const prefix = opts.prefix;
  if (prefix && startsWithPrefix(promptIds, prefix.ids)) {
    if (opts.promptOverrides) throw new LfmError("INVALID_ARGUMENT", "promptOverrides cannot be combined with a prefilled prefix.");
    const state = prefix.state.clone();
    const rest = promptIds.slice(prefix.ids.length);
    if (rest.length === 0) return { state, logits: prefix.logits.slice() };
    return { state, logits: await run(state, rest) };
  }
  const state = runtime.newState(1);
  return { state, logits: await run(state, promptIds, opts.promptOverrides) };
}

/** Why generation ended: "stop" = a stop token or a complete grammar; "length" = `maxTokens` (or the context) ran out first. */
export type FinishReason = "stop" | "length";

export interface GeneratedToken {
  id: number;
  /** Index of this token among the new ones (0-based). */
  index: number;
  /** With `logprobs: true`: ln P(id) under the masked distribution at temperature 1 (≤ 0). */
  logprob?: number;
  /** With `topLogprobs` > 0: the most likely ids of that distribution and their ln P, most likely first. */
  topLogprobs?: { id: number; logprob: number }[];
}

/** ln softmax(logits)[id]: the logits' log-sum-exp taken from their maximum (−∞ entries add nothing). */
export function logSoftmaxAt(logits: Float32Array, id: number): number {
  return logits[id] - logSumExp(logits);
}

function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/**
 * The `n` most likely ids of softmax(logits) with their ln P, most likely first (ties: lower id
 * first); ids masked to −∞ are never listed. One pass, keeping a sorted list of n (n ≤ 20).
 */
export function topLogSoftmax(logits: Float32Array, n: number): { id: number; logprob: number }[] {
  const ids: number[] = [];
  for (let i = 0; i < logits.length && n > 0; i++) {
    const v = logits[i];
    if (v === -Infinity || (ids.length === n && v <= logits[ids[n - 1]])) continue;
    let at = ids.length;
    while (at > 0 && logits[ids[at - 1]] < v) at--;
    ids.splice(at, 0, i);
    if (ids.length > n) ids.pop();
  }
  const lse = logSumExp(logits);
  return ids.map((id) => ({ id, logprob: logits[id] - lse }));
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

/** Streams the new tokens for one prompt; the generator's return value says why it ended. */
export async function* generate(runtime: Lfm2Runtime, promptIds: readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken, FinishReason> {
  if (promptIds.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty: give at least one token (e.g. BOS).");
  const maxTokens = resolveMaxTokens(runtime, promptIds.length, opts.maxTokens);
  const stop = new Set(opts.stopTokenIds ?? runtime.config.eosTokenIds);
  const sampler = new Sampler(opts);
  checkAbort(opts.signal);
  if (maxTokens === 0) return "length";

  if (opts.batcher && opts.batcher.runtime !== runtime) throw new LfmError("INVALID_ARGUMENT", "the decode batcher belongs to another model's runtime.");
  const matcher = opts.constraint ? await opts.constraint.newMatcher([...stop]) : undefined;
  const jumpForward = matcher !== undefined && (opts.jumpForward ?? true);
  let row: BatchRow | undefined;
  try {
    const seen = [...promptIds];
    let state: DecodeState | undefined;
    let logits: Float32Array;
    ({ state, logits } = await prefill(runtime, promptIds, opts));
    /** The ids the state holds: the prompt, then each run of new tokens fed back. */
    const fed = opts.onState ? [...promptIds] : [];
    opts.onState?.({ ids: promptIds.slice(), state: state.clone(), logits: logits.slice() }, "prompt");
    // The grammar masks (and the sampler may change) `logits` in place: the kept state gets them as the model gave them.
    let lastLogits = opts.onState ? logits.slice() : logits;
    row = opts.batcher?.join(state);
    // Batched, the state is the batcher's (moved into its batched state at the first step): holding
    // it here as well would keep a second copy of the KV cache alive for the whole reply.
    if (row) state = undefined;
    /** The logits after `ids`: in the batch, or on this generation's own state. */
    const advance = async (ids: number[]): Promise<Float32Array> => (row ? row.step(ids) : (await runtime.forward(state as DecodeState, { ids: [ids] })).output);
    const finish = async (reason: FinishReason): Promise<FinishReason> => {
      // In a batch the row's own state is taken out of the batched one.
      if (opts.onState) opts.onState({ ids: fed, state: (row ? await row.leave(true) : state) as DecodeState, logits: lastLogits }, "end");
      return reason;
    };
    let index = 0;
    for (;;) {
      checkAbort(opts.signal);
      let id = matcher ? await matcher.forcedToken() : undefined;
      let logprob = 0; // a forced token: the only one allowed
      let top: { id: number; logprob: number }[] | undefined;
      if (id === undefined) {
        if (matcher) await matcher.mask(logits);
        id = sampler.pick(logits, seen);
        if (opts.logprobs) logprob = logSoftmaxAt(logits, id);
        if (opts.logprobs && opts.topLogprobs) top = topLogSoftmax(logits, opts.topLogprobs);
      }
      if (stop.has(id)) return await finish("stop");
      const pending = [id];
      for (;;) {
        matcher?.accept(id);
        seen.push(id);
        if (!opts.logprobs) yield { id, index: index++ };
        else if (!opts.topLogprobs) yield { id, index: index++, logprob };
        else yield { id, index: index++, logprob, topLogprobs: top ?? [{ id, logprob: 0 }] };
        logprob = 0; // the tokens of a forced run that follow
        top = undefined;
        if (matcher && (await matcher.finished())) return await finish("stop");
        if (index === maxTokens) return await finish("length");
        checkAbort(opts.signal); // the consumer may have aborted on this token: run nothing more
        const forced = jumpForward ? await matcher!.forcedToken() : undefined;
        if (forced === undefined) break;
        pending.push((id = forced));
      }
      logits = await advance(pending);
      if (opts.onState) {
        fed.push(...pending);
        lastLogits = logits.slice();
      }
    }
  } finally {
    matcher?.dispose();
    await row?.leave(); // done, failed or stopped by its consumer: the others go on without it
  }
}

/** Runs a token stream to its end: the ids, why it ended, and each token's log-probability when the stream reports them. */
export async function collectTokens(tokens: AsyncGenerator<GeneratedToken, FinishReason>): Promise<{ ids: number[]; finishReason: FinishReason; logprobs?: number[] }> {
  const ids: number[] = [];
  const logprobs: number[] = [];
  for (;;) {
    const step = await tokens.next();
    if (step.done) return logprobs.length === ids.length && ids.length > 0 ? { ids, finishReason: step.value, logprobs } : { ids, finishReason: step.value };
    ids.push(step.value.id);
    if (step.value.logprob !== undefined) logprobs.push(step.value.logprob);
  }
}

/** Generates for several prompts at once; returns each prompt's new ids, as if run alone. */
export async function generateBatch(runtime: Lfm2Runtime, prompts: readonly (readonly number[])[], opts: GenerateOptions = {}): Promise<number[][]> {
  return (await generateBatchRows(runtime, prompts, opts)).map((row) => row.ids);
}

/** `generateBatch` with each row's finish reason. A constraint gets one matcher per row. */
export async function generateBatchRows(
  runtime: Lfm2Runtime,
  prompts: readonly (readonly number[])[],
  opts: GenerateOptions = {},
): Promise<{ ids: number[]; finishReason: FinishReason }[]> {
  if (prompts.length === 0) return [];
  if (prompts.some((p) => p.length === 0)) throw new LfmError("EMPTY_PROMPT", "one of the prompts is empty.");
  const longest = Math.max(...prompts.map((p) => p.length));
  const maxTokens = resolveMaxTokens(runtime, longest, opts.maxTokens);
  const stop = new Set(opts.stopTokenIds ?? runtime.config.eosTokenIds);
  const pad = runtime.config.padTokenId;
  const samplers = prompts.map((_, i) => new Sampler({ ...opts, seed: opts.seed === undefined ? undefined : opts.seed + i }));
  checkAbort(opts.signal);
  const results: number[][] = prompts.map(() => []);
  const reasons: FinishReason[] = prompts.map(() => "length");
  const done = prompts.map(() => maxTokens === 0);
  const rows = () => results.map((ids, i) => ({ ids, finishReason: reasons[i] }));
  if (maxTokens === 0) return rows();

  const matchers: TokenMatcher[] = [];
  try {
    if (opts.constraint) for (let b = 0; b < prompts.length; b++) matchers.push(await opts.constraint.newMatcher([...stop]));
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
        const matcher = matchers[b];
        let id = matcher ? await matcher.forcedToken() : undefined;
        if (id === undefined) {
          if (matcher) await matcher.mask(row);
          id = samplers[b].pick(row, [...prompts[b], ...results[b]]);
        }
        if (stop.has(id)) {
          done[b] = true;
          reasons[b] = "stop";
        } else {
          results[b].push(id);
          matcher?.accept(id);
          if (matcher && (await matcher.finished())) {
            done[b] = true;
            reasons[b] = "stop";
          }
        }
        if (results[b].length >= maxTokens) done[b] = true;
        next.push(id);
      }
      if (done.every(Boolean)) break;
      logits = await runtime.forward(state, { ids: next.map((id) => [id]) });
    }
    return rows();
  } finally {
    for (const m of matchers) m.dispose();
  }
}
