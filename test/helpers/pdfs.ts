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

/**
 * `pdf` as a password-protected PDF: an incremental update adds a standard-security Encrypt
 * dictionary (RC4, revision 2) whose /U entry no empty password matches, so a reader must ask for
 * a password. (pdf-lib cannot encrypt; the objects are not actually encrypted, which no reader
 * reaches: opening fails at the password check.)
 */
export function passwordProtected(pdf: Uint8Array): Uint8Array {
  const text = Buffer.from(pdf).toString("latin1");
  const size = Number(/\/Size (\d+)/.exec(text.slice(text.lastIndexOf("trailer")))![1]);
  const root = /\/Root (\d+ \d+ R)/.exec(text.slice(text.lastIndexOf("trailer")))![1];
  const prev = Number(/startxref\s+(\d+)/.exec(text.slice(text.lastIndexOf("startxref")))![1]);
  const hex32 = (seed: number) => Array.from({ length: 32 }, (_, i) => ((i * 97 + seed * 31) & 255).toString(16).padStart(2, "0")).join("");
  const objectAt = text.length + 1;
  const object = `\n${size} 0 obj\n<< /Filter /Standard /V 1 /R 2 /Length 40 /O <${hex32(1)}> /U <${hex32(2)}> /P -44 >>\nendobj\n`;
  const xrefAt = text.length + object.length;
  const id = hex32(3).slice(0, 32);
  const tail = `xref\n${size} 1\n${String(objectAt).padStart(10, "0")} 00000 n \ntrailer\n<< /Size ${size + 1} /Root ${root} /Prev ${prev} /Encrypt ${size} 0 R /ID [<${id}> <${id}>] >>\nstartxref\n${xrefAt}\n%%EOF\n`;
  return new Uint8Array(Buffer.from(text + object + tail, "latin1"));
}

/** A PNG whose header claims `width` × `height` pixels (its image data is a stub): what a decompression bomb looks like before decoding. */
export function pngClaiming(width: number, height: number): Uint8Array {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes: Buffer) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 255] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return new Uint8Array(Buffer.concat([signature, chunk("IHDR", ihdr), chunk("IDAT", Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), chunk("IEND", Buffer.alloc(0))]));
}
