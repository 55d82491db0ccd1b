// The query terms found in a passage, as character ranges to mark. Plain functions (no DOM), so the
// server's tests run them in Node too.

/** The words of a query worth marking: letters or digits, 2 characters or more, lower-cased, each once. */
export function queryTerms(query) {
  const words = query.toLocaleLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  return [...new Set(words.filter((w) => w.length >= 2 || /\p{N}/u.test(w)))];
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Where the terms occur in `text`: sorted, non-overlapping [start, end) ranges. A term matches at
 * the start of a word and may run on ("pump" marks "pumps"), case-insensitively.
 */
export function termRanges(text, terms) {
  if (terms.length === 0) return [];
  // Longer terms first, so "pressure" wins over "press" where both start at one place.
  const alternatives = [...terms].sort((a, b) => b.length - a.length).map(escapeRegExp).join("|");
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives})[\\p{L}\\p{N}]*`, "giu");
  const ranges = [];
  for (const m of text.matchAll(pattern)) ranges.push([m.index, m.index + m[0].length]);
  return ranges;
}

/** `text` cut into pieces, each `{ text, mark }`: what a page renders with <mark> around the marked ones. */
export function highlightPieces(text, query) {
  const pieces = [];
  let at = 0;
  for (const [start, end] of termRanges(text, queryTerms(query))) {
    if (start > at) pieces.push({ text: text.slice(at, start), mark: false });
    pieces.push({ text: text.slice(start, end), mark: true });
    at = end;
  }
  if (at < text.length) pieces.push({ text: text.slice(at), mark: false });
  return pieces;
}

/**
 * An answer cut into pieces around its citations (`[2]`, `[1, 3]`, as pipelines/citations.ts reads
 * them): `{ text }` for plain text, `{ cite: [n, ...] }` for a bracket of passage numbers.
 */
export function citationPieces(text) {
  const pieces = [];
  let at = 0;
  for (const m of text.matchAll(/\[(\s*\d+(?:\s*[,;]\s*\d+)*\s*)\]/g)) {
    if (m.index > at) pieces.push({ text: text.slice(at, m.index) });
    pieces.push({ cite: m[1].split(/[,;]/).map((n) => Number(n.trim())) });
    at = m.index + m[0].length;
  }
  if (at < text.length) pieces.push({ text: text.slice(at) });
  return pieces;
}
