/**
 * `npm run bench:extract` — document extraction speed and memory on random-weight checkpoints with
 * the published shapes (speed does not depend on the weight values): seconds per page for text
 * pages through an LFM2-1.2B-shape text model (what `--text-model ~/models/LFM2-1.2B-Extract`
 * runs) and for scanned pages through LFM2-VL-450M and LFM2-VL-1.6B (`--model`), and the peak
 * RSS with both models loaded, on a mixed PDF made here with pdf-lib (`--pages`, default 20: text
 * pages and image-only "scanned" pages in turn).
 *
 * One process per VL model (graphs built by a process of their own first); in it, a warm-up
 * document (one page of each kind), then `--runs` passes over the PDF through `extractDocument`,
 * greedy, at most `--max-tokens` tokens a page. Random weights never stop on their own, so the
 * schema is one the grammar closes within 64 tokens; the tokens each page generated are reported
 * with its time. Figures are medians over the pages of each kind, over every run. Writes
 * bench/results/<date>-<machine>-extract.json, prints a JSON line and a table.
 *
 *   npm run bench:extract -- [--models 450m,1.6b] [--text-model lfm2-1.2b] [--pages 20] [--runs 1]
 *                            [--max-tokens 64] [--precision q4] [--threads 2]
 *
 * `--models tiny --text-model tiny` runs the bundled tiny random models instead (a check that the
 * benchmark works, in seconds; its figures mean nothing).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PDFDocument, StandardFonts, rgb } from "pdf-lib";
import sharp from "sharp";
import { ROOT, benchCacheDir, buildThenMeasure, formatLoad, lfm2BenchCheckpoint, machineInfo, medians, writeResults } from "./bench-kit.ts";
import { vlCheckpoint } from "./vl-checkpoint.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "450m,1.6b" },
    "text-model": { type: "string", default: "lfm2-1.2b" },
    pages: { type: "string", default: "20" },
    runs: { type: "string", default: "1" },
    "max-tokens": { type: "string", default: "64" },
    precision: { type: "string", default: "q4" },
    threads: { type: "string", default: "2" },
  },
});
const settings = {
  pages: Number(values.pages),
  runs: Number(values.runs),
  maxTokens: Number(values["max-tokens"]),
  precision: values.precision,
  threads: Number(values.threads),
  textModel: values["text-model"],
};
if (!Number.isInteger(settings.pages) || settings.pages < 2) throw new Error("--pages must be an integer of at least 2 (text and scanned pages in turn)");

const REPORT_LINES = [
  "Quarterly inspection report: pumping station North-7",
  "Pump P-14 (centrifugal, 55 kW), serial SN-4471-B, installed 2019",
  "Discharge pressure: 31 bar at 08:15, 29 bar at 11:40",
  "Suction pressure: 2.4 bar; flow 118 m3/h; motor current 96 A",
  "Bearing temperature drive end 61 C, non-drive end 58 C",
  "Vibration (ISO 10816) 2.8 mm/s: zone B, acceptable",
  "Mechanical seal: slight weeping, no drip; check next visit",
  "Coupling alignment checked, within 0.05 mm",
  "Valve V-203 torque 45 Nm, no leak; valve V-204 replaced",
  "Lubrication: grease added, 20 g per bearing",
  "Electrical: insulation resistance 480 MOhm at 1000 V",
  "Control panel: all indicators working, alarm test passed",
];

/** A page's worth of an inspection report (about 30 lines, ~1,800 characters). */
function textPageLines(page: number): string[] {
  return Array.from({ length: 30 }, (_, i) => `${i + 1}. ${REPORT_LINES[(page + i) % REPORT_LINES.length]}`);
}

/** A letter-size "scan" at 150 dpi: dark bars like lines of print on off-white, no text layer. */
async function scanPng(): Promise<Uint8Array> {
  const [w, h] = [1275, 1650];
  const bars = Array.from({ length: 36 }, (_, i) => `<rect x="110" y="${120 + i * 38}" width="${620 + ((i * 97) % 420)}" height="16" fill="#2a2a2a"/>`).join("");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="#f3f1ea"/>${bars}</svg>`;
  return new Uint8Array(await sharp(Buffer.from(svg)).png().toBuffer());
}

/** `kinds` in order: "text" pages with a text layer, "scan" pages with one full-page image. */
async function makePdf(kinds: ReadonlyArray<"text" | "scan">): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const font = await doc.embedFont(StandardFonts.Helvetica);
  const scan = await doc.embedPng(await scanPng());
  kinds.forEach((kind, n) => {
    const page = doc.addPage([612, 792]);
    if (kind === "scan") page.drawImage(scan, { x: 0, y: 0, width: 612, height: 792 });
    else textPageLines(n).forEach((line, i) => page.drawText(line, { x: 50, y: 740 - i * 23, size: 11, font, color: rgb(0, 0, 0) }));
  });
  return doc.save({ useObjectStreams: false });
}

const dir = join(benchCacheDir, "bench-extract");
mkdirSync(dir, { recursive: true });
const pdfPath = join(dir, `mixed-${settings.pages}.pdf`);
const warmupPath = join(dir, "warmup.pdf");
writeFileSync(pdfPath, await makePdf(Array.from({ length: settings.pages }, (_, i) => (i % 2 === 0 ? "text" : "scan"))));
writeFileSync(warmupPath, await makePdf(["text", "scan"]));

const textDir = values["text-model"] === "tiny" ? join(ROOT, "fixtures/text/tiny-lfm2") : lfm2BenchCheckpoint(values["text-model"]).dir;

const loadStart = loadavg();
const rows: Array<Record<string, unknown>> = [];
for (const model of values.models.split(",")) {
  const name = model === "tiny" ? "tiny-lfm2-vl" : `lfm2-vl-${model}`;
  const vlDir = model === "tiny" ? join(ROOT, "fixtures/vision/tiny-lfm2-vl") : vlCheckpoint(model, true).dir;
  process.stderr.write(`  ${name} + ${settings.textModel}: building, then measuring… `);
  try {
    const args = (runs: string) => [vlDir, textDir, pdfPath, warmupPath, settings.precision, values.threads, runs, values["max-tokens"]];
    const r = buildThenMeasure("extract-worker.ts", args, values.runs);
    const m = medians(r);
    rows.push({ bench: "extract", model: name, ...settings, runs: r.samples.length, loadMs: r.loadMs, peakRssMb: r.peakRssMb, ...r.info, ...m, samples: r.samples });
    process.stderr.write(`text ${r.info?.textSecondsPerPageAllRuns?.toFixed(2)} s/page, scanned ${r.info?.imageSecondsPerPageAllRuns?.toFixed(2)} s/page, peak RSS ${r.peakRssMb.toFixed(0)} MB\n`);
  } catch (e) {
    rows.push({ bench: "extract", model: name, textModel: settings.textModel, error: (e as Error).message });
    process.stderr.write("failed\n");
  }
}

const file = writeResults("extract", {
  settings,
  loadStart,
  notes: [
    `the document: ${settings.pages} letter-size pages made with pdf-lib, text and scanned in turn (page 1 text); a text page is ~30 lines of an inspection report (~1,800 characters), a scanned page one 1275×1650 PNG (150 dpi) of bars like print, no text layer, rendered by PDFium at 150 dpi and tiled by the LFM2-VL processor`,
    "each page's time runs from extract's onPage call for it to the next (the last page's to the end of extractDocument, its merge check included): reading the page (text layer, or rendering), image tiling and encoding, prefill and generation; textSecondsPerPageAllRuns / imageSecondsPerPageAllRuns: medians over every page of that kind in every run (the per-run medians are in samples); docSeconds: the whole document",
    "generation: greedy, the schema {serial: pattern ^[A-Z0-9-]{1,10}$, pressure_bar: integer 0-400 or null, status: ok|leak|replace}, whose longest compact reply is 61 characters, so the grammar closes it within 64 tokens (random weights never stop on their own); *TokensPerPage: the tokens a page generated, forced ones included; *PromptTokensPerPage: its prompt (instruction, schema and page text; or the image tokens of its tiles and thumbnail)",
    "models: the VL model (language core at --precision, tower at VlModel's default q8) for scanned pages and the text model at --precision for text pages, both loaded in one process as `lfm extract --model VL --text-model TEXT` does; peakRssMb is that process's VmHWM",
    "random weights in the published shapes; the text model's tokenizer is the tiny fixture's padded to the real vocabulary size, the VL model's the tiny fixture's: a real BPE vocabulary writes a page's text in fewer, longer tokens, so prefill here is longer than with the real checkpoint",
  ],
  results: rows,
});

const f = (v: unknown, d = 2) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(d) : "—");
console.log(
  JSON.stringify({
    machine: machineInfo(),
    settings,
    results: rows.map((r) => ({
      model: r.model,
      textModel: settings.textModel,
      textSecondsPerPage: r.textSecondsPerPageAllRuns,
      textTokensPerPage: r.textTokensPerPageAllRuns,
      imageSecondsPerPage: r.imageSecondsPerPageAllRuns,
      imageTokensPerPage: r.imageTokensPerPageAllRuns,
      textPromptTokensPerPage: r.textPromptTokensPerPage,
      imagePromptTokensPerPage: r.imagePromptTokensPerPage,
      docSeconds: r.docSeconds,
      peakRssMb: r.peakRssMb,
      ...(r.error ? { error: String(r.error).split("\n")[0] } : {}),
    })),
    file,
  }),
);
console.log(`\nload average ${formatLoad(loadStart)} → ${formatLoad(loadavg())} on ${machineInfo().logicalCores} cores, ${settings.threads} threads, ${settings.precision}, ${settings.pages} pages, ≤ ${settings.maxTokens} tokens a page`);
console.log(`${"scanned pages".padEnd(16)} ${"text pages".padEnd(12)} ${"text s/page (tokens)".padStart(21)} ${"scanned s/page (tokens)".padStart(24)} ${"document s".padStart(11)} ${"peak RSS MB".padStart(12)}`);
for (const r of rows) {
  if (r.error) console.log(`${String(r.model).padEnd(16)} ${settings.textModel.padEnd(12)} failed: ${String(r.error).split("\n")[0].slice(0, 70)}`);
  else
    console.log(
      `${String(r.model).padEnd(16)} ${settings.textModel.padEnd(12)} ${`${f(r.textSecondsPerPageAllRuns)} (${f(r.textTokensPerPageAllRuns, 0)})`.padStart(21)} ${`${f(r.imageSecondsPerPageAllRuns)} (${f(r.imageTokensPerPageAllRuns, 0)})`.padStart(24)} ${f(r.docSeconds, 1).padStart(11)} ${f(r.peakRssMb, 0).padStart(12)}`,
    );
}
console.log(`\n${file}`);
