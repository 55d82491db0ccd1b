/**
 * Document analysis: photos, scans and PDFs → JSON that validates against a schema, with a
 * confidence for every value and the page (and, on a text page, the characters) it came from.
 *
 *   image file            → LFM2-VL (the processor's tiling, EXIF orientation) → one page, route "image"
 *   PDF page with text    → its text layer (unpdf) → an LFM2 text model     → route "text"
 *   PDF page without text → rendered by PDFium → LFM2-VL                     → route "image"
 *   a text page too long for the text model's context → chunks that fit (paragraph, line, word
 *                           boundaries), each extracted on its own, spans offset to the page
 *   pages (chunks in text order) → `mergePages` (first non-null value per field, arrays concatenated) → the document's result
 *
 * Every reply is constrained to the schema token by token (`responseFormat: json_schema`), so each
 * page's JSON validates; the merged result is checked against the same grammar and, should the
 * merge have broken it (e.g. `maxItems` after concatenation), the first page's result is kept.
 * Pages are read and rendered one at a time, so memory stays flat however long the PDF.
 */
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { LfmError, type LfmErrorCode } from "../text-core/errors.ts";
import type { ChatMessage } from "../text-core/chat.ts";
import type { Completion, TextGenerateOptions, TextModel } from "../text-core/model.ts";
import type { ResponseFormat } from "../text-core/structured/response-format.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import { openPdf, pdfPageText } from "../retrieval/ingest/extract.ts";
import type { ImageInput, VlModel } from "../vision/vl-model.ts";
import { type PageExtraction, type Provenance, mergePages } from "./extract-merge.ts";
import { jsonLeafSpans, leafConfidence, tokenCharSpans } from "./json-spans.ts";
import { PdfRenderer, type RenderOptions } from "./pdf-render.ts";

/** What `lfm extract` asks for without --schema: a description and the key–value pairs found. */
export const GENERIC_SCHEMA = {
  type: "object",
  properties: {
    description: { type: "string", maxLength: 400, description: "What the document is, in one or two sentences." },
    fields: {
      type: "array",
      maxItems: 40,
      items: {
        type: "object",
        properties: { key: { type: "string", maxLength: 80 }, value: { type: "string", maxLength: 200 } },
        required: ["key", "value"],
        additionalProperties: false,
      },
    },
  },
  required: ["description", "fields"],
  additionalProperties: false,
} as const;

export type PageRoute = "text" | "image";

/** The generation options a caller may set (the format and the log-probabilities are the pipeline's). */
export type ExtractGenerateOptions = Omit<TextGenerateOptions, "responseFormat" | "tools" | "toolChoice" | "logprobs" | "promptOverrides">;

export interface ExtractOptions extends ExtractGenerateOptions {
  /** A JSON Schema with `type: "object"` (default `GENERIC_SCHEMA`). */
  schema?: unknown;
  /** LFM2-VL: image files and scanned PDF pages (and text pages when there is no `textModel`). */
  model?: VlModel;
  /** An LFM2 text checkpoint (e.g. LFM2-1.2B-Extract) for PDF pages with a text layer; default: `model`'s language core. */
  textModel?: TextModel;
  /** A page whose text layer has fewer non-space characters than this is treated as scanned (default 20). */
  minTextChars?: number;
  /** How scanned pages are rendered (default 150 dpi, longest side ≤ 2048 px). */
  render?: RenderOptions;
  /** Called with each readable file's hash before it is processed: true skips it (no result), e.g. one already done (`--resume`). */
  skip?: (doc: { source: string; sha256: string }) => boolean;
  /** Called before each page is processed. */
  onPage?: (event: { source: string; page: number; pageCount: number; route: PageRoute }) => void;
}

export interface ExtractSuccess {
  source: string;
  /** SHA-256 of the file's bytes (hex): what `--resume` recognises a document by. */
  sha256: string;
  /** Valid under the schema. */
  data: unknown;
  /** For each scalar value's JSON pointer: the mean log-probability (≤ 0) of the tokens that wrote it. */
  confidence: Record<string, number>;
  /** For each scalar value's JSON pointer: its page and, on a text page, its characters in the page text when found there. */
  provenance: Record<string, Provenance>;
  /** Every page read, in order, with the way it went. */
  pages: Array<{ page: number; route: PageRoute }>;
}

export interface ExtractFailure {
  source: string;
  sha256?: string;
  error: { code: LfmErrorCode; message: string };
}

export type ExtractResult = ExtractSuccess | ExtractFailure;

/** Messages for a text page, in the LFM2-Extract style: the schema in the system prompt, the document as the user turn. */
export function textPageMessages(schema: unknown, pageText: string, instruction = EXTRACT_INSTRUCTION): ChatMessage[] {
  return [
    { role: "system", content: taskText(schema, instruction) },
    { role: "user", content: pageText },
  ];
}

const EXTRACT_INSTRUCTION = "Extract the information the following JSON schema asks for from the document. Reply with one JSON object that follows the schema; use null where the schema allows it and the document does not give the value.";

/** The instruction, a blank line, `Schema:` and the schema as compact JSON: the system prompt of a text page, the text after an image page's image. */
function taskText(schema: unknown, instruction: string): string {
  return `${instruction}\n\nSchema:\n${JSON.stringify(schema)}`;
}

/** Refuses a schema that is not an object schema (its result could not hold named fields). */
export function checkObjectSchema(schema: unknown): void {
  const type = (schema as { type?: unknown } | null)?.type;
  if (typeof schema !== "object" || schema === null || Array.isArray(schema) || type !== "object") {
    throw new LfmError("SCHEMA_INVALID", `an extraction schema must be a JSON Schema object with "type": "object" (got ${JSON.stringify(schema)?.slice(0, 80)}); wrap the fields in {"type": "object", "properties": {...}}.`);
  }
}

/** Processes each file in turn; a file that fails gives an `ExtractFailure` and the batch goes on. Cancellation (`signal`) ends the batch with ABORTED. */
export async function* extract(files: readonly string[], opts: ExtractOptions): AsyncGenerator<ExtractResult> {
  const schema = opts.schema ?? GENERIC_SCHEMA;
  checkObjectSchema(schema);
  const textModel = opts.textModel ?? opts.model?.textModel;
  if (!textModel) throw new LfmError("MODEL_REQUIRED", "extract needs an LFM2-VL model (model) or an LFM2 text model (textModel).");
  // Compiled once up front: an unsupported schema fails the call, not every file.
  await textModel.generationOptions({ responseFormat: { type: "json_schema", schema } });
  for (const source of files) {
    if (opts.signal?.aborted) throw new LfmError("ABORTED", "extraction was cancelled.");
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(source);
    } catch (e) {
      // EISDIR too: a folder that could not be listed arrives here as its own path.
      yield failure(source, undefined, new LfmError("FILE_NOT_FOUND", `${source} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}).`));
      continue;
    }
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    if (opts.skip?.({ source, sha256 })) continue;
    try {
      yield await extractDocument(source, bytes, { ...opts, schema }, sha256);
    } catch (e) {
      if (e instanceof LfmError && e.code === "ABORTED") throw e;
      if (opts.signal?.aborted) throw new LfmError("ABORTED", "extraction was cancelled.", { cause: e });
      yield failure(source, sha256, e);
    }
  }
}

function failure(source: string, sha256: string | undefined, e: unknown): ExtractFailure {
  const error = e instanceof LfmError ? { code: e.code, message: e.message } : { code: "RUNTIME_FAILED" as const, message: (e as Error)?.message ?? String(e) };
  return sha256 === undefined ? { source, error } : { source, sha256, error };
}

/** What a folder given to extract is searched for (a file named explicitly is always tried). */
export const DOCUMENT_EXTENSIONS = new Set([".pdf", ".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif"]);

/**
 * The documents under `paths`: each file as given, and each folder's documents (by extension,
 * recursively, hidden entries skipped), sorted per folder. A path that cannot be listed or does not
 * exist stays in the list, so the batch reports it as that entry's failure and goes on.
 */
export function collectDocuments(paths: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      out.push(dir);
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (entry.name.startsWith(".")) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && DOCUMENT_EXTENSIONS.has(extname(entry.name).toLowerCase())) out.push(path);
    }
  };
  for (const p of paths) {
    let isDir = false;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      // reported when read
    }
    if (isDir) walk(p);
    else out.push(p);
  }
  return out;
}

/** True when the bytes are a PDF (the header may follow up to 1 KB of junk, as readers allow). */
export function isPdf(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 1024)).toString("latin1");
  return head.includes("%PDF-");
}

/** One document (a PDF or an image file's bytes) → its merged result. */
export async function extractDocument(source: string, bytes: Uint8Array, opts: ExtractOptions, sha256 = createHash("sha256").update(bytes).digest("hex")): Promise<ExtractSuccess> {
  const schema = opts.schema ?? GENERIC_SCHEMA;
  const { pages, routes, core } = await extractPages(source, bytes, { ...opts, schema }, EXTRACT_INSTRUCTION);
  const merged = await mergeChecked(pages, core, { type: "json_schema", schema });
  return { source, sha256, data: merged.data, confidence: merged.confidence, provenance: merged.provenance, pages: routes };
}

/** Every page of a document extracted on its own with `instruction` (nothing merged), read one page at a time. A text page too long for the context gives one extraction per chunk, in text order. */
async function extractPages(
  source: string,
  bytes: Uint8Array,
  opts: ExtractOptions & { schema: unknown },
  instruction: string,
): Promise<{ pages: PageExtraction[]; routes: ExtractSuccess["pages"]; core: TextModel }> {
  const { schema } = opts;
  checkObjectSchema(schema);
  const core = opts.textModel ?? opts.model?.textModel;
  if (!core) throw new LfmError("MODEL_REQUIRED", "extract needs an LFM2-VL model (model) or an LFM2 text model (textModel).");
  const task: PageTask = { schema, instruction, format: { type: "json_schema", schema } };
  const pages: PageExtraction[] = [];
  const routes: ExtractSuccess["pages"] = [];
  for await (const p of documentPages(source, bytes, opts)) {
    if (p.route === "image" && p.file) visionModel(opts, source, undefined); // an image file without a VL model fails before its page starts
    opts.onPage?.({ source, page: p.page, pageCount: p.pageCount, route: p.route });
    if (p.route === "text") {
      pages.push(...(await textPage(opts.textModel ?? visionModel(opts, source, p.page).textModel, p.text, p.page, task, opts)));
    } else {
      const vl = visionModel(opts, source, p.file ? undefined : p.page);
      pages.push(await imagePage(vl, await p.image(), p.page, task, opts));
    }
    routes.push({ page: p.page, route: p.route });
  }
  return { pages, routes, core };
}

/** One page of a document as the router sends it: a text layer to read, or an image to look at (rendered when asked for). */
export type DocumentPage =
  | { page: number; pageCount: number; route: "text"; text: string }
  | { page: number; pageCount: number; route: "image"; /** True for an image file (the whole document), false for a PDF page. */ file: boolean; image: () => Promise<Uint8Array> };

/** How many pages PDF.js reads from one opening of a document (see `documentPages`). */
const PAGES_PER_OPENING = 250;

/**
 * The pages of a document, one at a time and only when asked for: an image file is one image page;
 * a PDF page with at least `minTextChars` non-space characters in its text layer is a text page,
 * any other page an image page that PDFium renders when its `image()` is called. Only the page
 * being read is held (PDF.js releases a page's objects once its text is taken; a rendering is the
 * caller's), so memory stays flat however long the PDF. Ending the iteration early, or an error,
 * frees the document.
 */
export async function* documentPages(source: string, bytes: Uint8Array, opts: Pick<ExtractOptions, "minTextChars" | "render" | "signal"> = {}): AsyncGenerator<DocumentPage> {
  if (!isPdf(bytes)) {
    yield { page: 1, pageCount: 1, route: "image", file: true, image: async () => bytes };
    return;
  }
  let pdf = await openPdf(source, bytes);
  let renderer: PdfRenderer | undefined;
  try {
    const pageCount = pdf.numPages;
    if (pageCount === 0) throw new LfmError("DOCUMENT_UNREADABLE", `${source} has no pages.`);
    for (let n = 1; n <= pageCount; n++) {
      if (opts.signal?.aborted) throw new LfmError("ABORTED", "extraction was cancelled.");
      if (n % PAGES_PER_OPENING === 0) {
        // PDF.js keeps every page it has loaded (both sides of its worker) until the document is
        // destroyed: opened afresh every so many pages, a long PDF's memory stays flat.
        await pdf.loadingTask.destroy();
        pdf = await openPdf(source, bytes);
      }
      const text = (await pdfPageText(source, pdf, n)).replace(/\r\n?/g, "\n");
      if (text.replace(/\s+/g, "").length >= (opts.minTextChars ?? 20)) {
        yield { page: n, pageCount, route: "text", text };
      } else {
        const page = n;
        yield {
          page,
          pageCount,
          route: "image",
          file: false,
          image: async () => {
            renderer ??= await PdfRenderer.open(source, bytes);
            return renderer.renderPng(page, opts.render);
          },
        };
      }
    }
  } finally {
    renderer?.destroy();
    await pdf.loadingTask.destroy(); // frees the worker-side document too
  }
}

/** What each page is asked: the instruction, the schema, and the schema compiled as a response format. */
interface PageTask {
  schema: unknown;
  instruction: string;
  format: ResponseFormat;
}

function visionModel(opts: ExtractOptions, source: string, page: number | undefined): VlModel {
  if (opts.model) return opts.model;
  const where = page === undefined ? `${source} is an image` : `page ${page} of ${source} has no text layer (a scan)`;
  throw new LfmError("MODEL_REQUIRED", `${where}: it needs an LFM2-VL model (--model DIR).`);
}

function generation(opts: ExtractOptions, format: ResponseFormat): TextGenerateOptions {
  const { schema: _s, model: _m, textModel: _t, minTextChars: _c, render: _r, onPage: _p, skip: _k, ...rest } = opts;
  return { ...rest, responseFormat: format, logprobs: true };
}

/** What `maxTokens` is when a call leaves it out (generate's default): the room a chunk leaves for the answer. */
const DEFAULT_ANSWER_TOKENS = 256;

/**
 * A text page through the text model: the whole page in one prompt when it fits the context with
 * room for the answer (`maxTokens`), else in chunks that do (`splitPageText`), each extracted on
 * its own with the same constrained decoding: one extraction per chunk, spans in page characters.
 */
async function textPage(model: TextModel, text: string, page: number, task: PageTask, opts: ExtractOptions): Promise<PageExtraction[]> {
  const context = model.config.maxPositionEmbeddings;
  const answerRoom = opts.maxTokens ?? DEFAULT_ANSWER_TOKENS;
  const promptIds = (chunk: string) => model.chatIds(textPageMessages(task.schema, chunk, task.instruction));
  const fits = (chunk: string) => promptIds(chunk).length + answerRoom <= context;
  const whole = promptIds(text);
  const bare = promptIds("").length;
  // Chunks cannot give the answer more room than the whole page has when even an empty page leaves
  // too little: a page that fits then goes whole, its answer capped by the context as always.
  if (whole.length + answerRoom <= context || (bare + answerRoom >= context && whole.length < context)) {
    return [pageExtraction(model.tokenizer, await model.complete(whole, generation(opts, task.format)), page, text)];
  }
  if (bare + answerRoom >= context) {
    throw new LfmError("PROMPT_TOO_LONG", `page ${page}: the instruction and schema (${bare} tokens) and maxTokens (${answerRoom}) leave no room for the page's text in the text model's context of ${context} tokens; lower --max-tokens or shorten the schema.`);
  }
  const out: PageExtraction[] = [];
  for (const [start, end] of splitPageText(text, fits)) {
    if (opts.signal?.aborted) throw new LfmError("ABORTED", "extraction was cancelled.");
    const chunk = text.slice(start, end);
    const completion = await model.complete(promptIds(chunk), generation(opts, task.format));
    out.push(pageExtraction(model.tokenizer, completion, page, chunk, start));
  }
  return out;
}

/** Where a chunk may end, best first: after a blank line (a paragraph), after a line break, after a space. */
const CHUNK_BOUNDARIES = [/\n[ \t]*\n\s*/g, /\n/g, /\s+/g];

/**
 * `text` cut into consecutive `[start, end)` chunks, each as long as `fits` allows, ending at the
 * last paragraph break that fits, else the last line break, else the last space, else between two
 * characters (never inside a surrogate pair). Chunks cover the text exactly, so a chunk's character
 * `i` is the page's `start + i`. `fits` must hold for longer text only if it holds for shorter
 * (a token count does); throws PROMPT_TOO_LONG when not even one character fits.
 */
export function splitPageText(text: string, fits: (chunk: string) => boolean): Array<[number, number]> {
  const chunks: Array<[number, number]> = [];
  let start = 0;
  while (start < text.length) {
    // An upper bound first (doubling), so each search looks at one chunk's worth of text, not the rest of the page.
    let limit = start + 1024;
    while (limit < text.length && fits(text.slice(start, limit))) limit = start + 2 * (limit - start);
    if (limit >= text.length && fits(text.slice(start))) {
      chunks.push([start, text.length]);
      break;
    }
    limit = Math.min(limit, text.length);
    const end = lastFittingCut(text, start, limit, fits);
    chunks.push([start, end]);
    start = end;
  }
  return chunks;
}

/** The end of the longest chunk from `start` (below `limit`, which does not fit) that fits, at the best kind of boundary there is one. */
function lastFittingCut(text: string, start: number, limit: number, fits: (chunk: string) => boolean): number {
  for (const boundary of CHUNK_BOUNDARIES) {
    const cuts: number[] = [];
    boundary.lastIndex = start;
    for (let m = boundary.exec(text); m && m.index < limit; m = boundary.exec(text)) {
      const at = m.index + m[0].length;
      if (at > start && at < limit) cuts.push(at);
    }
    const best = lastFitting(cuts, (at) => fits(text.slice(start, at)));
    if (best !== undefined) return best;
  }
  const cuts: number[] = [];
  for (let at = start + 1; at < limit; at++) {
    const code = text.charCodeAt(at - 1);
    if (code < 0xd800 || code > 0xdbff) cuts.push(at); // not between the halves of a surrogate pair
  }
  const best = lastFitting(cuts, (at) => fits(text.slice(start, at)));
  if (best === undefined) throw new LfmError("PROMPT_TOO_LONG", `not even one character of the page's text from character ${start} fits the text model's context with the prompt and maxTokens; lower --max-tokens.`);
  return best;
}

/** The last of the ascending `cuts` for which `ok` holds (binary search: `ok` holds for a prefix of them), or undefined. */
function lastFitting(cuts: readonly number[], ok: (cut: number) => boolean): number | undefined {
  let lo = 0;
  let hi = cuts.length; // cuts[< lo] fit, cuts[>= hi] do not
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ok(cuts[mid])) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? undefined : cuts[lo - 1];
}

async function imagePage(model: VlModel, image: ImageInput, page: number, task: PageTask, opts: ExtractOptions): Promise<PageExtraction> {
  const prompt = await model.prepareChat([{ role: "user", content: [{ type: "image", image }, { type: "text", text: taskText(task.schema, task.instruction) }] }]);
  const out = await model.complete(prompt, generation(opts, task.format));
  return pageExtraction(model.tokenizer, out, page, undefined);
}

/**
 * A constrained completion → its data, each value's confidence, and where it came from. `pageText`
 * is the text the model read: the page's, or a chunk of it starting at the page's character
 * `textOffset`, so spans are in page characters.
 */
export function pageExtraction(tokenizer: Lfm2Tokenizer, out: Completion, page: number, pageText: string | undefined, textOffset = 0): PageExtraction {
  if (out.finishReason === "length") {
    throw new LfmError("OUTPUT_INCOMPLETE", `page ${page}: the JSON hit maxTokens (${out.ids.length} tokens) before it was complete; raise --max-tokens.`);
  }
  const leaves = jsonLeafSpans(out.text);
  const confidence = leafConfidence(leaves, tokenCharSpans(tokenizer, out.ids), out.logprobs ?? []);
  const provenance: Record<string, Provenance> = {};
  for (const leaf of leaves) {
    const span = pageText === undefined ? undefined : findInPage(pageText, leaf.value, out.text.slice(leaf.start, leaf.end));
    provenance[leaf.pointer] = span ? { page, span: [span[0] + textOffset, span[1] + textOffset] } : { page };
  }
  return { page, data: JSON.parse(out.text) as unknown, confidence, provenance };
}

/** Where a value's text occurs in the page text: a string's contents, or a number as written. */
function findInPage(pageText: string, value: unknown, written: string): [number, number] | undefined {
  const needle = typeof value === "string" ? value : typeof value === "number" ? written : undefined;
  if (!needle || needle.trim() === "") return undefined;
  const at = pageText.indexOf(needle);
  return at < 0 ? undefined : [at, at + needle.length];
}

/**
 * The pages merged, checked against the format's own grammar (the merged JSON, compact, must be
 * a complete output the constrained decoder could have produced); if it is not, the first page's
 * result stands alone.
 */
async function mergeChecked(pages: readonly PageExtraction[], model: TextModel, format: ResponseFormat): Promise<ReturnType<typeof mergePages>> {
  if (pages.length === 1) return { data: pages[0].data, confidence: pages[0].confidence, provenance: pages[0].provenance };
  const merged = mergePages(pages);
  if (await matchesFormat(model, format, JSON.stringify(merged.data))) return merged;
  return { data: pages[0].data, confidence: pages[0].confidence, provenance: pages[0].provenance };
}

/** Whether `text` is a complete output of `format` under `model`'s tokenizer. */
export async function matchesFormat(model: TextModel, format: ResponseFormat, text: string): Promise<boolean> {
  const { constraint } = await model.generationOptions({ responseFormat: format });
  if (!constraint) return true;
  const matcher = await constraint.newMatcher(model.stopTokenIds);
  try {
    for (const id of model.tokenizer.encode(text, { addSpecialTokens: false })) {
      const bits = await matcher.allowed();
      if (((bits[id >>> 5] >>> (id & 31)) & 1) === 0) return false;
      matcher.accept(id);
    }
    return await matcher.finished();
  } finally {
    matcher.dispose();
  }
}

/** The schema of one page's answer to a question: the answer in the document's words, or null. */
export const ANSWER_SCHEMA = {
  type: "object",
  properties: { answer: { anyOf: [{ type: "string", minLength: 1, maxLength: 300 }, { type: "null" }] } },
  required: ["answer"],
  additionalProperties: false,
} as const;

export interface DocumentAnswer {
  source: string;
  sha256: string;
  question: string;
  /** The answer of the page that answered with the highest confidence; null when no page did. */
  answer: string | null;
  /** That page (1-based), its confidence (mean token log-probability, ≤ 0) and the answer's characters in its text layer when found there. */
  page: number | null;
  confidence: number | null;
  span?: [number, number];
  pages: Array<{ page: number; route: PageRoute }>;
}

/** The pages' non-null `answer` with the highest confidence, the earliest page on a tie; undefined when no page answered. */
export function bestAnswer(pages: readonly PageExtraction[]): { page: PageExtraction; answer: string; confidence: number } | undefined {
  let best: { page: PageExtraction; answer: string; confidence: number } | undefined;
  for (const page of pages) {
    const answer = (page.data as { answer?: string | null }).answer;
    if (answer === null || answer === undefined) continue;
    const confidence = page.confidence["/answer"] ?? -Infinity;
    if (!best || confidence > best.confidence) best = { page, answer, confidence };
  }
  return best;
}

/**
 * Answers `question` from a document: every page is asked on its own (constrained to
 * `ANSWER_SCHEMA`), and the non-null answer with the highest confidence wins (the earliest page on
 * a tie).
 */
export async function askDocument(source: string, bytes: Uint8Array, question: string, opts: Omit<ExtractOptions, "schema" | "skip">): Promise<DocumentAnswer> {
  if (question.trim() === "") throw new LfmError("INVALID_ARGUMENT", "the question is empty.");
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const instruction = `Answer the question below from the document. Reply with {"answer": ...}: the answer in the document's own words, or null if the document does not answer it.\n\nQuestion: ${question}`;
  const { pages, routes } = await extractPages(source, bytes, { ...opts, schema: ANSWER_SCHEMA }, instruction);
  const best = bestAnswer(pages);
  if (!best) return { source, sha256, question, answer: null, page: null, confidence: null, pages: routes };
  const span = best.page.provenance["/answer"]?.span;
  return { source, sha256, question, answer: best.answer, page: best.page.page, confidence: best.confidence, ...(span ? { span } : {}), pages: routes };
}
