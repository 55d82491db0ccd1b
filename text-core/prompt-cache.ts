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

/** Bytes a kept state holds: its decode state, its logits and its ids. */
export function prefixBytes(entry: PrefilledPrefix): number {
  return entry.state.bytes + entry.logits.byteLength + entry.ids.length * 8;
}

export interface PromptCacheStats {
  entries: number;
  bytes: number;
  /** Lookups that found a state, and that found none. */
  hits: number;
  misses: number;
}

/**
 * States kept by recency: `lookup` refreshes the state it finds, and the least recently used go
 * first when the cache holds more than `limit` states or more than `maxBytes` bytes. One cache may
 * serve many conversations at once (a server's clients): each finds its own longest prefix.
 */
export class PromptCache {
  /** Least recently used first. */
  private entries: PrefilledPrefix[] = [];
  private heldBytes = 0;
  private hitCount = 0;
  private missCount = 0;

  constructor(
    /** States kept at most (the least recently used go first); each is a full copy of the conv windows and KV rows. */
    readonly limit = DEFAULT_PROMPT_CACHE_STATES,
    /** Bytes the kept states may hold together (`prefixBytes`); a state larger than this alone is not kept. */
    readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {}

  /** The kept state with the longest ids that `promptIds` starts with (none: a full prefill); it becomes the most recently used. */
  lookup(promptIds: readonly number[]): PrefilledPrefix | undefined {
    let best: PrefilledPrefix | undefined;
    for (const e of this.entries) if ((best === undefined || e.ids.length > best.ids.length) && startsWithPrefix(promptIds, e.ids)) best = e;
    if (best === undefined) {
      this.missCount++;
      return undefined;
    }
    this.hitCount++;
    const found = best;
    this.entries = [...this.entries.filter((e) => e !== found), found];
    return found;
  }

  /** Keeps `entry` (as `GenerateOptions.onState` gives it); the state must not be advanced afterwards. */
  add(entry: PrefilledPrefix): void {
    const bytes = prefixBytes(entry);
    // The same ids twice (a call that prefilled nothing new): the newer state replaces the older.
    this.entries = this.entries.filter((e) => e.ids.length !== entry.ids.length || !startsWithPrefix(e.ids, entry.ids));
    if (bytes <= this.maxBytes) this.entries.push(entry);
    this.heldBytes = this.entries.reduce((sum, e) => sum + prefixBytes(e), 0);
    while (this.entries.length > this.limit || this.heldBytes > this.maxBytes) this.heldBytes -= prefixBytes(this.entries.shift()!);
  }

  /** The states kept now, to go back to with `restore` (a cancelled turn's states would crowd out older, useful ones). */
  snapshot(): readonly PrefilledPrefix[] {
    return this.entries.slice();
  }

  restore(entries: readonly PrefilledPrefix[]): void {
    this.entries = entries.slice();
    this.heldBytes = this.entries.reduce((sum, e) => sum + prefixBytes(e), 0);
  }

  clear(): void {
    this.entries = [];
    this.heldBytes = 0;
  }

  get size(): number {
    return this.entries.length;
  }

  /** Bytes the kept states hold (`prefixBytes` of each). */
  get bytes(): number {
    return this.heldBytes;
  }

  stats(): PromptCacheStats {
    return { entries: this.entries.length, bytes: this.heldBytes, hits: this.hitCount, misses: this.missCount };
  }
}
