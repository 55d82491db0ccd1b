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

export async function makePdf(pages: readonly PageSpec[], opts: { password?: never } = {}): Promise<Uint8Array> {
  void opts;
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
