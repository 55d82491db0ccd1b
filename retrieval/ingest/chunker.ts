/**
 * Text → overlapping passages that fit the encoder. Sizes are in model tokens (counted with the
 * model's tokenizer; a character estimate when none is given): each passage holds at most
 * `maxTokens`, ends at a paragraph or sentence end when one lies in its last 40 %, and the next
 * passage starts up to `overlapTokens` earlier, at a word boundary and within the same paragraph,
 * so a sentence cut at a passage end is whole in one of the two. Passages are exact slices of the
 * text (`start`/`end` offsets).
 */
import { LfmError } from "../../text-core/errors.ts";
import type { ColbertEncoder } from "../colbert.ts";

export interface ChunkOptions {
  maxTokens: number;
  overlapTokens: number;
  /** Tokens of a piece of text (without special tokens). Default: characters / 4, rounded up. */
  countTokens?: (text: string) => number;
}

export interface Chunk {
  index: number;
  text: string;
  start: number;
  end: number;
}

interface Word {
  start: number;
  end: number;
  tokens: number;
  /** A sentence or paragraph ends after this word. */
  breakAfter: "paragraph" | "sentence" | null;
}

export const estimateTokens = (text: string): number => Math.ceil(text.length / 4);

const SENTENCE_END = /[.!?;:。！？；…]["'”’)\]»]*$/u;

export function chunkText(text: string, opts: ChunkOptions): Chunk[] {
  const { maxTokens, overlapTokens } = opts;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new LfmError("INVALID_ARGUMENT", `passage size must be a positive number of tokens, got ${maxTokens}.`);
  if (!Number.isInteger(overlapTokens) || overlapTokens < 0 || overlapTokens >= maxTokens) {
    throw new LfmError("INVALID_ARGUMENT", `passage overlap must be at least 0 and below the passage size (${maxTokens}), got ${overlapTokens}.`);
  }
  const count = memoised(opts.countTokens ?? estimateTokens);
  const words = splitWords(text, count, maxTokens);
  const chunks: Chunk[] = [];
  let first = 0;
  while (first < words.length) {
    // Greedy fill, then back off to the last paragraph/sentence end in the last 40 %.
    let last = first;
    let tokens = words[first].tokens;
    while (last + 1 < words.length && tokens + words[last + 1].tokens <= maxTokens) tokens += words[++last].tokens;
    if (last + 1 < words.length) {
      const floor = first + Math.floor((last - first) * 0.6);
      let cut = -1;
      for (let w = last; w >= floor && cut < 0; w--) if (words[w].breakAfter === "paragraph") cut = w;
      for (let w = last; w >= floor && cut < 0; w--) if (words[w].breakAfter === "sentence") cut = w;
      if (cut >= 0) last = cut;
    }
    // The per-word sum can miss merges across words: check the passage itself and trim if needed.
    while (last > first && count(text.slice(words[first].start, words[last].end)) > maxTokens) last--;
    chunks.push({ index: chunks.length, text: text.slice(words[first].start, words[last].end), start: words[first].start, end: words[last].end });
    if (last + 1 >= words.length) break;
    // Overlap within a paragraph only: text across a paragraph (or PDF page) break needs none.
    let next = last + 1;
    let overlap = 0;
    while (next - 1 > first && words[next - 1].breakAfter !== "paragraph" && overlap + words[next - 1].tokens <= overlapTokens) overlap += words[--next].tokens;
    first = next;
  }
  return chunks;
}

/** Whitespace-separated words with their token counts; over-long words split into pieces. */
function splitWords(text: string, count: (s: string) => number, maxTokens: number): Word[] {
  const words: Word[] = [];
  for (const m of text.matchAll(/\S+/gu)) {
    const start = m.index as number;
    const end = start + m[0].length;
    const gapAfter = /^\s*/.exec(text.slice(end, end + 8))?.[0] ?? "";
    const breakAfter = /\n\s*\n/.test(gapAfter) || end === text.length ? "paragraph" : SENTENCE_END.test(m[0]) ? "sentence" : null;
    const tokens = count(` ${m[0]}`);
    if (tokens <= Math.max(1, maxTokens / 4)) {
      words.push({ start, end, tokens, breakAfter });
      continue;
    }
    // No spaces to split at (CJK text, long URLs): pieces of a few characters (code points, never
    // half a surrogate pair), small enough for overlaps to be made of them.
    const pieceChars = Math.max(4, Math.floor(maxTokens / 8));
    const chars = Array.from(m[0]);
    let at = start;
    for (let i = 0; i < chars.length; i += pieceChars) {
      const piece = chars.slice(i, i + pieceChars).join("");
      const isLast = i + pieceChars >= chars.length;
      words.push({ start: at, end: at + piece.length, tokens: Math.max(1, count(piece)), breakAfter: isLast ? breakAfter : null });
      at += piece.length;
    }
  }
  return words;
}

function memoised(count: (s: string) => number): (s: string) => number {
  const memo = new Map<string, number>();
  return (s) => {
    let n = memo.get(s);
    if (n === undefined) {
      n = count(s);
      if (memo.size < 100_000) memo.set(s, n);
    }
    return n;
  };
}

/** Model tokens of a text with the ColBERT encoder's own tokenizer (no BOS or prefix); the estimate when it has none. */
export async function encoderTokenCounter(encoder: ColbertEncoder): Promise<(text: string) => number> {
  const [{ loadPylateFolder }, { Lfm2Tokenizer }] = await Promise.all([import("../pylate-config.ts"), import("../../text-core/tokenizer.ts")]);
  try {
    const tokenizer = await Lfm2Tokenizer.fromDir(loadPylateFolder(encoder.dir).backboneDir);
    return (text) => tokenizer.encode(text, { addSpecialTokens: false }).length;
  } catch {
    return estimateTokens;
  }
}
