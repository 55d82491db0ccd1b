/**
 * Where each value of a generated JSON text lies, and what the tokens that wrote it were worth.
 *
 * `jsonLeafSpans` parses JSON text (as `JSON.parse` does) and records the character span of every
 * scalar value (string, number, boolean, null), keyed by its JSON pointer (RFC 6901: `/items/0/sku`).
 * `tokenCharSpans` gives each generated token the characters of the decoded text it wrote, and
 * `leafConfidence` averages the log-probabilities of the tokens that overlap a value's span.
 */
import { LfmError } from "../text-core/errors.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";

/** A scalar value's place in the text: [start, end) in UTF-16 code units, quotes included for a string. */
export interface LeafSpan {
  pointer: string;
  start: number;
  end: number;
  value: string | number | boolean | null;
}

/** One token of a pointer path, escaped as RFC 6901 asks (`~` → `~0`, `/` → `~1`). */
export function pointerToken(key: string | number): string {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

/** Every scalar value of a JSON text with its span, in text order. Throws OUTPUT_INCOMPLETE when the text is not one whole JSON value. */
export function jsonLeafSpans(text: string): LeafSpan[] {
  const leaves: LeafSpan[] = [];
  let at = 0;
  const fail = (what: string): never => {
    throw new LfmError("OUTPUT_INCOMPLETE", `the generated JSON is not complete (${what} at character ${at}); raise maxTokens.`);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const stringEnd = (): number => {
    // at is on the opening quote; returns the index after the closing one.
    let i = at + 1;
    while (i < text.length) {
      const c = text[i];
      if (c === "\\") i += 2;
      else if (c === '"') return i + 1;
      else i++;
    }
    return fail("an unterminated string");
  };
  const value = (pointer: string): void => {
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      space();
      if (text[at] === "}") {
        at++;
        return;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail("a missing key");
        const end = stringEnd();
        const key = JSON.parse(text.slice(at, end)) as string;
        at = end;
        space();
        if (text[at] !== ":") fail("a missing ':'");
        at++;
        value(`${pointer}/${pointerToken(key)}`);
        space();
        if (text[at] === ",") at++;
        else if (text[at] === "}") {
          at++;
          return;
        } else fail("an unclosed object");
      }
    }
    if (c === "[") {
      at++;
      space();
      if (text[at] === "]") {
        at++;
        return;
      }
      for (let i = 0; ; i++) {
        value(`${pointer}/${i}`);
        space();
        if (text[at] === ",") at++;
        else if (text[at] === "]") {
          at++;
          return;
        } else fail("an unclosed array");
      }
    }
    const start = at;
    if (c === '"') at = stringEnd();
    else {
      const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(at, at + 400));
      if (!m) fail("no value");
      at += m![0].length;
    }
    leaves.push({ pointer, start, end: at, value: JSON.parse(text.slice(start, at)) as LeafSpan["value"] });
  };
  value("");
  space();
  if (at !== text.length) fail("text after the value");
  return leaves;
}

/** [start, end) of the decoded text each token wrote (a token ending inside a UTF-8 character writes nothing: start = end). */
export function tokenCharSpans(tokenizer: Lfm2Tokenizer, ids: readonly number[]): Array<[number, number]> {
  const decoder = tokenizer.createStreamDecoder({ skipSpecialTokens: true });
  const spans: Array<[number, number]> = [];
  let length = 0;
  for (const id of ids) {
    const start = length;
    length += decoder.push(id).length;
    spans.push([start, length]);
  }
  return spans;
}

/**
 * Mean log-probability of the tokens that wrote each leaf (those overlapping its span; a token
 * that wrote nothing counts with the character it leads to). Keyed by JSON pointer.
 */
export function leafConfidence(leaves: readonly LeafSpan[], tokenSpans: ReadonlyArray<[number, number]>, logprobs: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  let first = 0;
  for (const leaf of leaves) {
    // Leaves come in text order, so the scan for the first overlapping token only moves forward.
    while (first < tokenSpans.length && tokenSpans[first][1] <= leaf.start && tokenSpans[first][0] < tokenSpans[first][1]) first++;
    let sum = 0;
    let n = 0;
    for (let t = first; t < tokenSpans.length; t++) {
      const [s, e] = tokenSpans[t];
      if (s >= leaf.end) break;
      const overlaps = s === e ? s >= leaf.start : e > leaf.start;
      if (!overlaps) continue;
      sum += logprobs[t];
      n++;
    }
    out[leaf.pointer] = n === 0 ? 0 : sum / n;
  }
  return out;
}
