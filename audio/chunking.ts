/**
 * Long recordings in pieces the model can take, and the pieces' transcripts joined back with no
 * word lost or repeated.
 *
 * Cutting (`planChunks`): windows of at most `chunkSeconds`. Each window ends at the quietest
 * 20 ms (lowest RMS) within the last `searchSeconds` before its nominal end, so a cut rarely falls
 * inside a word; the next window starts `overlapSeconds` before that cut, so the audio around
 * every cut is heard, with context, by both windows.
 *
 * Joining (`mergeTranscripts`): the model gives text without timestamps, so the overlap is found
 * in the text. Both transcripts are split into units (words; characters for unspaced scripts such
 * as Japanese or Chinese) compared case- and punctuation-blind. The longest run of units shared by
 * the end of the text so far and the start of the next chunk's text is the overlap heard twice:
 * the result takes the first half of that run (and all before it) from the earlier text and the
 * second half (and all after it) from the next one, away from each side's border. The run
 * is searched only within the units the overlap can hold (rate of the chunk × overlap length), so a
 * phrase repeated elsewhere in the recording cannot be mistaken for it. Without a shared run of at
 * least `minRunUnits` (e.g. the model transcribed the overlap differently twice), the join falls
 * back to time: each side gives up its estimated half of the overlap.
 */
import { LfmError } from "../text-core/errors.ts";

export interface ChunkPlanOptions {
  /** Longest window, seconds (default 30). */
  chunkSeconds?: number;
  /** Audio heard by two consecutive windows, seconds (default 4). */
  overlapSeconds?: number;
  /** How far before a window's nominal end the cut may move to find a pause, seconds (default 5). */
  searchSeconds?: number;
}

export interface AudioChunk {
  /** First sample. */
  start: number;
  /** One past the last sample. */
  end: number;
}

export const DEFAULT_CHUNK_SECONDS = 30;
export const DEFAULT_OVERLAP_SECONDS = 4;
export const DEFAULT_SEARCH_SECONDS = 5;

/**
 * Index of the quietest `frame`-sample stretch whose centre lies in [from, to), as its centre
 * sample. `wave` holds the recording's samples from index `origin` on (a stream's buffer), and
 * reaches its end or at least `to + frame`.
 */
function quietestPoint(wave: Float32Array, from: number, to: number, frame: number, origin = 0): number {
  let best = to;
  let bestEnergy = Infinity;
  const hop = Math.max(1, frame >> 1);
  for (let centre = from; centre < to; centre += hop) {
    const a = Math.max(0, centre - (frame >> 1));
    const b = Math.min(origin + wave.length, a + frame);
    let energy = 0;
    for (let i = a - origin; i < b - origin; i++) energy += wave[i] * wave[i];
    energy /= Math.max(1, b - a);
    // `<=`: among equally quiet stretches take the latest, keeping windows long.
    if (energy <= bestEnergy) {
      bestEnergy = energy;
      best = centre;
    }
  }
  return best;
}

/** The plan's lengths in samples, the options checked. */
function planSizes(sampleRateHz: number, opts: ChunkPlanOptions): { chunk: number; overlap: number; search: number; frame: number } {
  const chunkSeconds = opts.chunkSeconds ?? DEFAULT_CHUNK_SECONDS;
  const overlapSeconds = opts.overlapSeconds ?? DEFAULT_OVERLAP_SECONDS;
  const searchSeconds = opts.searchSeconds ?? Math.min(DEFAULT_SEARCH_SECONDS, chunkSeconds / 4);
  if (!(chunkSeconds > 0) || !(overlapSeconds >= 0) || !(searchSeconds >= 0)) {
    throw new LfmError("INVALID_ARGUMENT", `chunk, overlap and search lengths must be positive (got ${chunkSeconds} s, ${overlapSeconds} s, ${searchSeconds} s).`);
  }
  if (overlapSeconds + searchSeconds >= chunkSeconds / 2) {
    throw new LfmError(
      "INVALID_ARGUMENT",
      `the overlap (${overlapSeconds} s) plus the cut search (${searchSeconds} s) must stay under half the chunk length (${chunkSeconds} s), so that every window moves on.`,
    );
  }
  const chunk = Math.round(chunkSeconds * sampleRateHz);
  const overlap = Math.round(overlapSeconds * sampleRateHz);
  const search = Math.round(searchSeconds * sampleRateHz);
  const frame = Math.max(1, Math.round(0.02 * sampleRateHz));
  return { chunk, overlap, search, frame };
}

/** Splits `wave` (at `sampleRateHz`) into overlapping windows; one window when it is short enough. */
export function planChunks(wave: Float32Array, sampleRateHz: number, opts: ChunkPlanOptions = {}): AudioChunk[] {
  const { chunk, overlap, search, frame } = planSizes(sampleRateHz, opts);
  const chunks: AudioChunk[] = [];
  let start = 0;
  for (;;) {
    if (wave.length - start <= chunk) {
      chunks.push({ start, end: wave.length });
      return chunks;
    }
    const nominalEnd = start + chunk;
    const cut = search > 0 ? quietestPoint(wave, nominalEnd - search, nominalEnd, frame) : nominalEnd;
    chunks.push({ start, end: cut });
    start = cut - overlap;
  }
}

/** A unit of text for matching: its original spelling and its comparison key. */
interface Unit {
  text: string;
  key: string;
}

/** Scripts written without spaces between words. */
const UNSPACED = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/u;

function units(text: string): { units: Unit[]; joiner: string } {
  const trimmed = text.trim();
  if (trimmed === "") return { units: [], joiner: " " };
  const key = (s: string) => s.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
  if (UNSPACED.test(trimmed)) {
    const chars = [...trimmed.replace(/\s+/g, "")];
    return { units: chars.map((c) => ({ text: c, key: key(c) })), joiner: "" };
  }
  return { units: trimmed.split(/\s+/).map((w) => ({ text: w, key: key(w) })), joiner: " " };
}

/** Characters in `units` (which hold no whitespace). */
function unitChars(list: Unit[]): number {
  let n = 0;
  for (const u of list) n += u.text.length;
  return n;
}

export interface MergeOptions {
  /** Seconds of audio both transcripts heard (the chunks' overlap). */
  overlapSeconds: number;
  /** Seconds of audio the earlier text covers, and the next chunk's length (for units per second). */
  previousSeconds: number;
  nextSeconds: number;
  /** Shortest shared run accepted as the overlap (default 2 units; 1 when the overlap holds fewer). */
  minRunUnits?: number;
}

export interface MergeResult {
  text: string;
  /** How the two were joined: on a shared run of units, by time, or plainly (no overlap). */
  method: "run" | "time" | "concat";
  /** Length of the shared run (0 unless method is "run"). */
  runUnits: number;
  /**
   * Where the join is, in non-whitespace characters (the one measure the re-spacing of joined text
   * leaves unchanged): how many of `text` come from `previous`, and how many at the start of `next`
   * were left out (heard by both). Used to time the join (pipelines/transcript-segments.ts).
   */
  previousKeptChars: number;
  nextDroppedChars: number;
}

/** Joins the transcript so far with the next chunk's transcript (see the file comment). */
export function mergeTranscripts(previous: string, next: string, opts: MergeOptions): MergeResult {
  const a = units(previous);
  const b = units(next);
  const joiner = a.joiner === "" || b.joiner === "" ? "" : " ";
  const all = unitChars(a.units);
  if (a.units.length === 0) return { text: next.trim(), method: "concat", runUnits: 0, previousKeptChars: 0, nextDroppedChars: 0 };
  if (b.units.length === 0) return { text: previous.trim(), method: "concat", runUnits: 0, previousKeptChars: all, nextDroppedChars: 0 };
  if (opts.overlapSeconds <= 0) return { text: [previous.trim(), next.trim()].join(joiner), method: "concat", runUnits: 0, previousKeptChars: all, nextDroppedChars: 0 };

  // Units the overlap can hold on each side: the chunk's rate × the overlap, with slack.
  const rateA = a.units.length / Math.max(opts.previousSeconds, 1e-3);
  const rateB = b.units.length / Math.max(opts.nextSeconds, 1e-3);
  const expectedA = rateA * opts.overlapSeconds;
  const expectedB = rateB * opts.overlapSeconds;
  const windowA = Math.min(a.units.length, Math.ceil(2 * expectedA) + 4);
  const windowB = Math.min(b.units.length, Math.ceil(2 * expectedB) + 4);
  const minRun = opts.minRunUnits ?? (Math.min(expectedA, expectedB) < 2 ? 1 : 2);

  // Longest common run between A's tail window and B's head window (dynamic programming over
  // run lengths ending at each pair); ties go to the run ending latest in A.
  const tailStart = a.units.length - windowA;
  let bestLen = 0;
  let bestEndA = -1;
  let bestEndB = -1;
  let prev = new Int32Array(windowB + 1);
  let cur = new Int32Array(windowB + 1);
  for (let i = 1; i <= windowA; i++) {
    const keyA = a.units[tailStart + i - 1].key;
    for (let j = 1; j <= windowB; j++) {
      const keyB = b.units[j - 1].key;
      cur[j] = keyA !== "" && keyA === keyB ? prev[j - 1] + 1 : 0;
      if (cur[j] > 0 && cur[j] >= bestLen) {
        bestLen = cur[j];
        bestEndA = tailStart + i; // exclusive
        bestEndB = j;
      }
    }
    [prev, cur] = [cur, prev];
    cur.fill(0);
  }
  const join = (left: Unit[], right: Unit[]) => [left.map((u) => u.text).join(a.joiner), right.map((u) => u.text).join(b.joiner)].filter((s) => s !== "").join(joiner);
  if (bestLen >= minRun) {
    // The run's first half from the earlier text, its second half on from the next one: each side
    // is least reliable at its own border (a cut word, a sentence end the model added).
    const fromB = Math.ceil(bestLen / 2);
    const left = a.units.slice(0, bestEndA - fromB);
    const dropped = b.units.slice(0, bestEndB - fromB);
    return { text: join(left, b.units.slice(bestEndB - fromB)), method: "run", runUnits: bestLen, previousKeptChars: unitChars(left), nextDroppedChars: unitChars(dropped) };
  }
  // No agreement: each side keeps its own half of the overlap.
  const dropA = Math.min(a.units.length, Math.round(expectedA / 2));
  const dropB = Math.min(b.units.length, Math.round(expectedB / 2));
  const left = a.units.slice(0, a.units.length - dropA);
  return { text: join(left, b.units.slice(dropB)), method: "time", runUnits: 0, previousKeptChars: unitChars(left), nextDroppedChars: unitChars(b.units.slice(0, dropB)) };
}

export interface ChunkedOptions extends ChunkPlanOptions {
  signal?: AbortSignal;
  /** Called after each chunk with its result (1-based index). */
  onChunk?: (index: number, count: number, chunk: AudioChunk, text: string) => void;
}

/** Where a chunk's text was joined to the text before it, in non-whitespace characters (see `MergeResult`). */
export interface ChunkJoin {
  /** Characters of the joined text before this chunk's part, when it was joined. */
  before: number;
  /** Characters at the start of this chunk's text left out (heard by the chunk before too). */
  dropped: number;
}

export interface ChunkedTranscript<T> {
  text: string;
  chunks: Array<{ chunk: AudioChunk; result: T; merge?: MergeResult["method"]; join?: ChunkJoin }>;
}

/**
 * Plans the windows of `wave`, transcribes each with `run` (one model call), and joins the texts.
 * `run` sees the window's samples; the joining needs only its `text`.
 */
export async function transcribeChunked<T extends { text: string }>(
  wave: Float32Array,
  sampleRateHz: number,
  run: (samples: Float32Array, chunk: AudioChunk) => Promise<T>,
  opts: ChunkedOptions = {},
): Promise<ChunkedTranscript<T>> {
  const plan = planChunks(wave, sampleRateHz, opts);
  const overlapSeconds = plan.length > 1 ? (opts.overlapSeconds ?? DEFAULT_OVERLAP_SECONDS) : 0;
  const chunks: ChunkedTranscript<T>["chunks"] = [];
  let text = "";
  for (const [i, chunk] of plan.entries()) {
    if (opts.signal?.aborted) throw new LfmError("ABORTED", "transcription was cancelled.");
    const result = await run(wave.subarray(chunk.start, chunk.end), chunk);
    if (i === 0) {
      text = result.text.trim();
      chunks.push({ chunk, result });
    } else {
      const merged = mergeTranscripts(text, result.text, {
        overlapSeconds,
        previousSeconds: plan[i - 1].end / sampleRateHz,
        nextSeconds: (chunk.end - chunk.start) / sampleRateHz,
      });
      text = merged.text;
      chunks.push({ chunk, result, merge: merged.method, join: { before: merged.previousKeptChars, dropped: merged.nextDroppedChars } });
    }
    opts.onChunk?.(i + 1, plan.length, chunk, result.text);
  }
  return { text, chunks };
}

/** One window of a recording read as a stream. */
export interface AudioWindow {
  chunk: AudioChunk;
  /** The window's samples (its own copy). */
  samples: Float32Array;
  /** Whether it is the recording's last window. */
  last: boolean;
}

/**
 * `planChunks` for a recording that arrives in blocks: yields the same windows, each as soon as
 * its cut is known, holding only the samples from the current window's start to its search's end
 * (about one window) — never the whole recording.
 */
export async function* streamWindows(blocks: AsyncIterable<Float32Array>, sampleRateHz: number, opts: ChunkPlanOptions = {}): AsyncGenerator<AudioWindow> {
  const { chunk, overlap, search, frame } = planSizes(sampleRateHz, opts);
  const source = blocks[Symbol.asyncIterator]();
  let buffer = new Float32Array(chunk + frame + 1);
  /** Recording index of buffer[0]; buffer[0, held) is valid. */
  let origin = 0;
  let held = 0;
  let ended = false;
  const fillTo = async (end: number) => {
    while (!ended && origin + held < end) {
      const next = await source.next();
      if (next.done) {
        ended = true;
        break;
      }
      const block = next.value;
      if (held + block.length > buffer.length) {
        const grown = new Float32Array(Math.max(held + block.length, 2 * buffer.length));
        grown.set(buffer.subarray(0, held));
        buffer = grown;
      }
      buffer.set(block, held);
      held += block.length;
    }
  };
  const copy = (from: number, to: number) => buffer.slice(from - origin, to - origin);
  let start = 0;
  try {
    for (;;) {
      const nominalEnd = start + chunk;
      // Enough to know whether more than a window is left, and to search the cut's stretch.
      await fillTo(nominalEnd + frame);
      const total = origin + held;
      if (ended && total - start <= chunk) {
        yield { chunk: { start, end: total }, samples: copy(start, total), last: true };
        return;
      }
      const cut = search > 0 ? quietestPoint(buffer.subarray(0, held), nominalEnd - search, nominalEnd, frame, origin) : nominalEnd;
      yield { chunk: { start, end: cut }, samples: copy(start, cut), last: false };
      start = cut - overlap;
      const drop = start - origin;
      buffer.copyWithin(0, drop, held);
      held -= drop;
      origin = start;
    }
  } finally {
    await source.return?.();
  }
}

export interface StreamChunkedOptions extends ChunkPlanOptions {
  signal?: AbortSignal;
  /** Called after each window with its result (1-based index; `last` on the recording's last one). */
  onChunk?: (index: number, chunk: AudioChunk, text: string, last: boolean) => void;
}

/**
 * `transcribeChunked` for a recording read as a stream (see `streamWindows`): the same windows, the
 * same joins, and memory that does not grow with the recording's length. Returns also the length
 * read, in samples.
 */
export async function transcribeChunkedStream<T extends { text: string }>(
  blocks: AsyncIterable<Float32Array>,
  sampleRateHz: number,
  run: (samples: Float32Array, chunk: AudioChunk) => Promise<T>,
  opts: StreamChunkedOptions = {},
): Promise<ChunkedTranscript<T> & { samples: number }> {
  const chunks: ChunkedTranscript<T>["chunks"] = [];
  let text = "";
  let samples = 0;
  for await (const window of streamWindows(blocks, sampleRateHz, opts)) {
    if (opts.signal?.aborted) throw new LfmError("ABORTED", "transcription was cancelled.");
    const { chunk } = window;
    const result = await run(window.samples, chunk);
    if (chunks.length === 0) {
      text = result.text.trim();
      chunks.push({ chunk, result });
    } else {
      // A second window means more than one: the overlap applies, as in `transcribeChunked`.
      const merged = mergeTranscripts(text, result.text, {
        overlapSeconds: opts.overlapSeconds ?? DEFAULT_OVERLAP_SECONDS,
        previousSeconds: chunks[chunks.length - 1].chunk.end / sampleRateHz,
        nextSeconds: (chunk.end - chunk.start) / sampleRateHz,
      });
      text = merged.text;
      chunks.push({ chunk, result, merge: merged.method, join: { before: merged.previousKeptChars, dropped: merged.nextDroppedChars } });
    }
    samples = chunk.end;
    opts.onChunk?.(chunks.length, chunk, result.text, window.last);
  }
  return { text, chunks, samples };
}
