/**
 * `POST /v1/answers`: the RAG pipeline (pipelines/ask.ts) on a named index of `--indexes-dir`,
 * as `lfm ask` runs it: the question's passages retrieved with the index's own encoder (shared
 * with /v1/search), the answer written by a text model of the registry, citations checked.
 *
 * It waits in the language model's queue, beside its chats: the model is the scarce part.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { type AskResult, MAX_ASK_K, ask } from "../pipelines/ask.ts";
import { IndexReader } from "../retrieval/index/reader.ts";
import { LfmError } from "../text-core/errors.ts";
import type { ComputeQueue } from "./compute-queue.ts";
import { ApiError, badField, errorResponse } from "./errors.ts";
import type { ModelEntry, ModelRegistry } from "./model-registry.ts";
import { type IndexEncoder, type RequestLifetime, indexDir, untilClientLeaves } from "./search.ts";
import { SseWriter } from "./sse.ts";

export interface AnswersRouteOptions {
  registry: ModelRegistry;
  queueOf: (entry: ModelEntry) => ComputeQueue;
  /** The --indexes-dir folder (none: the route says the server has no indexes). */
  indexesDir?: string;
  encoderOfIndex: IndexEncoder;
  lifetime?: (reply: FastifyReply) => RequestLifetime;
  /** Where a failure's details go (never to the client). */
  log?: (line: string) => void;
}

export interface AnswersRequest {
  index: string;
  model: string;
  question: string;
  k?: number;
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  strictCitations?: boolean;
  minScore?: number;
  stream: boolean;
}

const MAX_QUESTION_CHARS = 4096;
const MAX_ANSWER_TOKENS = 4096;
const KNOWN = new Set(["index", "model", "question", "k", "max_tokens", "temperature", "seed", "strict_citations", "min_score", "stream"]);

const isInt = (v: unknown, lo: number, hi: number): v is number => typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi;

/** An answers body, checked; a 400 naming the first field that is wrong. */
export function readAnswersRequest(body: unknown): AnswersRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badField("body", "must be a JSON object: {\"index\", \"model\", \"question\", ...}.");
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) if (!KNOWN.has(key)) throw badField(key, `is not a field of an answers request (${[...KNOWN].join(", ")}).`);
  if (typeof b.index !== "string" || b.index === "") throw badField("index", "must be the name of an index (GET /v1/indexes).");
  if (typeof b.model !== "string" || b.model === "") throw badField("model", "must be the name of a text model (GET /v1/models).");
  if (typeof b.question !== "string" || b.question.trim() === "") throw badField("question", "must be a non-empty string.");
  if (b.question.length > MAX_QUESTION_CHARS) throw badField("question", `must be at most ${MAX_QUESTION_CHARS} characters.`);
  if (b.k !== undefined && !isInt(b.k, 1, MAX_ASK_K)) throw badField("k", `must be an integer from 1 to ${MAX_ASK_K}.`);
  if (b.max_tokens !== undefined && !isInt(b.max_tokens, 1, MAX_ANSWER_TOKENS)) throw badField("max_tokens", `must be an integer from 1 to ${MAX_ANSWER_TOKENS}.`);
  if (b.temperature !== undefined && !(typeof b.temperature === "number" && b.temperature >= 0 && b.temperature <= 2)) throw badField("temperature", "must be a number from 0 to 2.");
  if (b.seed !== undefined && !isInt(b.seed, 0, 2 ** 32 - 1)) throw badField("seed", "must be an integer from 0 to 2^32-1.");
  if (b.strict_citations !== undefined && typeof b.strict_citations !== "boolean") throw badField("strict_citations", "must be true or false.");
  if (b.min_score !== undefined && !(typeof b.min_score === "number" && Number.isFinite(b.min_score))) throw badField("min_score", "must be a number.");
  if (b.stream !== undefined && typeof b.stream !== "boolean") throw badField("stream", "must be true or false.");
  return {
    index: b.index,
    model: b.model,
    question: b.question,
    k: b.k as number | undefined,
    maxTokens: b.max_tokens as number | undefined,
    temperature: b.temperature as number | undefined,
    seed: b.seed as number | undefined,
    strictCitations: b.strict_citations as boolean | undefined,
    minScore: b.min_score as number | undefined,
    stream: b.stream === true,
  };
}

/** The pipeline's result in the API's snake_case. */
function answerJson(index: string, model: string, r: AskResult) {
  return {
    object: "answer",
    index,
    model,
    question: r.question,
    answer: r.answer,
    abstained: r.abstained,
    citations: r.citations.map((c) => ({ n: c.n, id: c.id, source: c.source, page: c.page ?? null, start: c.start, end: c.end, text: c.text })),
    unsupported_citations: r.unsupportedCitations,
    passages: r.passages.map((p) => ({ n: p.n, id: p.id, score: p.score, source: p.source, page: p.page ?? null, start: p.start, end: p.end, text: p.text, metadata: p.metadata, truncated: p.truncated })),
    best_score: r.bestScore,
    min_score: { value: r.minScore.value, source: r.minScore.source },
    finish_reason: r.finishReason,
    timings: {
      retrieval_ms: Math.round(r.timings.retrievalMs),
      prompt_tokens: r.timings.promptTokens,
      time_to_first_token_ms: Math.round(r.timings.timeToFirstTokenMs),
      generation_ms: Math.round(r.timings.generationMs),
      tokens: r.timings.tokens,
      total_ms: Math.round(r.timings.totalMs),
    },
  };
}

export function registerAnswersRoute(app: FastifyInstance, opts: AnswersRouteOptions): void {
  app.post("/v1/answers", async (request, reply) => {
    const req = readAnswersRequest(request.body);
    if (opts.indexesDir === undefined) throw new ApiError("INVALID_ARGUMENT", "this server has no indexes: start it with lfm serve --indexes-dir DIR (a folder of lfm index folders).", "index");
    const dir = indexDir(opts.indexesDir, req.index);
    const entry = opts.registry.get(req.model);
    if (entry.kind !== "text") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} is not a text model; answers are written by an LFM2 text model (GET /v1/models).`, "model");
    const { signal, explain } = (opts.lifetime ?? untilClientLeaves)(reply);
    // Streaming: the pipeline hands out checked text synchronously; each piece is sent after the one
    // before it (at most the answer's text waits for a slow reader), the full result last.
    let sse: SseWriter | undefined;
    let sending = Promise.resolve();
    const onText = (text: string) => {
      const writer = sse;
      if (writer) sending = sending.then(() => writer.send({ object: "answer.delta", delta: text }));
    };
    if (req.stream) {
      reply.hijack();
      sse = new SseWriter(reply.raw);
    }
    const run = () =>
      opts.queueOf(entry).run(signal, () =>
        opts.registry.use(entry.id, async (loaded) => {
          if (loaded.kind !== "text") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} is not a text model.`, "model");
          const reader = await IndexReader.open(dir);
          try {
            if (reader.documents().next().done) throw new LfmError("INDEX_EMPTY", `index ${req.index} holds no passages.`);
            const retriever = await opts.encoderOfIndex(reader, req.index);
            return await ask(req.question, {
              index: reader,
              model: loaded.model,
              retriever,
              k: req.k,
              maxTokens: req.maxTokens,
              temperature: req.temperature,
              seed: req.seed,
              strictCitations: req.strictCitations,
              minScore: req.minScore,
              onText: req.stream ? onText : undefined,
              signal,
            });
          } finally {
            await reader.close();
          }
        }),
      );
    if (!sse) {
      let result: AskResult;
      try {
        result = await run();
      } catch (e) {
        throw explain(e);
      }
      return answerJson(req.index, entry.id, result);
    }
    try {
      const result = await run();
      await sending;
      await sse.send(answerJson(req.index, entry.id, result));
      sse.end();
    } catch (thrown) {
      await sending.catch(() => {});
      const e = explain(thrown);
      const { status, body, retryAfterSeconds } = errorResponse(e);
      if (status >= 500) opts.log?.(`error on POST /v1/answers: ${(e as Error)?.stack ?? String(e)}`);
      const res = reply.raw;
      if (sse.started) {
        await sse.send(body);
        sse.end();
      } else if (!res.headersSent && !res.destroyed) {
        // Before the first event the error is still plain JSON with its status.
        res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...(retryAfterSeconds !== undefined ? { "retry-after": String(retryAfterSeconds) } : {}) });
        res.end(JSON.stringify(body));
      }
    }
  });
}
