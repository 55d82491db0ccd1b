/**
 * Questions answered from a local index, with citations that are checked:
 *
 *   question → ColBERT query vectors (the index's own encoder) → top-k passages (as `lfm search`)
 *     → best score per query vector below the threshold (`minScore`, else the index's calibration,
 *       else DEFAULT_MIN_SCORE)? → "the documents do not cover this" (no language model call)
 *     → prompt: system text, earlier turns, passages numbered [1]..[m] with their sources, question
 *       (trimmed to the context, with room for the answer) → LFM2 streams the answer
 *     → citations checked as they stream: numbers that were not given are removed and reported.
 *
 * With `strictCitations` the answer is constrained by a grammar (citations.ts) so that every
 * sentence ends with at least one citation of a given passage.
 *
 * The system text is the same for every question, so its decode state (conv windows + KV cache)
 * is computed once per model and format in a process and copied for each question: only the
 * passages and the question are prefilled (`timings.prefixReused`, `timings.prefixMs`).
 *
 * `ask` only reads the index; it never writes to it.
 */
import { ColbertEncoder } from "../retrieval/colbert.ts";
import type { Metadata, ModelIdentity } from "../retrieval/index/format.ts";
import { chooseIndexModel, modelIdentity, sameModel } from "../retrieval/index/model-identity.ts";
import { IndexReader, type MetadataFilter, type SearchHit, type SearchPreset } from "../retrieval/index/reader.ts";
import { bestScorePerVector, searchText } from "../retrieval/index/search-text.ts";
import { readCalibration } from "../retrieval/index/calibration.ts";
import { LfmError } from "../text-core/errors.ts";
import type { FinishReason, PrefilledPrefix } from "../text-core/generate.ts";
import { type LoadOptions, TextModel, type TextGenerateOptions } from "../text-core/model.ts";
import type { SamplingOptions } from "../text-core/sampler.ts";
import {
  type AskFormat,
  type AskTurn,
  PASSAGE_SEPARATOR,
  type PromptPassage,
  askMessages,
  detectAskFormat,
  neutralizeSpecialTokens,
  questionTurn,
  renderPassage,
} from "./ask-prompt.ts";
import { CitationFilter, strictCitationGrammar } from "./citations.ts";
import { type AnswerLanguage, notCoveredAnswer } from "./question-language.ts";

export type { AskFormat, AskTurn } from "./ask-prompt.ts";

/** Passages retrieved by default. */
export const DEFAULT_ASK_K = 5;
/** The most passages one question may take (each costs prompt tokens and a grammar branch). */
export const MAX_ASK_K = 50;
/**
 * Abstention threshold when neither `minScore` nor a calibration of the index (lfm index
 * calibrate, calibrate-min-score.ts) gives one. The score is the best passage's MaxSim per query
 * vector (bestScorePerVector: the mean of each query vector's best cosine similarity, −1..1). 0.3
 * is a neutral guess, not a calibrated value: where a threshold should sit depends on the encoder
 * and the corpus, which is why an index can be calibrated and `ask` prefers its calibration.
 */
export const DEFAULT_MIN_SCORE = 0.3;
/** New tokens at most (as `lfm chat`). */
export const DEFAULT_ASK_MAX_TOKENS = 256;
/** A passage cut to fit the context keeps at least this many tokens, else it is left out. */
const MIN_TRIMMED_PASSAGE_TOKENS = 32;

export interface AskOptions extends SamplingOptions {
  /** The index: a folder, or an open reader (left open). */
  index: string | IndexReader;
  /** The language model: a checkpoint folder, or a loaded model (left loaded). */
  model: string | TextModel;
  /**
   * The ColBERT encoder: default the one the index records (at the precision its vectors were
   * made at); a folder or a loaded encoder overrides it, and must be the index's model
   * (INDEX_MODEL_MISMATCH otherwise).
   */
  retriever?: string | ColbertEncoder;
  /** Passages to retrieve (default 5, at most 50). */
  k?: number;
  filter?: MetadataFilter;
  /** Score every passage exactly (as `lfm search --exhaustive`). */
  exhaustive?: boolean;
  /** Retrieval settings: "fast", "default" or "accurate" (as `lfm search --fast/--accurate`). */
  preset?: SearchPreset;
  /**
   * Abstain below this best-passage score per query vector; default the index's calibrated
   * threshold (calibrateMinScore) when it has one for this encoder, else DEFAULT_MIN_SCORE.
   */
  minScore?: number;
  /** Prompt format; "auto" (default) picks "rag" for an LFM2-RAG checkpoint. */
  format?: AskFormat | "auto";
  /** Constrain the answer so that every sentence ends with a citation of a given passage. */
  strictCitations?: boolean;
  /** Earlier turns of this conversation, oldest first (the prompt keeps as many as fit). */
  history?: readonly AskTurn[];
  /** New tokens at most (default 256); the prompt always leaves room for them. */
  maxTokens?: number;
  /** Prompt + answer tokens at most (default and upper bound: the model's context). */
  contextTokens?: number;
  /** Extra token ids that end the answer. */
  stopTokenIds?: number[];
  /** Reuse the system text's decode state across questions (default true). */
  reusePrefix?: boolean;
  /** Called with each piece of the (checked) answer as it streams. */
  onText?: (text: string) => void;
  signal?: AbortSignal;
  /** How models given as folders are loaded. */
  load?: Pick<LoadOptions, "threads" | "cacheDir" | "onProgress"> & { precision?: LoadOptions["precision"]; retrieverPrecision?: LoadOptions["precision"] };
}

/** A passage the question retrieved, numbered as the prompt numbers it. */
export interface AskPassage {
  /** 1-based place: the number the answer cites it by. */
  n: number;
  /** The id `lfm search --json` gives it. */
  id: string;
  score: number;
  source: string;
  /** PDF page, when the passage has one. */
  page?: number;
  /** Character offsets in the source text. */
  start: number;
  end: number;
  text: string;
  metadata: Metadata;
  /** Cut to fit the model's context (the prompt holds only the beginning of `text`). */
  truncated: boolean;
}

export interface Citation {
  n: number;
  id: string;
  source: string;
  page?: number;
  start: number;
  end: number;
  text: string;
}

export interface AskTimings {
  retrievalMs: number;
  /** Time to prefill the system text; 0 when its state was reused. */
  prefixMs: number;
  prefixReused: boolean;
  prefixTokens: number;
  promptTokens: number;
  /** Prompt (rest of the prefill) to first new token. */
  firstTokenMs: number;
  /** From the question (retrieval included) to the first new token; 0 when none came. */
  timeToFirstTokenMs: number;
  generationMs: number;
  tokens: number;
  totalMs: number;
}

/** The abstention threshold an answer was checked against, and where it came from. */
export interface AppliedMinScore {
  value: number;
  /** "option": `minScore` / `--min-score`; "calibration": the index's calibration; "default": DEFAULT_MIN_SCORE. */
  source: "option" | "calibration" | "default";
  /** With "calibration": the index generation it was calibrated on (passages added or removed since are not in it). */
  calibratedAtGeneration?: number;
}

export interface AskResult {
  question: string;
  answer: string;
  /** True when no passage reached the threshold (`minScore` below; the answer says the corpus does not cover the question; no model ran). */
  abstained: boolean;
  citations: Citation[];
  /** Cited numbers that were not given; removed from `answer`. */
  unsupportedCitations: number[];
  /** The passages given to the model (on abstention: those retrieved), in retrieval order. */
  passages: AskPassage[];
  /** Retrieved passages left out because the context had no room for them. */
  droppedPassages: number;
  /** Earlier turns left out because the context had no room for them. */
  droppedTurns: number;
  /** Best passage score per query vector (null: nothing retrieved). */
  bestScore: number | null;
  /** The threshold `bestScore` was compared with. */
  minScore: AppliedMinScore;
  format: AskFormat;
  /** Language of the abstention sentence, and whether the question's language was recognised (else English). */
  language?: { code: AnswerLanguage; detected: boolean };
  /** Why the answer ended; null on abstention. "length" with strictCitations: the last sentence is unfinished. */
  finishReason: FinishReason | null;
  /** The prompt the model got (special tokens as text); empty on abstention. */
  prompt: string;
  timings: AskTimings;
}

/** Answers `question` from the index (see the file comment). */
export async function ask(question: string, opts: AskOptions): Promise<AskResult> {
  if (typeof question !== "string" || question.trim() === "") throw new LfmError("EMPTY_PROMPT", "the question is empty.");
  const k = opts.k ?? DEFAULT_ASK_K;
  if (!Number.isInteger(k) || k < 1 || k > MAX_ASK_K) throw new LfmError("INVALID_ARGUMENT", `k must be an integer from 1 to ${MAX_ASK_K} (got ${k}).`);
  if (opts.minScore !== undefined && (typeof opts.minScore !== "number" || Number.isNaN(opts.minScore))) {
    throw new LfmError("INVALID_ARGUMENT", `minScore must be a number (got ${String(opts.minScore)}).`);
  }
  const format = opts.format ?? "auto";
  if (format !== "auto" && format !== "rag" && format !== "plain") throw new LfmError("INVALID_ARGUMENT", `format must be "rag", "plain" or "auto" (got ${JSON.stringify(format)}).`);

  const history = opts.history ?? [];
  if (!Array.isArray(history) || history.some((t) => typeof t?.question !== "string" || typeof t?.answer !== "string")) {
    throw new LfmError("INVALID_ARGUMENT", "history must be a list of { question: string, answer: string } turns, oldest first.");
  }

  const owned: Array<{ release(): Promise<void> } | { close(): Promise<void> }> = [];
  try {
    const reader = typeof opts.index === "string" ? await IndexReader.open(opts.index) : opts.index;
    if (typeof opts.index === "string") owned.push(reader);
    if (reader.documents().next().done) throw new LfmError("INDEX_EMPTY", `the index ${reader.dir} holds no passages; add files with lfm index add --index ${reader.dir} FILES…`);
    const encoder = await retrieverFor(reader, opts);
    if (encoder !== opts.retriever) owned.push(encoder);
    const minScore = appliedMinScore(opts.minScore, reader, encoder);
    const model = typeof opts.model === "string" ? await TextModel.load(opts.model, { ...opts.load, precision: opts.load?.precision }) : opts.model;
    if (typeof opts.model === "string") owned.push(model);
    return await answer(question, { ...opts, k, minScore }, reader, encoder, model, format === "auto" ? detectAskFormat(model.dir) : format);
  } finally {
    for (const r of owned.reverse()) await ("release" in r ? r.release() : r.close());
  }
}

/**
 * The encoder for the index's queries: the given one (checked against the index's model) or the
 * index's own (loaded: the caller releases it).
 */
export async function retrieverFor(reader: IndexReader, opts: Pick<AskOptions, "retriever" | "load">): Promise<ColbertEncoder> {
  const given = opts.retriever;
  if (given instanceof ColbertEncoder) {
    const recorded = reader.model;
    if (recorded) checkSameModel(recorded, identityOf(given));
    return given;
  }
  const identity = chooseIndexModel(reader.model, given, () => {
    throw new LfmError("MODEL_REQUIRED", `the index ${reader.dir} does not record the model that built it; give the retriever (a PyLate ColBERT folder).`);
  });
  return ColbertEncoder.load(identity.path as string, {
    threads: opts.load?.threads,
    cacheDir: opts.load?.cacheDir,
    onProgress: opts.load?.onProgress,
    precision: opts.load?.retrieverPrecision ?? reader.model?.precision,
  });
}

/** The given threshold, else the index's calibration made with this encoder's model, else the default. */
function appliedMinScore(given: number | undefined, reader: IndexReader, encoder: ColbertEncoder): AppliedMinScore {
  if (given !== undefined) return { value: given, source: "option" };
  const calibration = readCalibration(reader.dir);
  if (calibration && sameModel(calibration.model, identityOf(encoder))) {
    return { value: calibration.threshold, source: "calibration", calibratedAtGeneration: calibration.generation };
  }
  return { value: DEFAULT_MIN_SCORE, source: "default" };
}

const IDENTITIES = new WeakMap<ColbertEncoder, ModelIdentity>();

/** The encoder's model identity (its folder's fingerprint, computed once per encoder). */
export function identityOf(encoder: ColbertEncoder): ModelIdentity {
  let identity = IDENTITIES.get(encoder);
  if (!identity) IDENTITIES.set(encoder, (identity = modelIdentity(encoder.dir)));
  return identity;
}

function checkSameModel(recorded: ModelIdentity, given: ModelIdentity): void {
  if (!sameModel(recorded, given)) {
    throw new LfmError(
      "INDEX_MODEL_MISMATCH",
      `the index was built with the model ${recorded.name} (${recorded.path ?? "?"}), not with ${given.name} (${given.path ?? "?"}): their vectors are not comparable. Use the index's model as the retriever.`,
    );
  }
}

type ResolvedOptions = Omit<AskOptions, "minScore"> & { k: number; minScore: AppliedMinScore };

async function answer(question: string, opts: ResolvedOptions, reader: IndexReader, encoder: ColbertEncoder, model: TextModel, format: AskFormat): Promise<AskResult> {
  const t0 = performance.now();
  const maxTokens = opts.maxTokens ?? DEFAULT_ASK_MAX_TOKENS;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new LfmError("INVALID_ARGUMENT", `maxTokens must be a positive integer (got ${maxTokens}).`);
  const context = contextOf(model, opts.contextTokens);
  const tokenizer = model.tokenizer;
  const clean = (text: string) => neutralizeSpecialTokens(text, tokenizer);
  const cleanQuestion = clean(question.trim());
  const history = (opts.history ?? []).map((t) => ({ question: clean(t.question), answer: clean(t.answer) }));
  // Before any retrieval: a question that cannot fit (with room for the answer) fails now.
  const room = context - maxTokens;
  const skeleton = (turns: readonly AskTurn[]) => countIds(model, format, turns, cleanQuestion, "");
  if (skeleton([]) + MIN_TRIMMED_PASSAGE_TOKENS > room) {
    throw new LfmError(
      "PROMPT_TOO_LONG",
      `the question takes ${skeleton([])} tokens of the prompt; with ${maxTokens} tokens kept for the answer, the context of ${context} leaves no room for passages. Shorten the question or lower maxTokens.`,
    );
  }

  const { hits, queryVectors } = await searchText(reader, encoder, question, { k: opts.k, filter: opts.filter, exhaustive: opts.exhaustive, preset: opts.preset, signal: opts.signal });
  const retrievalMs = performance.now() - t0;
  const bestScore = bestScorePerVector({ hits, queryVectors });
  const timings: AskTimings = { retrievalMs, prefixMs: 0, prefixReused: false, prefixTokens: 0, promptTokens: 0, firstTokenMs: 0, timeToFirstTokenMs: 0, generationMs: 0, tokens: 0, totalMs: 0 };

  if (bestScore === null || bestScore < opts.minScore.value) {
    const notCovered = notCoveredAnswer(question);
    timings.totalMs = performance.now() - t0;
    return {
      question,
      answer: notCovered.text,
      abstained: true,
      citations: [],
      unsupportedCitations: [],
      passages: hits.map((h, i) => passageOf(h, i + 1, false)),
      droppedPassages: 0,
      droppedTurns: 0,
      bestScore,
      minScore: opts.minScore,
      format,
      language: { code: notCovered.language, detected: notCovered.detected },
      finishReason: null,
      prompt: "",
      timings,
    };
  }

  // Earlier turns: as many of the newest as leave the passages at least half of the room.
  let turns = history;
  const passagesWant = hits.reduce((sum, h) => sum + tokenizer.encode(h.text, { addSpecialTokens: false }).length, 0);
  while (turns.length > 0 && room - skeleton(turns) < Math.min(passagesWant, room / 2)) turns = turns.slice(1);
  const { passages, prompt } = fitPassages(model, format, turns, cleanQuestion, hits, room);

  const strict = opts.strictCitations === true;
  const prefix = opts.reusePrefix === false ? null : await systemPrefix(model, format, timings);
  const promptIds = prompt.ids;
  timings.promptTokens = promptIds.length;
  const genOpts: TextGenerateOptions = {
    temperature: opts.temperature,
    topK: opts.topK,
    topP: opts.topP,
    minP: opts.minP,
    repetitionPenalty: opts.repetitionPenalty,
    seed: opts.seed,
    maxTokens,
    stopTokenIds: [...model.stopTokenIds, ...(opts.stopTokenIds ?? [])],
    signal: opts.signal,
    prefix: prefix ?? undefined,
    responseFormat: strict ? { type: "grammar", ebnf: strictCitationGrammar(passages.length) } : undefined,
  };

  const filter = new CitationFilter(passages.length);
  let text = "";
  const emit = (piece: string) => {
    if (piece === "") return;
    text += piece;
    opts.onText?.(piece);
  };
  const g0 = performance.now();
  const stream = model.stream(promptIds, genOpts);
  let finishReason: FinishReason;
  for (;;) {
    const step = await stream.next();
    if (step.done) {
      finishReason = step.value;
      break;
    }
    if (timings.tokens === 0) {
      const now = performance.now();
      timings.firstTokenMs = now - g0;
      timings.timeToFirstTokenMs = now - t0;
    }
    if (step.value.id >= 0) timings.tokens++;
    emit(filter.push(step.value.text));
  }
  emit(filter.flush());
  timings.generationMs = performance.now() - g0;
  timings.totalMs = performance.now() - t0;

  const byN = new Map(passages.map((p) => [p.n, p]));
  const citations = filter.cited.map((n): Citation => {
    const p = byN.get(n) as AskPassage;
    return { n, id: p.id, source: p.source, ...(p.page === undefined ? {} : { page: p.page }), start: p.start, end: p.end, text: p.text };
  });
  return {
    question,
    answer: text.trim(),
    abstained: false,
    citations,
    unsupportedCitations: filter.unsupported,
    passages,
    droppedPassages: hits.length - passages.length,
    droppedTurns: history.length - turns.length,
    bestScore,
    minScore: opts.minScore,
    format,
    finishReason,
    prompt: prompt.text,
    timings,
  };
}

/** The token budget of prompt + answer. */
function contextOf(model: TextModel, requested: number | undefined): number {
  const max = model.config.maxPositionEmbeddings;
  if (requested === undefined) return max;
  if (!Number.isInteger(requested) || requested < 1) throw new LfmError("INVALID_ARGUMENT", `contextTokens must be a positive integer (got ${requested}).`);
  return Math.min(requested, max);
}

function passageOf(h: SearchHit, n: number, truncated: boolean, text = h.text): AskPassage {
  const page = typeof h.metadata.page === "number" ? h.metadata.page : undefined;
  return { n, id: h.id, score: h.score, source: h.source, ...(page === undefined ? {} : { page }), start: h.start, end: h.end, text, metadata: h.metadata, truncated };
}

interface RenderedPrompt {
  text: string;
  /** System prefix ids followed by the rest's ids (each part tokenised on its own, see systemPrefixText). */
  ids: number[];
}

/** The rendered chat up to and including the system turn: the part computed once per process. */
function systemPrefixText(model: TextModel, format: AskFormat): string {
  return model.renderChat(askMessages(format, [], "").slice(0, 1), { addGenerationPrompt: false });
}

function renderPrompt(model: TextModel, format: AskFormat, turns: readonly AskTurn[], question: string, passagesText: string): RenderedPrompt {
  const text = model.renderChat(askMessages(format, turns, questionTurn(format, passagesText, question)));
  const head = systemPrefixText(model, format);
  const encode = (s: string) => model.tokenizer.encode(s, { addSpecialTokens: false });
  // The template renders the system turn first, identically, so the prompt is "head + rest"; the
  // two parts are tokenised apart, so the ids of the head are the prefix's ids whatever follows.
  if (!text.startsWith(head)) return { text, ids: encode(text) };
  return { text, ids: [...encode(head), ...encode(text.slice(head.length))] };
}

function countIds(model: TextModel, format: AskFormat, turns: readonly AskTurn[], question: string, passagesText: string): number {
  return renderPrompt(model, format, turns, question, passagesText).ids.length;
}

/**
 * The passages in retrieval order, as many as fit in `room` tokens with the rest of the prompt;
 * the first that does not fit whole is cut (if at least MIN_TRIMMED_PASSAGE_TOKENS of it fit) and
 * the rest left out. The count is checked on the rendered prompt itself, so it is never over.
 */
function fitPassages(model: TextModel, format: AskFormat, turns: readonly AskTurn[], question: string, hits: SearchHit[], room: number): { passages: AskPassage[]; prompt: RenderedPrompt } {
  const tokenizer = model.tokenizer;
  const clean = (text: string) => neutralizeSpecialTokens(text, tokenizer);
  const blocks: string[] = [];
  const passages: AskPassage[] = [];
  const render = () => renderPrompt(model, format, turns, question, blocks.join(PASSAGE_SEPARATOR));
  let prompt = render();
  for (const [i, h] of hits.entries()) {
    const p: PromptPassage = { n: i + 1, source: h.source, page: typeof h.metadata.page === "number" ? h.metadata.page : undefined, text: clean(h.text) };
    blocks.push(renderPassage(p));
    const whole = render();
    if (whole.ids.length <= room) {
      passages.push(passageOf(h, p.n, false));
      prompt = whole;
      continue;
    }
    blocks.pop();
    const trimmed = trimToFit(model, format, turns, question, blocks, p, room);
    if (trimmed) {
      passages.push(passageOf(h, p.n, true, trimmed.text));
      prompt = trimmed.prompt;
    }
    break;
  }
  if (passages.length === 0) {
    throw new LfmError("PROMPT_TOO_LONG", `no passage fits the context of ${room} prompt tokens beside the question and earlier turns; shorten the question, lower maxTokens or raise contextTokens.`);
  }
  return { passages, prompt };
}

/** The longest beginning of passage `p` that fits (at least MIN_TRIMMED_PASSAGE_TOKENS tokens), or null. */
function trimToFit(
  model: TextModel,
  format: AskFormat,
  turns: readonly AskTurn[],
  question: string,
  blocks: string[],
  p: PromptPassage,
  room: number,
): { text: string; prompt: RenderedPrompt } | null {
  const tokenizer = model.tokenizer;
  const ids = tokenizer.encode(p.text, { addSpecialTokens: false });
  const attempt = (n: number) => {
    // (a cut inside a multi-byte character decodes to U+FFFD: dropped)
    const text = `${tokenizer.decode(ids.slice(0, n)).replace(/\uFFFD+$/u, "")}…`;
    const prompt = renderPrompt(model, format, turns, question, [...blocks, renderPassage({ ...p, text })].join(PASSAGE_SEPARATOR));
    return { text, prompt };
  };
  // Binary search on the kept token count: the rendered length grows with it (give or take a
  // merge at the cut), and every candidate is measured on the real prompt.
  let lo = MIN_TRIMMED_PASSAGE_TOKENS;
  let hi = ids.length - 1;
  let best: { text: string; prompt: RenderedPrompt } | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const candidate = attempt(mid);
    if (candidate.prompt.ids.length <= room) {
      best = candidate;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best;
}

/** Per model, per system prefix text: its prefilled state, computed once per process. */
const PREFIXES = new WeakMap<TextModel, Map<string, Promise<PrefilledPrefix>>>();

async function systemPrefix(model: TextModel, format: AskFormat, timings: AskTimings): Promise<PrefilledPrefix> {
  const head = systemPrefixText(model, format);
  let cache = PREFIXES.get(model);
  if (!cache) PREFIXES.set(model, (cache = new Map()));
  let entry = cache.get(head);
  timings.prefixReused = entry !== undefined;
  if (!entry) {
    const start = performance.now();
    entry = model.prefillPrefix(model.tokenizer.encode(head, { addSpecialTokens: false }));
    cache.set(head, entry);
    entry.catch(() => cache.delete(head)); // a failed prefill is not cached
    const prefix = await entry;
    timings.prefixMs = performance.now() - start;
    timings.prefixTokens = prefix.ids.length;
    return prefix;
  }
  const prefix = await entry;
  timings.prefixTokens = prefix.ids.length;
  return prefix;
}
