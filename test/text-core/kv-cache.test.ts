import { describe, expect, it } from "vitest";
import { KvCache } from "../../text-core/runtime.ts";

const B = 2;
const H = 3;
const HD = 4;

/** The rows [S, heads·hd] per sequence for positions from..from+S, with values naming (b, position, h, d). */
function rows(S: number, from: number): Float32Array {
  const out = new Float32Array(B * S * H * HD);
  for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) for (let h = 0; h < H; h++) for (let d = 0; d < HD; d++) out[((b * S + s) * H + h) * HD + d] = b * 1e6 + (from + s) * 1e3 + h * 10 + d;
  return out;
}

/** Checks the graph's view: [B, H, stride, HD] with the first `length` rows of each block in order. */
function expectContents(cache: KvCache, length: number): number {
  const t = cache.tensor();
  const [tb, th, stride, thd] = t.dims;
  expect([tb, th, thd]).toEqual([B, H, HD]);
  expect(stride).toBeGreaterThanOrEqual(length);
  const data = t.data as Float32Array;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let p = 0; p < length; p++)
        for (let d = 0; d < HD; d++) expect(data[((b * H + h) * stride + p) * HD + d]).toBe(b * 1e6 + p * 1e3 + h * 10 + d);
  return stride;
}

describe("KvCache", () => {
  it("keeps a packed layout with stride step 1 (stride = length after every append)", () => {
    const cache = new KvCache(B, H, HD, 2, 1);
    let length = 0;
    for (const S of [3, 1, 1, 5, 1]) {
      cache.append(rows(S, length), S);
      length += S;
      expect(expectContents(cache, length)).toBe(length);
    }
  });

  it("pads blocks to multiples of the stride step, so most appends move nothing, and grows past its capacity", () => {
    const cache = new KvCache(B, H, HD, 5, 8);
    let length = 0;
    const strides: number[] = [];
    for (const S of [3, 1, 1, 1, 1, 1, 6, 1, 1, 9]) {
      cache.append(rows(S, length), S);
      length += S;
      strides.push(expectContents(cache, length));
    }
    // capacity 5 caps the first stride at 5; then multiples of 8 once the buffer has grown
    expect(strides).toEqual([5, 5, 5, 8, 8, 8, 16, 16, 16, 32]);
  });

  it("does not pad past a buffer that already holds the whole sequence", () => {
    const cache = new KvCache(B, H, HD, 10, 8);
    for (let p = 0; p < 10; p++) cache.append(rows(1, p), 1);
    expect(expectContents(cache, 10)).toBe(10);
  });

  it("starts empty again after reset, reusing its buffer", () => {
    const cache = new KvCache(B, H, HD, 4, 8);
    cache.append(rows(6, 0), 6);
    cache.reset();
    expect(cache.length).toBe(0);
    expect(cache.tensor().dims).toEqual([B, H, 0, HD]);
    cache.append(rows(2, 0), 2);
    cache.append(rows(1, 2), 1);
    expectContents(cache, 3);
  });
});
