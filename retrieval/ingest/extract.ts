/**
 * File → text to index. `.txt` and `.md` as written (UTF-8, UTF-16 with a byte-order mark, else
 * Windows-1252; BOM dropped, CRLF → LF); `.html`/`.htm`
 * through html-text.ts; `.pdf` through `unpdf` (PDF.js, pure JavaScript), pages joined by blank
 * lines with each page's start offset kept so passages can say which page they come from;
 * `.docx` (Word) through `mammoth`'s raw text (paragraphs separated by blank lines).
 */
import { extname } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import { htmlToText } from "./html-text.ts";

export type SourceKind = "txt" | "md" | "html" | "pdf" | "docx";

export const KIND_OF_EXTENSION: Record<string, SourceKind> = {
  ".txt": "txt",
  ".text": "txt",
  ".md": "md",
  ".markdown": "md",
  ".html": "html",
  ".htm": "html",
  ".xhtml": "html",
  ".pdf": "pdf",
  ".docx": "docx",
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
  if (kind === "docx") return extractDocx(path, bytes);
  const raw = decodeText(path, bytes);
  if (kind === "html") return { kind, ...htmlToText(raw) };
  const text = raw.replace(/\r\n?/g, "\n");
  if (kind === "md") {
    const heading = /^#\s+(.+)$/m.exec(text);
    return heading ? { kind, text, title: heading[1].trim() } : { kind, text };
  }
  return { kind, text };
}

/**
 * Bytes → text: UTF-16 when a byte-order mark says so (Windows "Unicode" text files), else UTF-8,
 * else Windows-1252 (which decodes any byte); the BOM is dropped.
 */
function decodeText(path: string, bytes: Uint8Array): string {
  let text: string;
  try {
    const utf16 = bytes[0] === 0xff && bytes[1] === 0xfe ? "utf-16le" : bytes[0] === 0xfe && bytes[1] === 0xff ? "utf-16be" : null;
    if (utf16) text = decodeUtf16(path, bytes.subarray(2), utf16);
    else {
      try {
        text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
      } catch (e) {
        if (!(e instanceof TypeError)) throw e;
        // Not UTF-8: most likely Latin-1/Windows-1252 text, which decodes byte for byte.
        text = new TextDecoder("windows-1252").decode(bytes);
      }
    }
  } catch (e) {
    if (e instanceof LfmError || !(e instanceof RangeError || (e as NodeJS.ErrnoException).code === "ERR_STRING_TOO_LONG")) throw e;
    // V8 strings hold at most ~2^29 characters.
    throw new LfmError("FILE_TOO_LARGE", `${path} holds more text than fits in one string (${bytes.byteLength} bytes); split it into smaller files.`, { cause: e });
  }
  if (text.includes("\u0000")) throw new LfmError("DOCUMENT_UNREADABLE", `${path} contains NUL bytes: it is a binary file, not text. Remove it from the paths to index.`);
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function decodeUtf16(path: string, bytes: Uint8Array, encoding: "utf-16le" | "utf-16be"): string {
  if (bytes.byteLength % 2 !== 0) throw new LfmError("DOCUMENT_UNREADABLE", `${path} starts with a UTF-16 byte-order mark but has an odd number of bytes: it is truncated or not UTF-16 text.`);
  let le = bytes;
  if (encoding === "utf-16be") {
    // Swapped to little-endian: TextDecoder's "utf-16be" needs full ICU, which not every Node build has.
    le = new Uint8Array(bytes.byteLength);
    for (let i = 0; i < bytes.byteLength; i += 2) {
      le[i] = bytes[i + 1];
      le[i + 1] = bytes[i];
    }
  }
  try {
    return new TextDecoder("utf-16le", { fatal: true, ignoreBOM: true }).decode(le);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    throw new LfmError("DOCUMENT_UNREADABLE", `${path} starts with a ${encoding.toUpperCase()} byte-order mark but is not valid ${encoding.toUpperCase()} text (unpaired surrogates).`, { cause: e });
  }
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
  if (text.trim() === "") {
    throw new LfmError("DOCUMENT_UNREADABLE", `${path} is a PDF without any text (${pages.length} page(s) of images or blank pages); scanned pages need OCR before they can be indexed.`);
  }
  return title ? { kind: "pdf", text, title, pageStarts } : { kind: "pdf", text, pageStarts };
}

/** A Word document's text: mammoth reads the OOXML (a zip of XML) and gives its paragraphs. */
async function extractDocx(path: string, bytes: Uint8Array): Promise<ExtractedText> {
  const mammoth = (await import("mammoth")).default;
  let text: string;
  try {
    text = (await mammoth.extractRawText({ buffer: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) })).value;
  } catch (e) {
    throw new LfmError("DOCUMENT_UNREADABLE", `${path} is not a readable Word (.docx) document (${(e as Error).message}). Check that the file is complete; old .doc files need converting to .docx.`, { cause: e });
  }
  text = text.replace(/\r\n?/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
  if (text === "") throw new LfmError("DOCUMENT_UNREADABLE", `${path} is a Word document without any text.`);
  return { kind: "docx", text };
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
