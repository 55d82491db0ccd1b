/**
 * `lfm ask`: a question answered from an index (`lfm index add`) by an LFM2 model, with the
 * passages it used and checked citations (pipelines/ask.ts). Scriptable contract, kept stable:
 *   lfm ask … --json  →  {"question", "answer", "abstained", "citations", "unsupportedCitations",
 *                         "passages", "droppedPassages", "droppedTurns", "bestScore", "minScore",
 *                         "format", "language"?, "finish_reason", "timings"}
 */
import { createInterface } from "node:readline/promises";
import { chooseIndexModel } from "../retrieval/index/model-identity.ts";
import { IndexReader } from "../retrieval/index/reader.ts";
import type { ColbertEncoder } from "../retrieval/colbert.ts";
import { LfmError } from "../text-core/errors.ts";
import { TextModel } from "../text-core/model.ts";
import { type AskOptions, type AskResult, type AskTurn, DEFAULT_ASK_K, DEFAULT_MIN_SCORE, MAX_ASK_K, ask } from "../pipelines/ask.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, SAMPLING, type StructuredFlags, checkComplete, checkGenerationFlags, generationOptions, loadFlags, num, parse, precisionOf } from "./cli-kit.ts";
import { floatRange, intRange } from "./flags.ts";
import { FILTER_OPTIONS, loadEncoder, requireIndex, searchFilter, searchPreset } from "./index-search.ts";
import { QUIET } from "./generation-output.ts";
import { terminalLine, textForStream } from "./terminal-text.ts";

const ASK_OPTIONS = {
  ...COMMON,
  ...SAMPLING,
  ...QUIET,
  index: { type: "string" },
  retriever: { type: "string" },
  "retriever-precision": { type: "string" },
  k: { type: "string", short: "k" },
  ...FILTER_OPTIONS,
  exhaustive: { type: "boolean" },
  fast: { type: "boolean" },
  accurate: { type: "boolean" },
  "min-score": { type: "string" },
  format: { type: "string" },
  "strict-citations": { type: "boolean" },
  "context-tokens": { type: "string" },
  chat: { type: "boolean" },
} as const;

const ASK_HELP = `lfm ask --index DIR [--model LM] [options] QUESTION
  Answers QUESTION from the index's passages: the k best (as lfm search ranks them) go into the
  prompt numbered [1]..[k] with their sources; the answer streams, then the sources it cited.
  Citations are checked: a number that was not given is removed and reported on stderr.
  --model DIR              LFM2 checkpoint (default: the bundled tiny random model)
  --retriever DIR          ColBERT folder (default: the model that built the index; another is refused)
  --retriever-precision P  The retriever's precision (default: the one the index's vectors were made at)
  -k N                     Passages to retrieve (default ${DEFAULT_ASK_K}; 1 to ${MAX_ASK_K})
  --filter KEY=VALUE       Only passages with this metadata (as lfm search; also KEY^=PREFIX)
  --path-prefix PATH       Only passages of files under PATH (as lfm search)
  --after DATE, --before DATE, --date-key KEY   Only passages dated in that range (as lfm search)
  --exhaustive             Score every passage exactly in retrieval (slow on big indexes; for checking)
  --fast | --accurate      Retrieval settings trading recall for speed, or speed for recall (as lfm search)
  --min-score S            Abstain when the best passage scores below S (MaxSim per query vector,
                           −1..1): the answer then says the corpus does not cover the question, in its
                           language, without running the model (-1 never abstains). Default: the
                           threshold lfm index calibrate stored in the index, else ${DEFAULT_MIN_SCORE} (uncalibrated)
  --format F               rag (LFM2-1.2B-RAG's format) | plain (other LFM2 instruct models) | auto
                           (default: rag when the checkpoint's name says LFM2-…-RAG)
  --strict-citations       Constrain the answer: every sentence ends with a citation of a given passage
                           (cut short by --max-tokens: the answer is printed, then OUTPUT_INCOMPLETE)
  --context-tokens N       Prompt + answer tokens at most (default: the model's context; 1 to 1,000,000); passages
                           are trimmed to fit with room for --max-tokens
  --chat                   On a terminal: ask follow-up questions (empty line or Ctrl-D ends)
  --quiet, -q              No timing line on stderr after the answer
  Control characters in the answer are shown as escapes (\x1b) on a terminal, in the source lines
  always; a piped answer and --json keep the exact text.
  --json                   {"question", "answer", "abstained", "citations": [{"n", "id", "source", "page"?,
                           "start", "end", "text"}], "unsupportedCitations", "passages": [{"n", "id", "score",
                           "source", "page"?, "start", "end", "text", "metadata", "truncated"}], "droppedPassages",
                           "droppedTurns", "bestScore", "minScore": {"value", "source": option|calibration|default,
                           "calibratedAtGeneration"?}, "format", "language"?, "finish_reason", "timings"}
Sampling (defaults from the checkpoint's generation_config.json, else greedy):
  --max-tokens N (default 256)  --temperature T  --top-k K  --top-p P  --min-p P
  --repetition-penalty R  --seed S  --stop ID[,ID...]
  Also: --precision P, --threads N, --cache-dir DIR, --no-cache (lfm --help).`;

export const askCommand: CliCommand = {
  name: "ask",
  summary: "Answer a question from an index's passages, with checked citations.",
  help: ASK_HELP,
  options: ASK_OPTIONS,
  async run(args, signal) {
    const { values: v, positionals } = parse(args, ASK_OPTIONS);
    const dir = requireIndex(v);
    const question = positionals.join(" ").trim();
    const interactive = Boolean(v.chat) && process.stdin.isTTY === true && !v.json;
    if (v.chat && !interactive) throw new LfmError("INVALID_ARGUMENT", "--chat needs a terminal (and no --json); give one QUESTION otherwise.");
    if (question === "" && !interactive) throw new LfmError("INVALID_ARGUMENT", 'lfm ask needs a question: lfm ask --index DIR "your question".');
    const format = v.format as string | undefined;
    if (format !== undefined && format !== "rag" && format !== "plain" && format !== "auto") throw new LfmError("INVALID_ARGUMENT", `--format must be rag, plain or auto (got "${format}").`);
    const k = num(v, "k", intRange(1, MAX_ASK_K));
    const minScore = num(v, "min-score", floatRange(-1, 1));
    const contextTokens = num(v, "context-tokens", intRange(1, 1_000_000));
    checkGenerationFlags(v); // every flag is checked before the index is opened or a model loads
    const retrieverPrecision = precisionOf(v, "retriever-precision");
    const filter = searchFilter(v);
    const preset = searchPreset(v);

    const reader = await IndexReader.open(dir);
    let encoder: ColbertEncoder | undefined;
    let model: TextModel | undefined;
    try {
      const retriever = chooseIndexModel(reader.model, typeof v.retriever === "string" ? v.retriever : undefined, () => modelOrBundled(v, "colbert", "retriever"));
      encoder = await loadEncoder(retriever.path as string, v, retrieverPrecision ?? reader.model?.precision);
      model = await TextModel.load(modelOrBundled(v, "text"), loadFlags(v));
      const gen = generationOptions(model, v, signal);
      const base: AskOptions = {
        index: reader,
        model,
        retriever: encoder,
        k,
        filter,
        exhaustive: Boolean(v.exhaustive),
        preset,
        minScore,
        format: format as AskOptions["format"],
        strictCitations: Boolean(v["strict-citations"]),
        maxTokens: gen.maxTokens,
        contextTokens,
        temperature: gen.temperature,
        topK: gen.topK,
        topP: gen.topP,
        minP: gen.minP,
        repetitionPenalty: gen.repetitionPenalty,
        seed: gen.seed,
        stopTokenIds: gen.stopTokenIds,
        signal,
      };
      const structured: StructuredFlags = { mustComplete: base.strictCitations === true };
      if (interactive) {
        await askInteractively(base, question, structured, Boolean(v.quiet));
        return 0;
      }
      const result = await answerOnce(question, base, Boolean(v.json), Boolean(v.quiet));
      if (!result.abstained) checkComplete(structured, result.finishReason ?? "stop");
      return 0;
    } finally {
      await model?.release();
      await encoder?.release();
      await reader.close();
    }
  },
};

/** One question: streamed with its sources, or the --json contract. */
async function answerOnce(question: string, base: AskOptions, json: boolean, quiet: boolean, history: readonly AskTurn[] = [], signal = base.signal): Promise<AskResult> {
  if (json) {
    const result = await ask(question, { ...base, history });
    process.stdout.write(`${JSON.stringify(jsonContract(result))}\n`);
    return result;
  }
  let streamed = false;
  const result = await ask(question, {
    ...base,
    history,
    signal,
    onText: (piece) => {
      streamed = true;
      process.stdout.write(textForStream(piece, process.stdout.isTTY));
    },
  });
  if (!streamed) process.stdout.write(textForStream(result.answer, process.stdout.isTTY));
  process.stdout.write("\n");
  printSources(result, quiet);
  return result;
}

function jsonContract(r: AskResult): Record<string, unknown> {
  return {
    question: r.question,
    answer: r.answer,
    abstained: r.abstained,
    citations: r.citations,
    unsupportedCitations: r.unsupportedCitations,
    passages: r.passages,
    droppedPassages: r.droppedPassages,
    droppedTurns: r.droppedTurns,
    bestScore: r.bestScore,
    minScore: r.minScore,
    format: r.format,
    ...(r.language ? { language: r.language } : {}),
    finish_reason: r.finishReason,
    timings: r.timings,
  };
}

const THRESHOLD_SOURCE: Record<AskResult["minScore"]["source"], string> = {
  option: "--min-score",
  calibration: "calibrated for this index by lfm index calibrate",
  default: "the default; lfm index calibrate fits one to the index",
};

/** The cited passages (all given ones when none was cited), then what was removed and how long it took, on stderr. */
function printSources(r: AskResult, quiet: boolean): void {
  if (r.abstained) {
    const best = r.bestScore === null ? "nothing retrieved" : `best passage score ${r.bestScore.toFixed(3)}`;
    process.stderr.write(`(no passage reached the threshold ${r.minScore.value.toFixed(3)} (${THRESHOLD_SOURCE[r.minScore.source]}): ${best}; the model was not run${r.language?.detected === false ? "; the question's language was not recognised, so the answer is in English" : ""})\n`);
    return;
  }
  const cited = new Set(r.citations.map((c) => c.n));
  const shown = r.passages.filter((p) => cited.size === 0 || cited.has(p.n));
  console.log(cited.size === 0 ? "\nPassages given (none cited):" : "\nSources:");
  for (const p of shown) {
    const where = [p.source || p.id, p.page === undefined ? "" : `page ${p.page}`].filter(Boolean).join(", ");
    const snippet = p.text.replace(/\s+/g, " ").trim();
    console.log(`[${p.n}] ${terminalLine(where)}${p.truncated ? " (trimmed to fit)" : ""}`);
    console.log(`    ${terminalLine(snippet.length > 160 ? `${snippet.slice(0, 160)}…` : snippet)}`);
  }
  if (r.unsupportedCitations.length > 0) {
    process.stderr.write(`removed citation(s) of passages that were not given: ${r.unsupportedCitations.map((n) => `[${n}]`).join(" ")}\n`);
  }
  if (r.droppedPassages > 0) process.stderr.write(`${r.droppedPassages} retrieved passage(s) left out: the context had no room for them\n`);
  if (quiet) return;
  const t = r.timings;
  const rate = t.generationMs > 0 ? (t.tokens / (t.generationMs / 1000)).toFixed(1) : "–";
  const prefix = t.prefixReused ? "system prefix reused" : `system prefix ${t.prefixTokens} tokens prefilled in ${t.prefixMs.toFixed(0)} ms, reused for follow-ups`;
  const line = `(retrieval ${t.retrievalMs.toFixed(0)} ms; prompt ${t.promptTokens} tokens, ${prefix}; first token ${t.firstTokenMs.toFixed(0)} ms; ${t.tokens} tokens at ${rate}/s, finish: ${r.finishReason ?? "stop"})`;
  process.stderr.write(process.stderr.isTTY ? `\x1b[2m${line}\x1b[0m\n` : `${line}\n`);
}

/**
 * Follow-up questions on the terminal: each one retrieves its own passages and the earlier turns
 * go with it. Ctrl-C stops an answer; at the prompt (or Ctrl-D, or an empty line) it ends.
 */
async function askInteractively(base: AskOptions, first: string, structured: StructuredFlags, quiet: boolean): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  let turn: AbortController | undefined;
  rl.on("SIGINT", () => {
    if (turn && !turn.signal.aborted) turn.abort();
    else rl.close();
  });
  const history: AskTurn[] = [];
  let pending = first;
  try {
    for (;;) {
      let question = pending;
      pending = "";
      if (question === "") {
        try {
          question = (await rl.question("\x1b[1m? \x1b[0m")).trim();
        } catch {
          break; // closed: Ctrl-D, or Ctrl-C at the prompt
        }
        if (question === "") break;
      } else process.stdout.write(`\x1b[1m? \x1b[0m${terminalLine(question)}\n`);
      turn = new AbortController();
      try {
        const signal = AbortSignal.any([turn.signal, ...(base.signal ? [base.signal] : [])]);
        const result = await answerOnce(question, base, false, quiet, history, signal);
        if (structured.mustComplete && result.finishReason === "length") process.stderr.write("[incomplete: --max-tokens ran out before the last sentence was cited]\n");
        history.push({ question, answer: result.answer });
      } catch (e) {
        if (!(e instanceof LfmError && e.code === "ABORTED") || base.signal?.aborted) throw e;
        process.stdout.write("\n[stopped]\n");
      } finally {
        turn = undefined;
      }
    }
  } finally {
    rl.close();
  }
}
