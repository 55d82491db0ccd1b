/**
 * Decode states kept between the calls of a conversation, so each call runs only the tokens its
 * prompt adds (as llama.cpp's server reuses its prompt cache). A conversation re-renders its whole
 * history every call; the state of an earlier call continues it when that state's ids are a
 * prefix of the new prompt, token for token — so what the model sees is exactly what a full
 * prefill of the same prompt would run, whatever the chat template or the tokenizer did to the
 * history (a reply re-tokenised differently, trimmed, rolled back: that state is simply not a
 * prefix, and an older one, or a full prefill, is used).
 *
 * LFM2's conv layers carry a recurrent window, so a state cannot be cut back to a shorter prefix
 * as a KV cache alone could: hence several states, at the boundaries that usually match (after a
 * prompt: the history up to the assistant header; after a reply: the reply as generated).
 */
import type { PrefilledPrefix } from "./generate.ts";
import { startsWithPrefix } from "./generate.ts";

/** How many states a cache keeps by default: a call's two (prompt, reply) and the call's before. */
export const DEFAULT_PROMPT_CACHE_STATES = 4;

export class PromptCache {
  private entries: PrefilledPrefix[] = [];

  constructor(
    /** States kept at most (the oldest go first); each is a full copy of the conv windows and KV rows. */
    readonly limit = DEFAULT_PROMPT_CACHE_STATES,
  ) {}

  /** The kept state with the longest ids that `promptIds` starts with (none: a full prefill). */
  lookup(promptIds: readonly number[]): PrefilledPrefix | undefined {
    let best: PrefilledPrefix | undefined;
    for (const e of this.entries) if ((best === undefined || e.ids.length > best.ids.length) && startsWithPrefix(promptIds, e.ids)) best = e;
    return best;
  }

  /** Keeps `entry` (as `GenerateOptions.onState` gives it); the state must not be advanced afterwards. */
  add(entry: PrefilledPrefix): void {
    // The same ids twice (a call that prefilled nothing new): the newer state replaces the older.
    this.entries = this.entries.filter((e) => e.ids.length !== entry.ids.length || !startsWithPrefix(e.ids, entry.ids));
    this.entries.push(entry);
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit);
  }

  /** The states kept now, to go back to with `restore` (a cancelled turn's states would crowd out older, useful ones). */
  snapshot(): readonly PrefilledPrefix[] {
    return this.entries.slice();
  }

  restore(entries: readonly PrefilledPrefix[]): void {
    this.entries = entries.slice();
  }

  clear(): void {
    this.entries = [];
  }

  get size(): number {
    return this.entries.length;
  }
}
