/**
 * PDFium (WebAssembly) renders a PDF page as poppler's pdftoppm does, within a stated tolerance.
 * The reference PNG was made once with pdftoppm 22.12 (scripts/render-reference-page.ts; see
 * test/fixtures/README.md), so CI needs no poppler.
 *
 * Tolerance, over the RGB channels (0–255) of the 425 × 550 page: the mean absolute difference
 * is ≤ 2.0 (measured 1.54), and ≤ 1% of the pixels (measured 0.69%) have no pixel of the
 * reference within one pixel of them (3 × 3) that is within 64 in every channel. The renderers
 * anti-alias text and edges differently (PDFium's LCD text adds colour fringes, poppler covers
 * edge pixels partly where PDFium fills or skips them), so single edge pixels differ a lot; the
 * same page shifted by 4 px measures 13.5 and 5.3%, far outside.
 */
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { PdfRenderer } from "../../pipelines/pdf-render.ts";
import { referencePagePdf, makePdf } from "../helpers/pdfs.ts";

const REFERENCE = join(import.meta.dirname, "..", "fixtures", "pdf-render", "reference-page-50dpi.png");

interface Diff {
  /** Mean absolute difference over the RGB channels of every pixel. */
  mean: number;
  /** Share of pixels with no pixel of `b` within one pixel of them (3×3) that is within 64 in every channel. */
  farShare: number;
}

function compare(a: Uint8Array, aChannels: number, b: Uint8Array, bChannels: number, width: number, height: number): Diff {
  let sum = 0;
  let far = 0;
  const close = (i: number, j: number) => {
    for (let c = 0; c < 3; c++) if (Math.abs(a[i * aChannels + c] - b[j * bChannels + c]) > 64) return false;
    return true;
  };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      for (let c = 0; c < 3; c++) sum += Math.abs(a[i * aChannels + c] - b[i * bChannels + c]);
      let near = false;
      for (let dy = -1; dy <= 1 && !near; dy++) {
        for (let dx = -1; dx <= 1 && !near; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < height && xx >= 0 && xx < width) near = close(i, yy * width + xx);
        }
      }
      if (!near) far++;
    }
  }
  return { mean: sum / (width * height * 3), farShare: far / (width * height) };
}

describe("PDFium page rendering", () => {
  it("matches pdftoppm's rendering of the same page at 50 dpi", async () => {
    const ref = await sharp(REFERENCE).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const renderer = await PdfRenderer.open("reference.pdf", await referencePagePdf());
    try {
      const page = await renderer.render(1, { dpi: 50 });
      expect([page.width, page.height]).toEqual([ref.info.width, ref.info.height]);
      const diff = compare(page.rgba, 4, ref.data, ref.info.channels, page.width, page.height);
      expect(diff.mean).toBeLessThanOrEqual(2.0);
      expect(diff.farShare).toBeLessThanOrEqual(0.01);
      // The check can fail: the same page shifted by 4 px is far outside it.
      const shifted = new Uint8Array(page.rgba.length).fill(255);
      shifted.set(page.rgba.subarray(4 * 4 * page.width), 0);
      const off = compare(shifted, 4, ref.data, ref.info.channels, page.width, page.height);
      expect(off.mean > 2.0 || off.farShare > 0.01).toBe(true);
    } finally {
      renderer.destroy();
    }
  });

  it("renders an oversized page within maxSide, and refuses a file that is no PDF", async () => {
    const renderer = await PdfRenderer.open("one.pdf", await makePdf([["x"]]));
    try {
      const page = await renderer.render(1, { dpi: 600, maxSide: 500 });
      expect(Math.max(page.width, page.height)).toBeLessThanOrEqual(500);
      const png = await renderer.renderPng(1, { dpi: 20 });
      expect((await sharp(png).metadata()).format).toBe("png");
    } finally {
      renderer.destroy();
    }
    await expect(PdfRenderer.open("bad.pdf", new TextEncoder().encode("%PDF-1.7 nothing"))).rejects.toMatchObject({ code: "DOCUMENT_UNREADABLE" });
  });
});
