/**
 * PDFs made by the tests with pdf-lib: pages with a text layer, "scanned" pages (one embedded
 * PNG, no text), and mixes of both. Letter-size pages (612 × 792 pt).
 */
import { PDFDocument, StandardFonts, rgb } from "pdf-lib";
import sharp from "sharp";

/** A page: lines of text (a text layer), or "scan" (an image only). */
export type PageSpec = string[] | "scan";

/** A grey "scan": dark bars on white, like lines of print (no text layer). */
export async function scanPng(width = 400, height = 300): Promise<Uint8Array> {
  const bars = Array.from({ length: 6 }, (_, i) => `<rect x="30" y="${30 + i * 40}" width="${200 + ((i * 37) % 140)}" height="14" fill="#333"/>`).join("");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#f4f4f0"/>${bars}</svg>`;
  return new Uint8Array(await sharp(Buffer.from(svg)).png().toBuffer());
}

export async function makePdf(pages: readonly PageSpec[]): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const font = await doc.embedFont(StandardFonts.Helvetica);
  let scan: Awaited<ReturnType<typeof doc.embedPng>> | undefined;
  for (const spec of pages) {
    const page = doc.addPage([612, 792]);
    if (spec === "scan") {
      scan ??= await doc.embedPng(await scanPng());
      page.drawImage(scan, { x: 56, y: 300, width: 500, height: 375 });
      continue;
    }
    spec.forEach((line, i) => page.drawText(line, { x: 56, y: 720 - i * 24, size: 14, font, color: rgb(0, 0, 0) }));
  }
  return doc.save({ useObjectStreams: false });
}

/**
 * The page the rendering test compares against `pdftoppm` (test/fixtures/pdf-render/): text, filled
 * and stroked shapes, and an embedded image. Changing it means regenerating the reference
 * (scripts/render-reference-page.ts).
 */
export async function referencePagePdf(): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const font = await doc.embedFont(StandardFonts.Helvetica);
  const page = doc.addPage([612, 792]);
  page.drawText("Pump nameplate", { x: 56, y: 720, size: 28, font, color: rgb(0, 0, 0) });
  page.drawText("Serial number: SN-4471   Pressure: 31 bar", { x: 56, y: 680, size: 14, font, color: rgb(0.1, 0.1, 0.4) });
  page.drawRectangle({ x: 56, y: 520, width: 240, height: 120, color: rgb(0.85, 0.2, 0.15) });
  page.drawRectangle({ x: 320, y: 520, width: 236, height: 120, borderColor: rgb(0, 0.4, 0), borderWidth: 6 });
  page.drawLine({ start: { x: 56, y: 490 }, end: { x: 556, y: 470 }, thickness: 3, color: rgb(0.2, 0.2, 0.2) });
  page.drawImage(await doc.embedPng(await scanPng()), { x: 56, y: 80, width: 400, height: 300 });
  return doc.save({ useObjectStreams: false });
}
