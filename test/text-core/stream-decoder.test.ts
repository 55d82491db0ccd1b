import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, test, vi } from "vitest";
import { Lfm2Tokenizer, type DecodeOptions } from "../../text-core/tokenizer.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");
const reference = JSON.parse(readFileSync(join(FIXTURES, "text", "reference.json"), "utf8")) as { tokenize: { text: string; ids: number[] }[] };
const label = (text: string) => JSON.stringify(text.length > 40 ? text.slice(0, 40) + "…" : text);

let tok: Lfm2Tokenizer;
beforeAll(async () => {
  tok = await Lfm2Tokenizer.fromDir(join(FIXTURES, "text", "tiny-lfm2"));
});

/** Pushes every id, then flushes; returns the chunk each push produced and the flush. */
function stream(ids: readonly number[], opts: DecodeOptions = {}): { chunks: string[]; flushed: string } {
  const decoder = tok.createStreamDecoder(opts);
  const chunks = ids.map((id) => decoder.push(id));
  return { chunks, flushed: decoder.flush() };
}

const hasLoneSurrogate = (s: string) => /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

const MULTIBYTE = [
  "emoji 🙂🚀 and a family 👩‍👩‍👧 with flags 🇯🇵🇩🇪",
  "技術者は請求書をスキャンし、温度は二十三度です。",
  "기술자가 송장을 스캔하고 세 개의 항목을 찾았습니다.",
  "ไทย हिन्दी עברית Ελληνικά русский",
  "mixed: a🙂b技c\u{1F9EA}d",
];

describe("stream decoder output equals decode()", () => {
  const cases = [...reference.tokenize.map((c) => [label(c.text), c.ids] as const)];
  test.each(cases)("%s: pushes + flush concatenate to decode(ids), specials kept", (_, ids) => {
    const { chunks, flushed } = stream(ids);
    expect(chunks.join("") + flushed).toBe(tok.decode(ids));
  });

  test.each(cases)("%s: pushes + flush concatenate to decode(ids), specials skipped", (_, ids) => {
    const { chunks, flushed } = stream(ids, { skipSpecialTokens: true });
    expect(chunks.join("") + flushed).toBe(tok.decode(ids, { skipSpecialTokens: true }));
  });

  test.each(MULTIBYTE.map((t) => [label(t), t] as const))("%s: no chunk holds U+FFFD or half a surrogate pair", (_, text) => {
    const ids = tok.encode(text);
    const { chunks, flushed } = stream(ids, { skipSpecialTokens: true });
    expect(chunks.join("") + flushed).toBe(text);
    expect(flushed).toBe("");
    for (const chunk of chunks) {
      expect(chunk).not.toContain("\uFFFD");
      expect(hasLoneSurrogate(chunk)).toBe(false);
    }
  });
});

describe("stream decoder holds back incomplete characters", () => {
  test("an emoji split across two byte-level tokens appears whole on the second push", () => {
    const ids = tok.encode("🙂", { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1); // byte-level BPE splits it in the tiny vocabulary
    expect(tok.decode(ids.slice(0, 1))).toContain("\uFFFD");
    const { chunks, flushed } = stream(ids);
    expect(chunks.slice(0, -1).every((c) => c === "")).toBe(true);
    expect(chunks.at(-1)).toBe("🙂");
    expect(flushed).toBe("");
  });

  test("a sequence cut inside a character flushes U+FFFD, exactly as decode() of the same ids", () => {
    const ids = tok.encode("ok🙂", { addSpecialTokens: false });
    const cut = ids.slice(0, -1);
    const { chunks, flushed } = stream(cut);
    expect(chunks.join("")).toBe("ok");
    expect(flushed).toContain("\uFFFD");
    expect(chunks.join("") + flushed).toBe(tok.decode(cut));
  });

  test("bytes that can never form a character are emitted as U+FFFD once later text completes", () => {
    const emoji = tok.encode("🙂", { addSpecialTokens: false });
    const tail = emoji.slice(1); // continuation bytes without their lead byte
    const ids = [...tail, ...tok.encode(" fine", { addSpecialTokens: false })];
    const full = tok.decode(ids);
    expect(full).toMatch(/^\uFFFD+ fine$/);
    const { chunks, flushed } = stream(ids);
    expect(chunks.join("") + flushed).toBe(full);
  });

  test("skipped special tokens between the bytes of a character do not break it", () => {
    const ids = tok.encode("🙂", { addSpecialTokens: false });
    const withSpecial = [ids[0], tok.eosTokenId, ...ids.slice(1)];
    const { chunks, flushed } = stream(withSpecial, { skipSpecialTokens: true });
    expect(chunks.join("") + flushed).toBe(tok.decode(withSpecial, { skipSpecialTokens: true }));
  });

  test("flush resets the decoder for the next sequence", () => {
    const decoder = tok.createStreamDecoder();
    const first = tok.encode("first", { addSpecialTokens: false });
    for (const id of first) decoder.push(id);
    decoder.flush();
    const second = tok.encode("second 🙂", { addSpecialTokens: false });
    expect(second.map((id) => decoder.push(id)).join("") + decoder.flush()).toBe("second 🙂");
  });
});

describe("stream decoder cost per token", () => {
  // The window is the previous chunk's ids (context) plus the ids since the last character
  // boundary; the tiny vocabulary splits CJK/Thai bytes across tokens, so a few ids each.
  test("each push decodes a window of a few ids, not the whole sequence", () => {
    const ids = tok.encode(reference.tokenize.map((c) => c.text).join(" ").repeat(4));
    const spy = vi.spyOn(tok, "decode");
    const { chunks, flushed } = stream(ids);
    const longest = Math.max(...spy.mock.calls.map(([window]) => window.length));
    spy.mockRestore();
    expect(ids.length).toBeGreaterThan(500);
    expect(longest).toBeLessThanOrEqual(16);
    expect(chunks.join("") + flushed).toBe(tok.decode(ids));
  });
});
