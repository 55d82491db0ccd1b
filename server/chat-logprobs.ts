/**
 * OpenAI's `logprobs` of a chat reply: for each new token its text, its log-probability, its
 * bytes and (with `top_logprobs`) the most likely tokens at that step, from the library's
 * `GeneratedToken.logprob` / `topLogprobs` (the model's distribution after any grammar mask, at
 * temperature 1, before sampling options).
 *
 * A token's bytes: LFM2's tokenizer is byte-level BPE, so a token's string maps back to its bytes
 * character by character (GPT-2's byte ↔ character table); a token that does not read that way
 * (a tokenizer of another kind) is taken as the UTF-8 of its decoded text. A token that is only
 * part of a character (an emoji split in two) has no text of its own: its `token` is written
 * `bytes:\xNN...`, as OpenAI writes such tokens, and its `bytes` are exact.
 */
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";

export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

/** One entry of `choices[].logprobs.content`. */
export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

/** GPT-2's table: each byte as the printable character byte-level BPE writes it with, inverted. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map = new Map<string, number>();
  for (const b of printable) map.set(String.fromCodePoint(b), b);
  let extra = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) map.set(String.fromCodePoint(256 + extra++), b);
  return map;
})();

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A token's bytes and text as OpenAI reports them, cached per tokenizer. */
const cache = new WeakMap<Lfm2Tokenizer, Map<number, { token: string; bytes: number[] }>>();

function tokenText(tokenizer: Lfm2Tokenizer, id: number): { token: string; bytes: number[] } {
  let known = cache.get(tokenizer);
  if (!known) cache.set(tokenizer, (known = new Map()));
  const hit = known.get(id);
  if (hit) return hit;
  const piece = tokenizer.idToToken(id) ?? "";
  const chars = [...piece];
  let bytes: number[];
  if (chars.length > 0 && chars.every((c) => BYTE_OF_CHAR.has(c))) bytes = chars.map((c) => BYTE_OF_CHAR.get(c) as number);
  else bytes = [...Buffer.from(tokenizer.decode([id]), "utf8")];
  let token: string;
  try {
    token = strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    token = `bytes:${bytes.map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}`;
  }
  const entry = { token, bytes };
  known.set(id, entry);
  return entry;
}

/** The `logprobs.content` entry of token `id` (its alternatives: `top`, most likely first). */
export function tokenLogprob(tokenizer: Lfm2Tokenizer, id: number, logprob: number, top: readonly { id: number; logprob: number }[] = []): TokenLogprob {
  const { token, bytes } = tokenText(tokenizer, id);
  return {
    token,
    logprob,
    bytes,
    top_logprobs: top.map((t) => {
      const alt = tokenText(tokenizer, t.id);
      return { token: alt.token, logprob: t.logprob, bytes: alt.bytes };
    }),
  };
}
