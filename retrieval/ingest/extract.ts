/**
 * File → text to index. `.txt` and `.md` as written (UTF-8, BOM dropped, CRLF → LF); `.html`/`.htm`
 * through html-text.ts; `.pdf` through `unpdf` (PDF.js, pure JavaScript), pages joined by blank
 * lines with each page's start offset kept so passages can say which page they come from.
 */
import { extname } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import { htmlToText } from "./html-text.ts";

export type SourceKind = "txt" | "md" | "html" | "pdf";

export const KIND_OF_EXTENSION: Record<string, SourceKind> = {
  ".txt": "txt",
  ".text": "txt",
  ".md": "md",
  ".markdown": "md",
  ".html": "html",
  ".htm": "html",
  ".xhtml": "html",
  ".pdf": "pdf",
};

export interface ExtractedText {
  kind: SourceKind;
  text: string;
  title?: string;
  /** PDF only: offset in `text` where each page (1-based: index + 1) starts. */
  pageStarts?: number[];
}

export function kindOf(path: string): SourceKind | undefined {
  return KIND_OF_EXTENSION[extname(path).toLowerCase()];
}

export async function extractText(path: string, bytes: Uint8Array): Promise<ExtractedText> {
  const kind = kindOf(path);
  if (kind === undefined) {
    throw new LfmError("UNSUPPORTED_FILE_TYPE", `${path}: only ${Object.keys(KIND_OF_EXTENSION).join(", ")} files can be indexed. Convert it to one of those (e.g. plain text).`);
  }
  if (kind === "pdf") return extractPdf(path, bytes);
  const raw = decodeUtf8(path, bytes);
  if (kind === "html") return { kind, ...htmlToText(raw) };
  const text = raw.replace(/\r\n?/g, "\n");
  if (kind === "md") {
    const heading = /^#\s+(.+)$/m.exec(text);
    return heading ? { kind, text, title: heading[1].trim() } : { kind, text };
  }
  return { kind, text };
}

function decodeUtf8(path: string, bytes: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    // Not UTF-8: most likely Latin-1/Windows-1252 text, which decodes byte for byte.
    text = new TextDecoder("windows-1252").decode(bytes);
  }
  if (text.includes("\u0000")) throw new LfmError("DOCUMENT_UNREADABLE", `${path} contains NUL bytes: it is a binary file, not text. Remove it from the paths to index.`);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** An open PDF.js document (unpdf's build). */
export type PdfDocument = Awaited<ReturnType<typeof import("unpdf").getDocumentProxy>>;

function unreadablePdf(path: string, e: unknown): LfmError {
  const encrypted = (e as { name?: unknown })?.name === "PasswordException";
  const message = encrypted
    ? `${path} is a password-protected PDF; remove the password (e.g. qpdf --decrypt in.pdf out.pdf) and try again.`
    : `${path} is not a readable PDF (${(e as Error).message}). Check that the file is complete and not encrypted.`;
  return new LfmError("DOCUMENT_UNREADABLE", message, { cause: e });
}

/** Opens a PDF with PDF.js (errors: DOCUMENT_UNREADABLE naming the file); `cleanup()`/`destroy()` it when done. */
export async function openPdf(path: string, bytes: Uint8Array): Promise<PdfDocument> {
  const { getDocumentProxy } = await import("unpdf");
  try {
    // PDF.js takes ownership of (detaches) the buffer it is given: hand it a copy.
    return await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0 }); // errors only, no console warnings
  } catch (e) {
    throw unreadablePdf(path, e);
  }
}

/**
 * The text layer of one page (1-based), as unpdf's `extractText` gives it: the items' strings,
 * a newline after each that ends a line. Loads only that page, so a caller can walk a long PDF
 * page by page.
 */
export async function pdfPageText(path: string, pdf: PdfDocument, pageNumber: number): Promise<string> {
  try {
    const page = await pdf.getPage(pageNumber);
    try {
      const content = await page.getTextContent();
      return content.items.map((item) => ("str" in item ? item.str + (item.hasEOL ? "\n" : "") : "")).join("");
    } finally {
      page.cleanup();
    }
  } catch (e) {
    throw unreadablePdf(path, e);
  }
}

async function extractPdf(path: string, bytes: Uint8Array): Promise<ExtractedText> {
  const { extractText: pdfText, getMeta } = await import("unpdf");
  let pages: string[];
  let title: string | undefined;
  const pdf = await openPdf(path, bytes);
  try {
    try {
      pages = (await pdfText(pdf, { mergePages: false })).text;
      const info = (await getMeta(pdf)).info as Record<string, unknown> | undefined;
      if (typeof info?.Title === "string" && info.Title.trim() !== "") title = info.Title.trim();
    } finally {
      await pdf.cleanup();
    }
  } catch (e) {
    throw unreadablePdf(path, e);
  }
  const pageStarts: number[] = [];
  let text = "";
  for (const page of pages) {
    if (text !== "") text += "\n\n";
    pageStarts.push(text.length);
    text += page.replace(/\r\n?/g, "\n").trim();
  }
  return title ? { kind: "pdf", text, title, pageStarts } : { kind: "pdf", text, pageStarts };
}

/** The 1-based page holding `offset`. */
export function pageAt(pageStarts: number[], offset: number): number {
  let lo = 0;
  let hi = pageStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (pageStarts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}
