import { describe, expect, it } from "vitest";
import { type AudioChunk, transcribeChunked } from "../../audio/chunking.ts";
import type { Transcript } from "../../pipelines/transcribe.ts";
import { type TranscriptSegment, toSrt, toText, toVtt, transcriptSegments } from "../../pipelines/transcript-segments.ts";

const RATE = 16000;

interface Word {
  text: string;
  start: number;
  end: number;
}

/** A recording of tone bursts at known times (pauses every few words), and its words; a sentence ends every 7th word. */
function syntheticSpeech(count: number, seed: number): { wave: Float32Array; words: Word[] } {
  const vocabulary = ["the", "pump", "pressure", "is", "stable", "and", "valve", "seven", "reads", "ninety", "percent", "check", "line", "two"];
  let state = seed;
  const random = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
  const words: Word[] = [];
  let t = 0.3;
  for (let i = 0; i < count; i++) {
    const length = 0.2 + 0.3 * random();
    const text = vocabulary[Math.floor(random() * vocabulary.length)] + (i % 7 === 6 ? "." : "");
    words.push({ text, start: t, end: t + length });
    t += length + (i % 5 === 4 ? 0.6 : 0.08);
  }
  const wave = new Float32Array(Math.ceil((t + 0.3) * RATE));
  for (const w of words) for (let i = Math.floor(w.start * RATE); i < Math.floor(w.end * RATE); i++) wave[i] = 0.5 * Math.sin(i * 0.3);
  return { wave, words };
}

/** The model's stand-in: the words inside the window, a word cut by an edge garbled. */
function fakeTranscriber(words: Word[]) {
  return async (_samples: Float32Array, chunk: AudioChunk) => {
    const s = chunk.start / RATE;
    const e = chunk.end / RATE;
    const heard = words.filter((w) => w.end > s && w.start < e).map((w) => (w.start >= s && w.end <= e ? w.text : `${w.text.slice(0, 2)}-`));
    return { text: heard.join(" "), ids: [] as number[] };
  };
}

/** As pipelines/transcribe.ts builds it. */
async function syntheticTranscript(words: Word[], wave: Float32Array, opts: { chunkSeconds: number; overlapSeconds: number; searchSeconds: number }): Promise<Transcript> {
  const joined = await transcribeChunked(wave, RATE, fakeTranscriber(words), opts);
  return {
    text: joined.text,
    durationSeconds: wave.length / RATE,
    chunks: joined.chunks.map(({ chunk, result, merge, join }) => ({
      startSeconds: chunk.start / RATE,
      endSeconds: chunk.end / RATE,
      ids: result.ids,
      text: result.text,
      ...(merge ? { merge } : {}),
      ...(join ? { join } : {}),
    })),
  };
}

const squeeze = (s: string) => s.replace(/\s+/g, "");

function expectOrdered(segments: readonly { startSeconds: number; endSeconds: number }[]): void {
  for (const [i, s] of segments.entries()) {
    expect(s.endSeconds).toBeGreaterThanOrEqual(s.startSeconds);
    if (i > 0) expect(s.startSeconds).toBeGreaterThanOrEqual(segments[i - 1].endSeconds);
  }
}

/** A strict SRT reader: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text lines, one blank line after each. */
function parseSrt(srt: string): TranscriptSegment[] {
  expect(srt.endsWith("\n\n") || srt === "").toBe(true);
  const time = (h: string, m: string, s: string, ms: string) => Number(h) * 3600 + Number(m) * 60 + Number(s) + Number(ms) / 1000;
  const blocks = srt.slice(0, -2).split("\n\n");
  return blocks.map((block, i) => {
    const [index, timing, ...lines] = block.split("\n");
    expect(index).toBe(String(i + 1));
    const t = /^(\d\d+):([0-5]\d):([0-5]\d),(\d{3}) --> (\d\d+):([0-5]\d):([0-5]\d),(\d{3})$/.exec(timing);
    expect(t, `cue ${i + 1} timing "${timing}"`).not.toBeNull();
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      expect(l.trim()).not.toBe("");
      expect(l).not.toContain("-->");
    }
    const m = t as RegExpExecArray;
    return { startSeconds: time(m[1], m[2], m[3], m[4]), endSeconds: time(m[5], m[6], m[7], m[8]), text: lines.join("\n") };
  });
}

/** A strict WebVTT reader (the subset written): the header, cues of timing + text lines, character references undone. */
function parseVtt(vtt: string): TranscriptSegment[] {
  expect(vtt.startsWith("WEBVTT\n\n")).toBe(true);
  const body = vtt.slice("WEBVTT\n\n".length);
  if (body === "") return [];
  expect(body.endsWith("\n\n")).toBe(true);
  const time = (h: string, m: string, s: string, ms: string) => Number(h) * 3600 + Number(m) * 60 + Number(s) + Number(ms) / 1000;
  return body
    .slice(0, -2)
    .split("\n\n")
    .map((block, i) => {
      const [timing, ...lines] = block.split("\n");
      const t = /^(\d\d+):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d\d+):([0-5]\d):([0-5]\d)\.(\d{3})$/.exec(timing);
      expect(t, `cue ${i + 1} timing "${timing}"`).not.toBeNull();
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) {
        expect(l.trim()).not.toBe("");
        expect(l).not.toContain("-->");
        expect(l).not.toMatch(/<|&(?!amp;|lt;|gt;)/);
      }
      const m = t as RegExpExecArray;
      const text = lines.join("\n").replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
      return { startSeconds: time(m[1], m[2], m[3], m[4]), endSeconds: time(m[5], m[6], m[7], m[8]), text };
    });
}

describe("transcript segments", () => {
  it("covers the joined text in order, split at sentences, times monotonic from 0 to the end, near the words' true times", async () => {
    for (const seed of [1, 2, 3]) {
      const { wave, words } = syntheticSpeech(300, seed);
      const transcript = await syntheticTranscript(words, wave, { chunkSeconds: 15, overlapSeconds: 3, searchSeconds: 3 });
      expect(transcript.chunks.length).toBeGreaterThan(8);
      const segments = transcriptSegments(transcript);
      expect(segments[0].startSeconds).toBe(0);
      expect(segments.at(-1)?.endSeconds).toBe(transcript.durationSeconds);
      expectOrdered(segments);
      expect(squeeze(segments.map((s) => s.text).join(""))).toBe(squeeze(transcript.text));
      // A segment per sentence at least: none holds a sentence end before its last word.
      for (const s of segments) expect(s.text.slice(0, -1)).not.toMatch(/\.\s/);
      expect(segments.length).toBeGreaterThanOrEqual(transcript.chunks.length);
      // The joined text is the words (chunking.test.ts); each segment starts near its first word's
      // true time: the estimate spreads a window's text evenly, so within a few seconds.
      let w = 0;
      let worst = 0;
      for (const s of segments) {
        worst = Math.max(worst, Math.abs(s.startSeconds - words[w].start));
        w += s.text.split(/\s+/).length;
      }
      expect(w).toBe(words.length);
      expect(worst, `seed ${seed}: worst start error ${worst.toFixed(2)} s`).toBeLessThan(2);
    }
  });

  it("one segment per window without sentence splitting; a window whose part was joined away gives none", async () => {
    const { wave, words } = syntheticSpeech(120, 5);
    const transcript = await syntheticTranscript(words, wave, { chunkSeconds: 12, overlapSeconds: 3, searchSeconds: 0 });
    const segments = transcriptSegments(transcript, { sentences: false });
    expect(segments.length).toBe(transcript.chunks.length);
    expectOrdered(segments);
    // The border between two windows' segments lies in their overlap.
    for (let i = 1; i < segments.length; i++) {
      expect(segments[i].startSeconds).toBeGreaterThanOrEqual(transcript.chunks[i].startSeconds);
      expect(segments[i].startSeconds).toBeLessThanOrEqual(transcript.chunks[i - 1].endSeconds);
    }
    const empty: Transcript = { text: "", durationSeconds: 3, chunks: [{ startSeconds: 0, endSeconds: 3, ids: [], text: "" }] };
    expect(transcriptSegments(empty)).toEqual([]);
    expect(toSrt([])).toBe("");
    expect(toVtt([])).toBe("WEBVTT\n\n");
  });

  it("SRT and WebVTT parse back strictly: the same times (to the millisecond) and text, hostile text included", () => {
    const transcript: Transcript = {
      text: "He typed a --> b. Then x < y & z > w!\n\n\nA blank line above. 日本語です。続き",
      durationSeconds: 3725.5,
      chunks: [{ startSeconds: 0, endSeconds: 3725.5, ids: [], text: "" }],
    };
    transcript.chunks[0].text = transcript.text;
    const segments = transcriptSegments(transcript);
    expect(segments.map((s) => s.text)).toEqual(["He typed a --> b.", "Then x < y & z > w!", "A blank line above.", "日本語です。", "続き"]);
    expect(toText(transcript)).toBe(`${transcript.text}\n`);
    const srt = parseSrt(toSrt(segments));
    const vtt = parseVtt(toVtt(segments));
    expect(toSrt(segments)).toContain("01:02:05,500");
    for (const parsed of [srt, vtt]) {
      expect(parsed).toHaveLength(segments.length);
      expectOrdered(parsed);
      for (const [i, p] of parsed.entries()) {
        expect(p.startSeconds).toBeCloseTo(segments[i].startSeconds, 3);
        expect(p.endSeconds).toBeCloseTo(segments[i].endSeconds, 3);
      }
    }
    // VTT escapes undo exactly; SRT (no escapes) breaks "-->" as "-- >".
    expect(vtt.map((c) => c.text)).toEqual(segments.map((s) => s.text));
    expect(srt.map((c) => c.text)).toEqual(segments.map((s) => s.text.replaceAll("-->", "-- >")));
  });
});
