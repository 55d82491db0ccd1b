/**
 * `lfm extract`: photos, scans and PDFs (files or folders) → one JSON result per document that
 * validates against a schema. With --json (stdout) or --out FILE.jsonl each document is one line,
 * `{"source", "sha256", "data", "confidence", "provenance", "pages"}` or `{"source", "sha256"?,
 * "error": {"code", "message"}}` — a scriptable contract kept stable. Each line is written whole
 * (one write per line), so Ctrl-C leaves only whole lines and --resume can trust the file.
 */
import { accessSync, appendFileSync, constants, existsSync, readFileSync } from "node:fs";
import { LfmError } from "../text-core/errors.ts";
import { TextModel } from "../text-core/model.ts";
import { VlModel } from "../vision/vl-model.ts";
import { type ExtractResult, GENERIC_SCHEMA, askDocument, checkObjectSchema, collectDocuments, extract } from "../pipelines/extract.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, RANGES, SAMPLING, type CliCommand, type Values, checkGenerationFlags, generationOptions, loadFlags, num, parse, precisionOf, readJsonFile } from "./cli-kit.ts";
import { floatRange, intRange } from "./flags.ts";
import { ProgressBar } from "./progress-bar.ts";
import { terminalLine, terminalText } from "./terminal-text.ts";

const HELP = `lfm extract [--model DIR] [--text-model DIR] [--schema S.json] [--json | --out FILE.jsonl [--resume]] FILE|FOLDER...
  Reads photos, scans and PDFs and prints, per document, JSON valid under the schema (constrained
  decoding), a confidence per value and the page it came from. Folders are searched recursively for
  .pdf .jpg .jpeg .png .webp .tif .tiff .gif .heic .heif .avif.
  Routing: an image file, and a PDF page without a text layer (a scan: fewer than --min-text-chars
  non-space characters), is rendered (PDFium) and read by LFM2-VL (--model); a PDF page with a text
  layer goes as text to --text-model (an LFM2 text checkpoint, e.g. LiquidAI/LFM2-1.2B-Extract), or to
  the --model's own language core without one. Pages are read one at a time and merged: the first
  non-null value per field, arrays concatenated (see README "Document analysis"). A text page too
  long for the text model's context (with --max-tokens left for the answer) is read in chunks that
  fit, cut at paragraph, line or word boundaries, merged the same way.
  --model DIR            An LFM2-VL checkpoint (default: the bundled tiny random one).
  --text-model DIR       An LFM2 text checkpoint for pages with a text layer.
  --schema S.json        A JSON Schema with "type": "object" (default: a description and key-value pairs).
  --json                 One JSON line per document on stdout:
                         {"source", "sha256", "data", "confidence", "provenance", "pages"} or
                         {"source", "sha256", "error": {"code", "message"}}.
  --out FILE.jsonl       Append those lines to FILE instead (a progress bar with ETA on a terminal).
  --resume               With --out: skip documents whose sha256 already has a result line in FILE
                         (documents that failed are tried again).
  --min-text-chars N     Fewer non-space characters than this in a page's text layer = a scan (default 20;
                         0 to 1,000,000).
  --dpi N                Resolution scanned pages are rendered at (default 150; above 0, at most 1200;
                         longest side ≤ 2048 px).
  --max-input-pixels N   Refuse larger images (default 100000000), checked before decoding.
  --precision P          q4 (default) | q8 | fp32, both models; --vision-precision P for the vision tower.
  Sampling (defaults from the checkpoints' generation_config.json, else greedy; LFM2-Extract asks for greedy):
  --max-tokens N (default 512 per page)  --temperature T  --top-k K  --top-p P  --min-p P
  --repetition-penalty R  --seed S
  Exit status 2 if any document failed (its line says why); the others are still written.
  Also: --threads N, --cache-dir DIR, --no-cache.`;

/** lfm chat's sampling flags less --stop: stop ids are each checkpoint's own (the VL and text models may differ). */
const { stop: _stop, ...SAMPLING_FLAGS } = SAMPLING;

const MIN_TEXT_CHARS = intRange(0, 1_000_000);
const DPI = floatRange(0, 1200, true);

const FLAGS = {
  "text-model": { type: "string" },
  schema: { type: "string" },
  out: { type: "string" },
  resume: { type: "boolean" },
  "min-text-chars": { type: "string" },
  dpi: { type: "string" },
  "max-input-pixels": { type: "string" },
  "vision-precision": { type: "string" },
} as const;

const EXTRACT_OPTIONS = { ...COMMON, ...SAMPLING_FLAGS, ...FLAGS } as const;
const { out: _o, resume: _r, schema: _s, ...ASK_DOC_FLAGS } = FLAGS;
const ASK_DOC_OPTIONS = { ...COMMON, ...SAMPLING_FLAGS, ...ASK_DOC_FLAGS } as const;

/** The sha256 of every document FILE already holds a result for (failed lines excluded: they are retried). */
export function finishedHashes(out: string): Set<string> {
  const done = new Set<string>();
  if (!existsSync(out)) return done;
  let text: string;
  try {
    text = readFileSync(out, "utf8");
  } catch {
    throw new LfmError("FILE_NOT_FOUND", `--out file ${out} exists but cannot be read; --resume needs to read it.`);
  }
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let row: { sha256?: unknown; error?: unknown };
    try {
      row = JSON.parse(line) as typeof row;
    } catch {
      continue; // not one of ours: ignored, never rewritten
    }
    if (typeof row.sha256 === "string" && row.error === undefined) done.add(row.sha256);
  }
  return done;
}

/**
 * A results file whose last line is unfinished (a process killed in mid-write by something other
 * than Ctrl-C) gets a newline first, so the next line starts on its own line and the broken one
 * stays a line that --resume ignores.
 */
function endWithNewline(out: string): void {
  let text: Buffer;
  try {
    text = readFileSync(out);
  } catch {
    return; // not there yet: created by the first line
  }
  if (text.length > 0 && text[text.length - 1] !== 0x0a) {
    try {
      appendFileSync(out, "\n");
    } catch (e) {
      throw new LfmError("OUTPUT_UNWRITABLE", `cannot append to ${out}: ${(e as Error).message}`, { cause: e });
    }
  }
}

/** The line printed for a result: the contract's fields in a fixed order. */
function resultLine(r: ExtractResult): string {
  if ("error" in r) return JSON.stringify(r.sha256 === undefined ? { source: r.source, error: r.error } : { source: r.source, sha256: r.sha256, error: r.error });
  return JSON.stringify({ source: r.source, sha256: r.sha256, data: r.data, confidence: r.confidence, provenance: r.provenance, pages: r.pages });
}

function humanResult(r: ExtractResult): void {
  if ("error" in r) {
    process.stderr.write(`${terminalLine(r.source)}: error [${r.error.code}]: ${terminalText(r.error.message)}\n`);
    return;
  }
  const routes = r.pages.map((p) => `${p.page} ${p.route}`).join(", ");
  process.stdout.write(`${terminalLine(r.source)} (page${r.pages.length === 1 ? "" : "s"} ${routes})\n${terminalText(JSON.stringify(r.data, null, 2))}\n`);
}

async function run(v: Values, positionals: string[], signal: AbortSignal): Promise<number> {
  if (positionals.length === 0) throw new LfmError("INVALID_ARGUMENT", "give at least one file or folder: lfm extract --model DIR FILE|FOLDER...");
  const out = v.out as string | undefined;
  if (v.resume && out === undefined) throw new LfmError("INVALID_ARGUMENT", "--resume needs --out FILE.jsonl (the results it resumes).");
  if (out !== undefined && v.json) throw new LfmError("INVALID_ARGUMENT", "give --json (lines on stdout) or --out FILE (lines in FILE), not both.");
  const schema = typeof v.schema === "string" ? readJsonFile(v.schema, "--schema") : GENERIC_SCHEMA;
  checkObjectSchema(schema);
  const { minTextChars, dpi, maxInputPixels } = documentFlags(v);
  checkGenerationFlags(v); // every flag is checked before any file is read or a model loads
  const done = v.resume ? finishedHashes(out!) : new Set<string>();
  if (out !== undefined) endWithNewline(out);
  const files = collectDocuments(positionals);

  const quiet = { ...v, json: v.json || out !== undefined }; // no notes on stdout/stderr a script reads
  const { vl, lm, release } = await loadDocumentModels(quiet, maxInputPixels);
  try {
    const { stopTokenIds: _stops, ...gen } = generationOptions(vl, v, signal);
    const bar = new ProgressBar(process.stderr, Boolean(process.stderr.isTTY) && (out !== undefined || Boolean(v.json)));
    let finished = 0;
    let skipped = 0;
    let failed = 0;
    const total = files.length;
    try {
      const results = extract(files, {
        ...gen,
        maxTokens: num(v, "max-tokens", RANGES.maxTokens) ?? 512,
        schema,
        model: vl,
        textModel: lm,
        minTextChars,
        render: dpi === undefined ? undefined : { dpi },
        skip: ({ sha256 }) => {
          if (!done.has(sha256)) return false;
          skipped++;
          bar.update("extracting", finished + skipped, total, "documents");
          return true;
        },
        onPage: (e) => bar.update("extracting", finished + skipped, total, `documents (page ${e.page}/${e.pageCount})`),
      });
      for await (const r of results) {
        finished++;
        if ("error" in r) failed++;
        if (out !== undefined) {
          try {
            appendFileSync(out, `${resultLine(r)}\n`); // one write: the line is whole or absent
          } catch (e) {
            throw new LfmError("OUTPUT_UNWRITABLE", `cannot append to ${out}: ${(e as Error).message}`, { cause: e });
          }
        } else if (v.json) process.stdout.write(`${resultLine(r)}\n`);
        else humanResult(r);
        bar.update("extracting", finished + skipped, total, "documents");
      }
    } finally {
      bar.done();
    }
    if (out !== undefined && process.stderr.isTTY) {
      process.stderr.write(`${finished} document${finished === 1 ? "" : "s"} written to ${terminalLine(out)}${skipped ? `, ${skipped} already there` : ""}${failed ? `, ${failed} failed` : ""}.\n`);
    }
    return failed > 0 ? 2 : 0;
  } finally {
    await release();
  }
}

/** extract's and ask-doc's own numeric flags, checked. */
function documentFlags(v: Values): { minTextChars?: number; dpi?: number; maxInputPixels?: number } {
  return { minTextChars: num(v, "min-text-chars", MIN_TEXT_CHARS), dpi: num(v, "dpi", DPI), maxInputPixels: num(v, "max-input-pixels", RANGES.maxInputPixels) };
}

/** LFM2-VL (--model) and the optional --text-model with the common flags; `release` frees both. */
async function loadDocumentModels(v: Values, maxInputPixels: number | undefined): Promise<{ vl: VlModel; lm?: TextModel; release: () => Promise<void> }> {
  const load = loadFlags(v);
  const vl = await VlModel.load(modelOrBundled(v, "vision"), { ...load, visionPrecision: precisionOf(v, "vision-precision"), image: maxInputPixels === undefined ? {} : { maxInputPixels } });
  try {
    const lm = typeof v["text-model"] === "string" ? await TextModel.load(v["text-model"], load) : undefined;
    return {
      vl,
      lm,
      release: async () => {
        await lm?.release();
        await vl.release();
      },
    };
  } catch (e) {
    await vl.release();
    throw e;
  }
}

export const extractCommand: CliCommand = {
  name: "extract",
  summary: "Extract schema-valid JSON fields from photos, scans and PDFs (LFM2-VL + LFM2).",
  help: HELP,
  options: EXTRACT_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values, positionals } = parse(args, EXTRACT_OPTIONS);
    return run(values, positionals, signal);
  },
};

const ASK_HELP = `lfm ask-doc [--model DIR] [--text-model DIR] [--json] FILE "QUESTION"
  Answers a question from one photo, scan or PDF, with the page the answer came from. Every page is
  asked on its own, routed as in lfm extract (text layer → --text-model or --model's language core;
  scans and images → LFM2-VL; a text page too long for the context chunk by chunk), each reply
  constrained to {"answer": string or null}; the non-null answer with the highest confidence (mean
  token log-probability) wins, the earliest page on a tie.
  --json                 Print {"source", "sha256", "question", "answer", "page", "confidence", "span"?,
                         "pages"}; "answer", "page" and "confidence" are null when no page answers.
  --model, --text-model, --min-text-chars, --dpi, --max-input-pixels, --precision, --vision-precision,
  sampling (--max-tokens N per page, default 256; --temperature T, --top-k K, --top-p P, --min-p P,
  --repetition-penalty R, --seed S): as in lfm extract.
  Also: --threads N, --cache-dir DIR, --no-cache.`;

async function runAsk(v: Values, positionals: string[], signal: AbortSignal): Promise<number> {
  if (positionals.length !== 2) throw new LfmError("INVALID_ARGUMENT", `give one file and one question: lfm ask-doc FILE "QUESTION" (got ${positionals.length} arguments).`);
  const [file, question] = positionals;
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw new LfmError("FILE_NOT_FOUND", `${file} not found or not readable.`);
  }
  const { minTextChars, dpi, maxInputPixels } = documentFlags(v);
  checkGenerationFlags(v);
  const { vl, lm, release } = await loadDocumentModels(v, maxInputPixels);
  try {
    const { stopTokenIds: _stops, ...gen } = generationOptions(vl, v, signal);
    const result = await askDocument(file, readFileSync(file), question, { ...gen, model: vl, textModel: lm, minTextChars, render: dpi === undefined ? undefined : { dpi } });
    if (v.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else if (result.answer === null) {
      process.stdout.write(`No page of ${terminalLine(file)} answers it (${result.pages.length} page${result.pages.length === 1 ? "" : "s"} read).\n`);
    } else {
      process.stdout.write(`${terminalText(result.answer)}\n(page ${result.page}, confidence ${result.confidence!.toFixed(3)})\n`);
    }
    return 0;
  } finally {
    await release();
  }
}

export const askDocCommand: CliCommand = {
  name: "ask-doc",
  summary: "Answer a question from a photo, scan or PDF, with the page it came from.",
  help: ASK_HELP,
  options: ASK_DOC_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values, positionals } = parse(args, ASK_DOC_OPTIONS);
    return runAsk(values, positionals, signal);
  },
};
