/**
 * A 2,000-page PDF is read lazily: the page source `extract` reads (`documentPages`) walks every
 * page, text and scans, in a child process with a stand-in extractor (no model, so the test is
 * about the reading, and fast), and what stays in memory once garbage is collected does not grow
 * with the pages read. test/helpers/extract-rss-probe.ts does the walking.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
const ROOT = join(import.meta.dirname, "..", "..");

const MiB = 2 ** 20;

describe("a 2,000-page PDF", () => {
  it("is read page by page with flat memory, the file held once more at most", () => {
    const r = spawnSync(process.execPath, ["--expose-gc", join(ROOT, "bin/run-ts.mjs"), join(ROOT, "test/helpers/extract-rss-probe.ts"), "2000", "50"], { encoding: "utf8", timeout: 170_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { text: number; image: number; chars: number; pngBytes: number; fileBytes: number; arrayBuffersBase: number; rssEarly: number; heapEarly: number; rssLate: number; heapLate: number; arrayBuffersOpen: number; arrayBuffersMax: number };
    // Every page, routed: 40 scans (every 50th page) rendered, the rest text.
    expect([out.text, out.image]).toEqual([1960, 40]);
    expect(out.chars).toBeGreaterThan(1960 * 40);
    expect(out.pngBytes).toBeGreaterThan(40 * 100);
    // From page 225 to page 2,000 the live JS heap grows by under 2 MiB (about 1 KB a page at
    // most; PDF.js keeping every page it loaded cost ~3 KB a page, 5.5 MiB here) and the resident
    // memory by under 24 MiB (measured 0.4 and 5 MiB).
    const heap = out.heapLate - out.heapEarly;
    const rss = out.rssLate - out.rssEarly;
    expect(heap, `live heap grew by ${(heap / MiB).toFixed(1)} MiB`).toBeLessThan(2 * MiB);
    expect(rss, `live RSS grew by ${(rss / MiB).toFixed(1)} MiB`).toBeLessThan(24 * MiB);
    // The reading holds one more copy of the file (PDF.js's: it takes the buffer it reads), not one
    // per reopening or per page: the median sample's buffers, beyond those held before reading.
    const held = out.arrayBuffersOpen - out.arrayBuffersBase;
    const most = out.arrayBuffersMax - out.arrayBuffersBase;
    expect(held, `${(held / MiB).toFixed(2)} MiB of buffers (at most ${(most / MiB).toFixed(2)}) for a ${(out.fileBytes / MiB).toFixed(2)} MiB file`).toBeLessThan(1.5 * out.fileBytes);
  }, 180_000);
});
