/**
 * One document-extraction benchmark configuration in its own process (so peak RSS is its own).
 * Prints one JSON line. Usage:
 *   node bin/run-ts.mjs bench/extract-worker.ts VL_DIR TEXT_DIR PDF WARMUP_PDF PRECISION THREADS RUNS MAX_TOKENS
 * RUNS = 0: only load the models (building their graphs into the cache) and exit.
 *
 * Loads LFM2-VL from VL_DIR (scanned pages) and an LFM2 text model from TEXT_DIR (text pages), as
 * `lfm extract --model VL_DIR --text-model TEXT_DIR` does, extracts WARMUP_PDF once (one page of each
 * kind), then PDF `RUNS` times through `extractDocument` with `BENCH_SCHEMA`, greedy, at most
 * MAX_TOKENS tokens a page. Each page's time runs from its `onPage` call to the next one (the last
 * page's to the end of `extractDocument`, the merge check included): reading the page (text layer,
 * or rendering at 150 dpi), tiling and encoding the image, prefill and generation.
 */
import { readFileSync } from "node:fs";
import { extractDocument, type PageRoute } from "../pipelines/extract.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { TextModel } from "../text-core/model.ts";
import { VlModel } from "../vision/vl-model.ts";
import { flushWrites, peakRssMb } from "./prompt.ts";

/**
 * An inspection form whose longest reply, `{"serial":"AAAAAAAAAA","pressure_bar":400,"status":"replace"}`,
 * is 61 characters: compact JSON (no free whitespace), ASCII-only patterned strings, a bounded
 * integer, an enum; every token writes at least one character, so the grammar closes every reply
 * within 64 tokens whatever the tokenizer. Random weights never stop on their own; here the grammar
 * stops them, so every page's reply is complete and its length is stated.
 */
export const BENCH_SCHEMA = {
  type: "object",
  properties: {
    serial: { type: "string", pattern: "^[A-Z0-9-]{1,10}$" },
    pressure_bar: { anyOf: [{ type: "integer", minimum: 0, maximum: 400 }, { type: "null" }] },
    status: { enum: ["ok", "leak", "replace"] },
  },
  required: ["serial", "pressure_bar", "status"],
  additionalProperties: false,
} as const;

const [vlDir, textDir, pdfPath, warmupPath, precisionArg, threadsArg, runsArg, maxTokensArg] = process.argv.slice(2);
const precision = precisionArg as Precision;
const [threads, runs, maxTokens] = [Number(threadsArg), Number(runsArg), Number(maxTokensArg)];
const cacheDir = process.env.LFM_CACHE_DIR;
const ms = (t0: number) => performance.now() - t0;

const t0 = performance.now();
const vl = await VlModel.load(vlDir, { precision, threads, cacheDir });
const lm = await TextModel.load(textDir, { precision, threads, cacheDir });
const loadMs = ms(t0);

// Prompt and generated tokens per completion, in call order (one per page, or per chunk of a long text page).
const generated: Array<{ prompt: number; tokens: number }> = [];
const completeVl = vl.complete.bind(vl);
vl.complete = async (prompt, opts) => {
  const out = await completeVl(prompt, opts);
  generated.push({ prompt: prompt.promptIds.length, tokens: out.ids.length });
  return out;
};
const completeText = lm.complete.bind(lm);
lm.complete = async (ids, opts) => {
  const out = await completeText(ids, opts);
  generated.push({ prompt: ids.length, tokens: out.ids.length });
  return out;
};

interface PageTime {
  route: PageRoute;
  seconds: number;
  /** Generated tokens. */
  tokens: number;
  /** Prompt tokens (an image page's image tokens included). */
  promptTokens: number;
}

/** One pass over `path`: each page's route, seconds, prompt and generated tokens. */
async function extractOnce(path: string): Promise<PageTime[]> {
  const bytes = new Uint8Array(readFileSync(path));
  const starts: Array<{ route: PageRoute; at: number; calls: number }> = [];
  generated.length = 0;
  await extractDocument(path, bytes, {
    schema: BENCH_SCHEMA,
    model: vl,
    textModel: lm,
    maxTokens,
    temperature: 0,
    onPage: (e) => starts.push({ route: e.route, at: performance.now(), calls: generated.length }),
  });
  const end = { at: performance.now(), calls: generated.length };
  return starts.map((s, i) => {
    const next = starts[i + 1] ?? end;
    const calls = generated.slice(s.calls, next.calls);
    return { route: s.route, seconds: (next.at - s.at) / 1000, tokens: calls.reduce((a, c) => a + c.tokens, 0), promptTokens: calls.reduce((a, c) => a + c.prompt, 0) };
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const samples: Array<Record<string, number>> = [];
const pageTimes: PageTime[] = [];
if (runs > 0) {
  flushWrites();
  await extractOnce(warmupPath);
  for (let r = 0; r < runs; r++) {
    const start = performance.now();
    const pages = await extractOnce(pdfPath);
    const docSeconds = ms(start) / 1000;
    pageTimes.push(...pages);
    const of = (route: PageRoute) => pages.filter((p) => p.route === route);
    samples.push({
      docSeconds,
      textSecondsPerPage: median(of("text").map((p) => p.seconds)),
      imageSecondsPerPage: median(of("image").map((p) => p.seconds)),
      textTokensPerPage: median(of("text").map((p) => p.tokens)),
      imageTokensPerPage: median(of("image").map((p) => p.tokens)),
    });
  }
}
await vl.release();
await lm.release();
// Over every page of every run (the per-run medians are in `samples`).
const all = (route: PageRoute, key: "seconds" | "tokens" | "promptTokens") => median(pageTimes.filter((p) => p.route === route).map((p) => p[key]));
const info =
  runs > 0
    ? {
        textPages: pageTimes.filter((p) => p.route === "text").length / runs,
        imagePages: pageTimes.filter((p) => p.route === "image").length / runs,
        textSecondsPerPageAllRuns: all("text", "seconds"),
        imageSecondsPerPageAllRuns: all("image", "seconds"),
        textTokensPerPageAllRuns: all("text", "tokens"),
        imageTokensPerPageAllRuns: all("image", "tokens"),
        textPromptTokensPerPage: all("text", "promptTokens"),
        imagePromptTokensPerPage: all("image", "promptTokens"),
      }
    : undefined;
process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples, info })}\n`);
