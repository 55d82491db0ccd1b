/**
 * PDF pages → images, with PDFium compiled to WebAssembly (`@hyzyla/pdfium`: no native build, no
 * download at install). Used for scanned pages, whose text layer is empty, so LFM2-VL can read them.
 */
import type { PDFiumDocument, PDFiumLibrary } from "@hyzyla/pdfium";
import sharp from "sharp";
import { LfmError } from "../text-core/errors.ts";

let library: Promise<PDFiumLibrary> | undefined;

/** The PDFium module, started once per process (~1.5 MB of WebAssembly). */
function pdfium(): Promise<PDFiumLibrary> {
  library ??= import("@hyzyla/pdfium").then((m) => m.PDFiumLibrary.init());
  return library;
}

/** A rendered page: RGBA pixels, row by row, white where the page has nothing. */
export interface RenderedPage {
  width: number;
  height: number;
  rgba: Uint8Array;
}

export interface RenderOptions {
  /** Resolution in dots per inch (default 150: small print stays legible once the VL processor tiles it). */
  dpi?: number;
  /** The longest side in pixels, at most (default 2048): an oversized page is rendered smaller, never a pixel bomb. */
  maxSide?: number;
}

/** A PDF opened in PDFium; `destroy()` frees its WebAssembly memory. */
export class PdfRenderer {
  private constructor(
    private readonly doc: PDFiumDocument,
    readonly pageCount: number,
  ) {}

  static async open(path: string, bytes: Uint8Array): Promise<PdfRenderer> {
    const lib = await pdfium();
    try {
      const doc = await lib.loadDocument(bytes);
      return new PdfRenderer(doc, doc.getPageCount());
    } catch (e) {
      throw new LfmError("DOCUMENT_UNREADABLE", `${path}: PDFium cannot open it to render its scanned pages (${(e as Error).message}).`, { cause: e });
    }
  }

  /** Renders page `pageNumber` (1-based). */
  async render(pageNumber: number, opts: RenderOptions = {}): Promise<RenderedPage> {
    const page = this.doc.getPage(pageNumber - 1);
    const { originalWidth, originalHeight } = page.getOriginalSize(); // points, 1/72 inch
    const dpi = opts.dpi ?? 150;
    const maxSide = opts.maxSide ?? 2048;
    const scale = Math.min(dpi / 72, maxSide / Math.max(originalWidth, originalHeight, 1));
    // "bitmap" with PDFium's REVERSE_BYTE_ORDER flag (the library sets it for BGRA) gives RGBA bytes.
    const out = await page.render({ scale, render: "bitmap", colorSpace: "BGRA" });
    return { width: out.width, height: out.height, rgba: out.data };
  }

  /** Renders page `pageNumber` (1-based) as a PNG file's bytes (what the VL image path reads). */
  async renderPng(pageNumber: number, opts: RenderOptions = {}): Promise<Uint8Array> {
    const page = await this.render(pageNumber, opts);
    return new Uint8Array(await sharp(page.rgba, { raw: { width: page.width, height: page.height, channels: 4 } }).png({ compressionLevel: 1 }).toBuffer());
  }

  destroy(): void {
    this.doc.destroy();
  }
}
