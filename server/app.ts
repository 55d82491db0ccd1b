/**
 * The HTTP server of `lfm serve`: Fastify routes over the library, OpenAI's shapes where OpenAI
 * has one. This file wires requests to the parts: the model registry (model-registry.ts), one
 * bounded queue per model (compute-queue.ts), the chat endpoint (chat-completions.ts), errors as
 * OpenAI's JSON (errors.ts), metrics (metrics.ts).
 *
 *   GET  /health               liveness, and which models are loaded
 *   GET  /v1/models[/{id}]     the models offered, with their input/output modalities
 *   POST /v1/chat/completions  chat, streamed (SSE) or not
 *   POST /v1/audio/transcriptions  speech to text (multipart upload)
 *   POST /v1/audio/speech      text to speech, streamed as WAV or PCM
 *   GET  /metrics              Prometheus text
 *   GET  /v1/indexes, POST /v1/search  the --indexes-dir indexes (search.ts)
 *   POST /v1/answers           the RAG pipeline on an index (answers.ts)
 *   POST /v1/documents, DELETE /v1/documents/{source-or-id}  maintain an index (documents.ts)
 *   POST /v1/extract           document + schema → JSON (extract.ts)
 *   GET  /                     the web page (web-page.ts, files in web/)
 *
 * Every route but /health and the page's files needs `Authorization: Bearer KEY` when the server
 * has an API key.
 */
import { timingSafeEqual } from "node:crypto";
import type { ServerResponse } from "node:http";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { DecodeBatcher } from "../text-core/decode-batcher.ts";
import { LfmError } from "../text-core/errors.ts";
import { readChatRequest } from "./chat-request.ts";
import type { TokenLogprob } from "./chat-logprobs.ts";
import { type ChatContext, type ChatReply, type ReplySink, completionId, runChat } from "./chat-completions.ts";
import { ComputeQueue } from "./compute-queue.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { Metrics } from "./metrics.ts";
import type { LoadedModel, ModelEntry, ModelRegistry } from "./model-registry.ts";
import { SseWriter } from "./sse.ts";
import { readSpeechRequest, streamSpeech } from "./speech.ts";
import { readTranscriptionForm, runTranscription } from "./transcriptions.ts";
import { type SearchRouteOptions, registerSearchRoutes } from "./search.ts";
import { registerExtractRoute } from "./extract.ts";
import { registerAnswersRoute } from "./answers.ts";
import { registerDocumentsRoutes } from "./documents.ts";
import { PAGE_ROUTES, registerWebPage } from "./web-page.ts";

export interface ServerOptions {
  registry: ModelRegistry;
  /** Requests that may wait per model beside the one running; more are answered 429. */
  maxQueue: number;
  /** When set, every route but /health needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** The folder `file://` image URLs may name (none: file URLs are refused). */
  allowFiles?: string;
  /** Largest request body, bytes (an image or a recording travels as base64 inside it). */
  bodyLimitBytes: number;
  /** Where the server logs a line (a failed request's details, model loads). */
  log?: (line: string) => void;
  /** Shared with the registry's load/unload events; one is made when absent. */
  metrics?: Metrics;
  /** POST /v1/search's indexes (none: the route says the server has none). */
  search?: Omit<SearchRouteOptions, "maxQueue">;
  /** Each request's time limit, queue wait included (undefined: none); past it, its work stops (504). */
  requestTimeoutMs?: number;
  /**
   * Chats a text model runs at once, their decode steps batched (text-core/decode-batcher.ts);
   * default 1: one at a time. Other models, and other work on a text model, run one job at a time.
   */
  maxBatch?: number;
}

/** Default request body limit: a few phone photos or a minute of WAV as base64. */
export const DEFAULT_BODY_LIMIT = 32 * 1024 ** 2;

const NO_AUTH_ROUTES = new Set<string>(["/health", ...PAGE_ROUTES]);

/** A constant-time comparison of the Authorization header with the key (no timing hint of how much matched). */
function authorized(header: string | undefined, apiKey: string): boolean {
  const expected = Buffer.from(`Bearer ${apiKey}`);
  const given = Buffer.from(header ?? "");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Writes an error as OpenAI's JSON straight on the response (for a hijacked reply, before any event). */
function writeJsonError(res: ServerResponse, e: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const { status, body, retryAfterSeconds } = errorResponse(e);
  const headers: Record<string, string> = { "content-type": "application/json; charset=utf-8" };
  if (retryAfterSeconds !== undefined) headers["retry-after"] = String(retryAfterSeconds);
  res.writeHead(status, headers);
  res.end(JSON.stringify(body));
}

/** Fastify's own errors (body parsing, limits, content type) as our codes, keeping their 4xx status. */
function frameworkError(err: { code?: string; statusCode?: number; message: string }): { status: number; error: LfmError } {
  if (err.code === "FST_ERR_CTP_BODY_TOO_LARGE") return { status: 413, error: new ApiError("REQUEST_TOO_LARGE", "the request body is larger than the server's limit (--max-body).", "body") };
  if (err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return { status: 415, error: new ApiError("INVALID_ARGUMENT", "the request body must be JSON (Content-Type: application/json).", "body") };
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
  return { status, error: new ApiError("INVALID_ARGUMENT", `the request body could not be read: ${err.message}`, "body") };
}

/**
 * The signal a request's work runs under: aborted when its client goes away (the response closes
 * before it is complete) or when its deadline passes. `explain` turns the ABORTED that a deadline
 * caused into DEADLINE_EXCEEDED (504); a client that left gets no answer to read in any case.
 */
function requestLifetime(reply: FastifyReply, timeoutMs: number | undefined): { signal: AbortSignal; explain: (e: unknown) => unknown } {
  const gone = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  const deadline = timeoutMs !== undefined ? AbortSignal.timeout(timeoutMs) : undefined;
  return {
    signal: deadline ? AbortSignal.any([gone.signal, deadline]) : gone.signal,
    explain: (e) =>
      deadline?.aborted && !gone.signal.aborted && e instanceof LfmError && e.code === "ABORTED"
        ? new ApiError("DEADLINE_EXCEEDED", `the request ran past the server's time limit of ${(timeoutMs ?? 0) / 1000} s (lfm serve --timeout) and was stopped.`)
        : e,
  };
}

export function buildApp(opts: ServerOptions): { app: FastifyInstance; metrics: Metrics } {
  const { registry } = opts;
  const log = opts.log ?? (() => {});
  const metrics = opts.metrics ?? new Metrics();
  const maxBatch = opts.maxBatch ?? 1;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new LfmError("INVALID_ARGUMENT", `maxBatch must be a whole number of at least 1 (got ${maxBatch}).`);
  const queues = new Map<string, ComputeQueue>();
  const queueOf = (entry: ModelEntry) => {
    let q = queues.get(entry.id);
    if (!q) queues.set(entry.id, (q = new ComputeQueue(entry.id, opts.maxQueue, entry.kind === "text" ? maxBatch : 1)));
    return q;
  };
  /** Each text model's decode batcher, for the gauge (weak: an unloaded model's goes with it). */
  const batchers = new Map<string, WeakRef<DecodeBatcher>>();
  metrics.addCollector(() => {
    const list = [...queues.values()];
    metrics.setGauge("lfm_queue_waiting", "Requests waiting for their model.", list.map((q) => ({ labels: { model: q.name }, value: q.depth })));
    metrics.setGauge("lfm_queue_running", "Requests running on their model.", list.map((q) => ({ labels: { model: q.name }, value: q.active })));
    const loaded = registry.loaded();
    metrics.setGauge("lfm_model_memory_bytes", "Resident memory each loaded model added when it loaded, with the decode states its prompt cache keeps.", loaded.map((m) => ({ labels: { model: m.id }, value: m.bytes })));
    const caching = loaded.flatMap((m) => (m.promptCache ? [{ id: m.id, ...m.promptCache }] : []));
    metrics.setGauge("lfm_prompt_cache_entries", "Decode states a loaded model's prompt cache keeps.", caching.map((c) => ({ labels: { model: c.id }, value: c.entries })));
    metrics.setGauge("lfm_prompt_cache_bytes", "Bytes of the decode states a loaded model's prompt cache keeps.", caching.map((c) => ({ labels: { model: c.id }, value: c.bytes })));
    metrics.setGauge("lfm_decode_batch_size", "Generations in each text model's latest decode step (lfm serve --max-batch).", [...batchers].map(([model, ref]) => ({ labels: { model }, value: ref.deref()?.batchSize ?? 0 })));
  });

  // Logging off: the server's one log line per failure is ours (no request bodies, which hold private data).
  const app = Fastify({
    logger: false,
    bodyLimit: opts.bodyLimitBytes,
    return503OnClosing: true,
    // A path that is not valid percent-encoding (`/v1/documents/%zz`) fails before routing: answered in the same error JSON.
    frameworkErrors: (err, _request, reply) => {
      const { status, error } = err.code === "FST_ERR_BAD_URL" ? { status: 400, error: new ApiError("INVALID_ARGUMENT", "the URL's path is not valid percent-encoding.", "url") } : frameworkError(err);
      (reply as FastifyReply).code(status).send(errorResponse(error).body);
    },
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.raw.on("close", () => {
      metrics.inc("lfm_http_requests_total", "HTTP requests by route, method and status.", {
        route: request.routeOptions.url ?? "unmatched",
        method: request.method,
        status: String(reply.raw.statusCode),
      });
    });
    if (opts.apiKey !== undefined && !NO_AUTH_ROUTES.has(request.routeOptions.url ?? "") && !authorized(request.headers.authorization, opts.apiKey)) {
      throw new ApiError("UNAUTHORIZED", "missing or wrong API key: send Authorization: Bearer <the key given to lfm serve --api-key>.");
    }
  });

  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    let error: unknown = err;
    let status: number | undefined;
    const fastifyCode = (err as { code?: unknown })?.code;
    if (!(err instanceof LfmError) && typeof fastifyCode === "string" && fastifyCode.startsWith("FST_")) {
      ({ status, error } = frameworkError(err as { code: string; statusCode?: number; message: string }));
    } else if (err instanceof SyntaxError) {
      ({ status, error } = frameworkError({ statusCode: 400, message: err.message }));
    }
    const response = errorResponse(error);
    if (response.status >= 500) log(`error on ${request.method} ${request.url}: ${(err as Error)?.stack ?? String(err)}`);
    if (response.retryAfterSeconds !== undefined) reply.header("retry-after", String(response.retryAfterSeconds));
    reply.code(status ?? response.status).send(response.body);
  });

  app.setNotFoundHandler((request, reply) => {
    const { status, body } = errorResponse(new ApiError("ROUTE_NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}; see docs/serve.md for the endpoints.`));
    reply.code(status).send(body);
  });

  app.get("/health", async () => ({ status: "ok", models: registry.list().length, loaded: registry.loaded().map((m) => m.id) }));

  const modelJson = (e: ModelEntry) => ({
    id: e.id,
    object: "model",
    created: e.created,
    owned_by: "local",
    input_modalities: e.input,
    output_modalities: e.output,
    loaded: registry.loaded().some((m) => m.id === e.id),
  });
  app.get("/v1/models", async () => ({ object: "list", data: registry.list().map(modelJson) }));
  // A model id may hold a slash (Org/Name), so the rest of the path is the id.
  app.get("/v1/models/*", async (request) => modelJson(registry.get((request.params as { "*": string })["*"])));

  app.get("/metrics", async (_request, reply) => {
    reply.header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    return metrics.render();
  });

  app.post("/v1/chat/completions", async (request, reply) => {
    const arrivedAt = performance.now();
    const req = readChatRequest(request.body);
    const entry = registry.get(req.model);
    // A client that disconnects before its reply is complete cancels its generation.
    const lifetime = requestLifetime(reply, opts.requestTimeoutMs);
    const ctx: ChatContext = {
      signal: lifetime.signal,
      allowFiles: opts.allowFiles,
      arrivedAt,
      onTokens: (n) => metrics.inc("lfm_completion_tokens_total", "Tokens generated.", { model: entry.id }, n),
      onPromptCache: (cached) => {
        if (cached > 0) {
          metrics.inc("lfm_prompt_cache_hits_total", "Chat prompts continued from a kept decode state.", { model: entry.id });
          metrics.inc("lfm_prompt_cache_tokens_total", "Prompt tokens continued from kept decode states (not run again).", { model: entry.id }, cached);
        } else metrics.inc("lfm_prompt_cache_misses_total", "Chat prompts with no kept decode state to continue from.", { model: entry.id });
      },
    };
    const counted = (reply: ChatReply) => {
      metrics.inc("lfm_prompt_tokens_total", "Prompt tokens processed.", { model: entry.id }, reply.usage.prompt_tokens);
      return reply;
    };
    const onFailure = (thrown: unknown) => {
      const e = lifetime.explain(thrown);
      if (e instanceof LfmError && e.code === "ABORTED") metrics.inc("lfm_generations_cancelled_total", "Requests cancelled by their client before the reply was complete.", { model: entry.id });
      if (e instanceof LfmError && e.code === "DEADLINE_EXCEEDED") metrics.inc("lfm_deadline_exceeded_total", "Requests stopped at the server's time limit.", { model: entry.id });
      return e;
    };
    const { id, created } = completionId();
    const queue = queueOf(entry);
    // A text model's chats share its decode steps, up to --max-batch at once.
    const batched = entry.kind === "text" && maxBatch > 1;
    ctx.decodeBatching = batched;
    const chatOn = (loaded: LoadedModel, sink: ReplySink) => {
      if (batched && loaded.kind === "text") batchers.set(entry.id, new WeakRef(loaded.model.decodeBatcher));
      return runChat(entry, loaded, req, ctx, sink);
    };

    if (!req.stream) {
      let result: ChatReply;
      try {
        result = counted(await queue.run(lifetime.signal, () => registry.use(entry.id, (loaded) => chatOn(loaded, { content: async () => {} })), { shared: batched }));
      } catch (e) {
        throw onFailure(e);
      }
      return {
        id,
        object: "chat.completion",
        created,
        model: entry.id,
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: result.content,
              refusal: null,
              ...(result.toolCalls ? { tool_calls: result.toolCalls } : {}),
              ...(result.toolCallErrors ? { tool_call_errors: result.toolCallErrors } : {}),
            },
            logprobs: result.logprobs ? { content: result.logprobs, refusal: null } : null,
            finish_reason: result.finishReason,
          },
        ],
        usage: result.usage,
        timings: result.timings,
      };
    }

    // Streaming: the reply is written by hand; an error before the first event is still JSON.
    reply.hijack();
    const sse = new SseWriter(reply.raw);
    // With logprobs: true, each content chunk carries its tokens' entries (the last chunk any left).
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null, logprobs?: TokenLogprob[]) => ({
      id,
      object: "chat.completion.chunk",
      created,
      model: entry.id,
      choices: [{ index: 0, delta, logprobs: req.logprobs ? { content: logprobs ?? [], refusal: null } : null, finish_reason: finishReason }],
    });
    let roleSent = false;
    const withRole = (delta: Record<string, unknown>) => {
      if (roleSent) return delta;
      roleSent = true;
      return { role: "assistant", ...delta };
    };
    try {
      const result = counted(
        await queue.run(lifetime.signal, () => registry.use(entry.id, (loaded) => chatOn(loaded, { content: (text, logprobs) => sse.send(chunk(withRole({ content: text }), null, logprobs)) })), { shared: batched }),
      );
      if (!roleSent) await sse.send(chunk(withRole({ content: result.toolCalls ? null : "" })));
      if (result.toolCalls) await sse.send(chunk({ tool_calls: result.toolCalls.map((call, index) => ({ index, ...call })) }));
      await sse.send(chunk({}, result.finishReason, result.logprobs?.slice(result.logprobsSent ?? 0)));
      if (req.includeUsage) await sse.send({ id, object: "chat.completion.chunk", created, model: entry.id, choices: [], usage: result.usage, timings: result.timings });
      sse.end();
    } catch (thrown) {
      const e = onFailure(thrown);
      const { status, body } = errorResponse(e);
      if (status >= 500) log(`error on POST /v1/chat/completions: ${(e as Error)?.stack ?? String(e)}`);
      if (!sse.started) writeJsonError(reply.raw, e);
      else {
        await sse.send(body);
        sse.end();
      }
    }
  });

  app.post("/v1/audio/speech", async (request, reply) => {
    const req = readSpeechRequest(request.body);
    const entry = registry.get(req.model);
    if (entry.kind !== "audio") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} does not speak (its output modalities: ${entry.output.join(", ")}); use an LFM2-Audio model.`, "model");
    const lifetime = requestLifetime(reply, opts.requestTimeoutMs);
    // Written by hand as frames are decoded; an error before the first frame is still JSON.
    reply.hijack();
    try {
      await queueOf(entry).run(lifetime.signal, () =>
        registry.use(
          entry.id,
          async (loaded) => {
            if (loaded.kind !== "speech") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} does not speak.`, "model");
            const { frames } = await streamSpeech(loaded.model, req, lifetime.signal, reply.raw);
            metrics.inc("lfm_speech_frames_total", "Audio frames spoken (12.5 per second of speech).", { model: entry.id }, frames);
          },
          "speech",
        ),
      );
    } catch (thrown) {
      const e = lifetime.explain(thrown);
      if (e instanceof LfmError && e.code === "ABORTED") metrics.inc("lfm_generations_cancelled_total", "Requests cancelled by their client before the reply was complete.", { model: entry.id });
      if (errorResponse(e).status >= 500) log(`error on POST /v1/audio/speech: ${(e as Error)?.stack ?? String(e)}`);
      writeJsonError(reply.raw, e);
    }
  });

  // Multipart bodies are taken on this route only (elsewhere they are a 415), whole and within the
  // body limit, and parsed by the platform's FormData.
  app.register(async (scope) => {
    scope.addContentTypeParser("multipart/form-data", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
    scope.post("/v1/audio/transcriptions", async (request, reply) => {
      if (!Buffer.isBuffer(request.body)) throw new ApiError("INVALID_ARGUMENT", "upload the recording as multipart/form-data (file, model).", "body");
      let form: FormData;
      try {
        form = await new Response(new Uint8Array(request.body.buffer as ArrayBuffer, request.body.byteOffset, request.body.byteLength), { headers: { "content-type": String(request.headers["content-type"]) } }).formData();
      } catch {
        throw new ApiError("INVALID_ARGUMENT", "the multipart body does not parse (its boundary or parts are damaged).", "body");
      }
      const req = await readTranscriptionForm(form);
      const entry = registry.get(req.model);
      if (entry.kind !== "audio") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} does not take audio (its input modalities: ${entry.input.join(", ")}); use an LFM2-Audio model.`, "model");
      const lifetime = requestLifetime(reply, opts.requestTimeoutMs);
      let result: Awaited<ReturnType<typeof runTranscription>>;
      try {
        result = await queueOf(entry).run(lifetime.signal, () =>
          registry.use(entry.id, async (loaded) => {
            if (loaded.kind !== "audio") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} is not an audio model.`, "model");
            return runTranscription(loaded.model, req, lifetime.signal);
          }),
        );
      } catch (e) {
        throw lifetime.explain(e);
      }
      reply.header("content-type", result.contentType);
      return typeof result.body === "string" ? result.body : JSON.stringify(result.body);
    });
  });

  const lifetime = (reply: FastifyReply) => requestLifetime(reply, opts.requestTimeoutMs);
  const encoderOfIndex = registerSearchRoutes(app, opts.search && { ...opts.search, maxQueue: opts.maxQueue, lifetime, registry });
  registerAnswersRoute(app, { registry, queueOf, indexesDir: opts.search?.indexesDir, encoderOfIndex, lifetime, log });
  registerDocumentsRoutes(app, { indexesDir: opts.search?.indexesDir, encoderOfIndex, lifetime });
  registerExtractRoute(app, { registry, queueOf, lifetime });
  registerWebPage(app);

  return { app, metrics };
}

/** A host only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface RunningServer {
  /** `http://HOST:PORT`, the port the system picked when 0 was asked. */
  url: string;
  port: number;
  app: FastifyInstance;
  metrics: Metrics;
  /** Stops accepting, ends the open requests' generations, releases the models. */
  close(): Promise<void>;
}

/**
 * Starts the server on `host`:`port` (0: any free port). A host other than loopback needs an
 * API key: a server without one would hand the models, and --allow-files, to the whole network.
 */
export async function startServer(opts: ServerOptions & { host: string; port: number }): Promise<RunningServer> {
  if (!isLoopback(opts.host) && opts.apiKey === undefined) {
    throw new LfmError("INVALID_ARGUMENT", `--host ${opts.host} reaches beyond this machine: give --api-key KEY too (clients then send Authorization: Bearer KEY).`);
  }
  const { app, metrics } = buildApp(opts);
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === "object" && address !== null ? address.port : opts.port;
  const hostText = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${hostText}:${port}`,
    port,
    app,
    metrics,
    close: async () => {
      app.server.closeAllConnections(); // open streams end, which aborts their generations
      await app.close();
      await opts.registry.close();
    },
  };
}
