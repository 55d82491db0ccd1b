/**
 * A transcript as timed segments, and as text, SRT and WebVTT.
 *
 * The model gives text without timestamps, so every time here is an ESTIMATE built from what is
 * known exactly — each window's start and end in the recording — and the position of text in it:
 *
 * - Window borders: consecutive windows overlap, and their texts are joined on the words both heard
 *   (audio/chunking.ts). The border between two windows' segments is put where that join happened:
 *   the join's position in each window's text (in characters) gives a time in each window,
 *   proportionally (a window's text spread evenly over the window); the border is their mean, kept
 *   inside the two windows' overlap.
 * - Inside a window's part of the text: split after sentence punctuation (. ! ? … and 。！？), each
 *   piece timed by linear interpolation on its character position between the part's borders.
 *
 * So segments are at least per window and exact at the recording's ends; inside, they are as good
 * as the assumption that speech is spread evenly over a window (silences at a window's edges pull
 * estimates a few seconds off). Times only grow: each segment ends where the next starts.
 */
import type { Transcript } from "./transcribe.ts";

export interface TranscriptSegment {
  startSeconds: number;
  endSeconds: number;
  /** A slice of the transcript's text, trimmed; never empty. Segments in order, joined by the whitespace between them, are the whole text. */
  text: string;
}

export interface SegmentOptions {
  /** Split each window's text after sentence punctuation (default true); false: one segment per window. */
  sentences?: boolean;
}

/** Counts non-whitespace UTF-16 units, the measure the chunk joins report (see `MergeResult`). */
function visibleChars(text: string): number {
  return text.replace(/\s+/g, "").length;
}

/** Sentence ends: punctuation (then closing quotes or brackets) before whitespace or the end; CJK stops anywhere. */
const SENTENCE_END = /[.!?…]+["'”’»)\]]*(?=\s|$)|[。！？]+[」』”’)）]*/gu;

/** The transcript's text as timed segments (see the file comment). */
export function transcriptSegments(transcript: Transcript, opts: SegmentOptions = {}): TranscriptSegment[] {
  const { text, chunks } = transcript;
  // Where each non-whitespace character of the text is (offsets[k] = index of the k-th one).
  const total = visibleChars(text);
  const offsets = new Int32Array(total);
  for (let i = 0, k = 0; i < text.length; i++) if (!/\s/.test(text[i])) offsets[k++] = i;
  if (total === 0 || chunks.length === 0) return [];

  // Each window's part of the text: [from[i], from[i + 1]) in non-whitespace characters. A later
  // join may cut into earlier parts (rarely: a window that heard only the overlap); parts then shrink, to nothing at worst.
  const n = chunks.length;
  const from: number[] = chunks.map((c, i) => (i === 0 ? 0 : Math.min(total, c.join?.before ?? total)));
  from.push(total);
  for (let i = n - 1; i >= 0; i--) from[i] = Math.min(from[i], from[i + 1]);
  const chunkChars = chunks.map((c) => visibleChars(c.text));

  // Border times: the recording's ends exactly, each join estimated (see the file comment).
  const border: number[] = [chunks[0].startSeconds];
  for (let i = 1; i < n; i++) {
    const prev = chunks[i - 1];
    const cur = chunks[i];
    const prevLength = prev.endSeconds - prev.startSeconds;
    const curLength = cur.endSeconds - cur.startSeconds;
    // In the earlier window: how far into its text the join falls.
    const prevOffset = (prev.join?.dropped ?? 0) + (from[i] - from[i - 1]);
    const inPrev = prev.startSeconds + (chunkChars[i - 1] > 0 ? Math.min(1, prevOffset / chunkChars[i - 1]) : 1) * prevLength;
    // In this window: how much of its text was left out as already heard.
    const inCur = cur.startSeconds + (chunkChars[i] > 0 ? Math.min(1, (cur.join?.dropped ?? 0) / chunkChars[i]) : 0) * curLength;
    const low = Math.max(border[i - 1], Math.min(cur.startSeconds, prev.endSeconds));
    const high = Math.max(low, prev.endSeconds);
    border.push(Math.min(high, Math.max(low, (inPrev + inCur) / 2)));
  }
  border.push(Math.max(border[n - 1], chunks[n - 1].endSeconds));

  // Cut points (non-whitespace positions): the window borders, and sentence ends inside parts.
  const sentenceEnds: number[] = [];
  if (opts.sentences ?? true) {
    let k = 0;
    for (const m of text.matchAll(SENTENCE_END)) {
      const end = (m.index ?? 0) + m[0].length; // string index just past the punctuation
      while (k < total && offsets[k] < end) k++;
      sentenceEnds.push(k);
    }
  }
  const segments: TranscriptSegment[] = [];
  let s = 0;
  for (let i = 0; i < n; i++) {
    const a = from[i];
    const b = from[i + 1];
    if (a === b) continue;
    const timeAt = (p: number) => border[i] + ((p - a) / (b - a)) * (border[i + 1] - border[i]);
    const cuts = [a];
    while (s < sentenceEnds.length && sentenceEnds[s] <= a) s++;
    for (let j = s; j < sentenceEnds.length && sentenceEnds[j] < b; j++) cuts.push(sentenceEnds[j]);
    cuts.push(b);
    for (let j = 0; j + 1 < cuts.length; j++) {
      const p = cuts[j];
      const q = cuts[j + 1];
      if (q <= p) continue;
      const piece = text.slice(offsets[p], q < total ? offsets[q] : text.length).trim();
      if (piece === "") continue;
      segments.push({ startSeconds: timeAt(p), endSeconds: timeAt(q), text: piece });
    }
  }
  return segments;
}

/** Milliseconds, rounded; the same time always rounds the same way, so touching segments stay touching. */
function milliseconds(seconds: number): number {
  return Math.max(0, Math.round(seconds * 1000));
}

function timestamp(seconds: number, decimal: "," | "."): string {
  const ms = milliseconds(seconds);
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  const pad = (v: number, width: number) => String(v).padStart(width, "0");
  return `${pad(h, 2)}:${pad(m, 2)}:${pad(s, 2)}${decimal}${pad(ms % 1000, 3)}`;
}

/** A cue's text lines: no blank line inside (it would end the cue), line ends as \n. */
function cueLines(text: string): string {
  return text
    .split(/\r\n|\r|\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join("\n");
}

/** The plain transcript, one line (the text as the model wrote it, then a newline). */
export function toText(transcript: Pick<Transcript, "text">): string {
  return `${transcript.text}\n`;
}

/**
 * SubRip: `index`, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the text, a blank line. SRT has no escapes:
 * a "-->" in the text (which readers take for a timing line) is written "-- >".
 */
export function toSrt(segments: readonly TranscriptSegment[]): string {
  let out = "";
  let index = 0;
  for (const seg of segments) {
    const text = cueLines(seg.text).replaceAll("-->", "-- >");
    if (text === "") continue;
    out += `${++index}\n${timestamp(seg.startSeconds, ",")} --> ${timestamp(seg.endSeconds, ",")}\n${text}\n\n`;
  }
  return out;
}

/**
 * WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm` and their text, with
 * `&`, `<` and `>` written as character references as the format requires (so no "-->" either).
 */
export function toVtt(segments: readonly TranscriptSegment[]): string {
  let out = "WEBVTT\n\n";
  for (const seg of segments) {
    const text = cueLines(seg.text).replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
    if (text === "") continue;
    out += `${timestamp(seg.startSeconds, ".")} --> ${timestamp(seg.endSeconds, ".")}\n${text}\n\n`;
  }
  return out;
}
