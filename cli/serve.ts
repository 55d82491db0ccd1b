/** `lfm serve`: the OpenAI-compatible local server (server/), started from flags. */
import { basename } from "node:path";
import { statSync } from "node:fs";
import { LfmError } from "../text-core/errors.ts";
import { DEFAULT_BODY_LIMIT, startServer } from "../server/app.ts";
import { Metrics } from "../server/metrics.ts";
import { ModelRegistry, entriesOf, scanModelsDir } from "../server/model-registry.ts";
import { bundledModel } from "./bundled.ts";
import { COMMON, type CliCommand, type Values, loadFlags, parse } from "./cli-kit.ts";
import { intRange, numberFlag, rangeText } from "./flags.ts";
import { terminalLine } from "./terminal-text.ts";

const SERVE_OPTIONS = {
  precision: COMMON.precision,
  threads: COMMON.threads,
  "cache-dir": COMMON["cache-dir"],
  "no-cache": COMMON["no-cache"],
  help: COMMON.help,
  "models-dir": { type: "string" },
  port: { type: "string" },
  host: { type: "string" },
  "api-key": { type: "string" },
  "max-queue": { type: "string" },
  "max-batch": { type: "string" },
  "memory-budget": { type: "string" },
  "allow-files": { type: "string" },
  "max-body": { type: "string" },
  timeout: { type: "string" },
  "indexes-dir": { type: "string" },
  "prompt-cache-mb": { type: "string" },
} as const;

const SERVE_RANGES = {
  port: intRange(0, 65535),
  maxQueue: intRange(0, 100_000),
  maxBatch: intRange(1, 64),
  /** Seconds; a week at most. */
  timeout: intRange(0, 7 * 24 * 3600),
  /** MiB; 1 TiB at most. */
  promptCacheMb: intRange(0, 1024 * 1024),
} as const;

const DEFAULT_PORT = 8080;
const DEFAULT_MAX_QUEUE = 8;
/** Four chats share a decode step by default: LFM2-1.2B q4 on 2 threads gives 2.3× the tokens/s of one (8 adds little more). */
const DEFAULT_MAX_BATCH = 4;
/** Ten minutes: far beyond a chat reply, short of a request nobody waits for any more. */
const DEFAULT_TIMEOUT_S = 600;
/**
 * Decode states kept per text model: LFM2-1.2B's state holds ~24 KiB per token of history, so
 * 512 MiB keeps some twenty thousand tokens of conversations (a few dozen chats).
 */
const DEFAULT_PROMPT_CACHE_MB = 512;

/** A size flag (`--memory-budget 6G`, `--max-body 64M`): bytes, K/M/G/T as powers of 1024. */
function sizeFlag(v: Values, flag: string, maxBytes: number): number | undefined {
  const raw = v[flag];
  if (typeof raw !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(raw);
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m?.[2] ?? "").toUpperCase()] ?? 1;
  const bytes = m ? Math.floor(Number(m[1]) * unit) : Number.NaN;
  if (!(bytes >= 1 && bytes <= maxBytes)) throw new LfmError("INVALID_ARGUMENT", `--${flag} expects a size such as 512M or 6G (at most ${maxBytes / 1024 ** 3} G); got "${raw}".`);
  return bytes;
}

/** A folder flag that must name an existing folder. */
function folderFlag(v: Values, flag: string): string | undefined {
  const raw = v[flag];
  if (typeof raw !== "string") return undefined;
  if (!statSync(raw, { throwIfNoEntry: false })?.isDirectory()) throw new LfmError("FILE_NOT_FOUND", `--${flag} ${raw} is not a folder.`);
  return raw;
}

export const serveCommand: CliCommand = {
  name: "serve",
  summary: "An OpenAI-compatible HTTP server for the models (chat, streaming, tools, JSON, images, audio, speech).",
  help: `lfm serve [--models-dir DIR] [--port N] [--host H] [--api-key K] [options]
  Serves the models over HTTP in OpenAI's API shapes, for any OpenAI client library (docs/serve.md):
    GET  /v1/models             the models, with their input and output modalities
    POST /v1/chat/completions   chat; "stream": true for server-sent events; tools, response_format,
                                image_url parts (LFM2-VL), input_audio parts (LFM2-Audio)
    POST /v1/audio/transcriptions   speech to text (multipart: file, model; json, text, srt, vtt, verbose_json)
    POST /v1/audio/speech       text to speech (LFM2-Audio), streamed as WAV or PCM
    GET  /v1/indexes, POST /v1/search   the --indexes-dir indexes; passages matching a query
    POST /v1/extract            a PDF or image + a JSON Schema → JSON (multipart: file, schema)
    GET  /health, GET /metrics  liveness; Prometheus metrics
    GET  /                      a web page: chat, images, voice, search, extraction
  Prints "listening on http://HOST:PORT" when ready; Ctrl-C stops it.
  --models-dir DIR         A folder of checkpoint folders, each served under its folder name, or a
                           Hugging Face cache (models--Org--Name folders, served as Org/Name). Models
                           load on their first request. Default: the bundled tiny random models.
  --port N                 Port (default ${DEFAULT_PORT}; 0 = any free port). ${rangeText(SERVE_RANGES.port)}.
  --host H                 Address to bind (default 127.0.0.1, this machine only). Any other
                           address needs --api-key.
  --api-key K              Clients must send "Authorization: Bearer K" (all routes but /health).
                           Also read from $LFM_API_KEY, which keeps it out of the process list.
  --max-queue N            Requests that may wait per model beside the running one (default ${DEFAULT_MAX_QUEUE});
                           more get 429 with Retry-After. ${rangeText(SERVE_RANGES.maxQueue)}.
  --max-batch N            Chats a text model runs at once, each decode step one forward pass for
                           all of them (default ${DEFAULT_MAX_BATCH}; 1 = one after another): more tokens/s
                           in total, each reply a little slower. Other models and work run one at a
                           time. ${rangeText(SERVE_RANGES.maxBatch)}.
  --memory-budget SIZE     Unload the least recently used idle models when the loaded ones take more
                           than SIZE (e.g. 6G; measured as resident memory added by each load, plus the
                           decode states its prompt cache keeps).
                           Default: no limit.
  --allow-files DIR        image_url parts may be file:// URLs of files inside DIR (never elsewhere;
                           without it, file:// URLs are refused). Remote URLs are never fetched.
  --indexes-dir DIR        A folder of indexes (each a folder DIR/NAME made by lfm index add) that /v1/search
                           and /v1/answers search by NAME, each with the model that built it.
  --prompt-cache-mb N      Memory per text model for the decode states chats continue from (default
                           ${DEFAULT_PROMPT_CACHE_MB}; 0 = off): a turn runs only the tokens its prompt adds to
                           the longest kept prefix (usage.prompt_tokens_details.cached_tokens says how
                           many were reused); least recently used states go first. ${rangeText(SERVE_RANGES.promptCacheMb)}.
  --max-body SIZE          Largest request body (default ${DEFAULT_BODY_LIMIT / 1024 ** 2}M; images and audio travel as base64 in it).
  --timeout S              Each request's time limit in seconds, its wait in the queue included (default
                           ${DEFAULT_TIMEOUT_S}; 0 = none): past it, its work stops and it gets 504
                           DEADLINE_EXCEEDED. Raise it to transcribe long recordings. ${rangeText(SERVE_RANGES.timeout)}.
  Also: --precision P, --threads N, --cache-dir DIR, --no-cache (lfm --help), for every model loaded.
  Example: lfm serve --port 8080 &  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\
             -d '{"model": "tiny-lfm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16}'`,
  options: SERVE_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, SERVE_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `serve takes no arguments (got "${positionals[0]}"); models come from --models-dir.`);
    const port = numberFlag(v, "port", SERVE_RANGES.port) ?? DEFAULT_PORT;
    const maxQueue = numberFlag(v, "max-queue", SERVE_RANGES.maxQueue) ?? DEFAULT_MAX_QUEUE;
    const maxBatch = numberFlag(v, "max-batch", SERVE_RANGES.maxBatch) ?? DEFAULT_MAX_BATCH;
    const timeoutS = numberFlag(v, "timeout", SERVE_RANGES.timeout) ?? DEFAULT_TIMEOUT_S;
    const promptCacheMb = numberFlag(v, "prompt-cache-mb", SERVE_RANGES.promptCacheMb) ?? DEFAULT_PROMPT_CACHE_MB;
    const memoryBudgetBytes = sizeFlag(v, "memory-budget", 1024 ** 4);
    const bodyLimitBytes = sizeFlag(v, "max-body", 4 * 1024 ** 3) ?? DEFAULT_BODY_LIMIT;
    const allowFiles = folderFlag(v, "allow-files");
    const indexesDir = folderFlag(v, "indexes-dir");
    const apiKey = typeof v["api-key"] === "string" ? v["api-key"] : process.env.LFM_API_KEY || undefined;
    if (apiKey !== undefined && apiKey.length < 8) throw new LfmError("INVALID_ARGUMENT", "--api-key must be at least 8 characters.");
    const { precision, threads, cacheDir } = loadFlags({ ...v, json: true });
    const log = (line: string) => process.stderr.write(`${terminalLine(line)}\n`);

    const modelsDir = folderFlag(v, "models-dir");
    const entries = modelsDir
      ? scanModelsDir(modelsDir, log)
      : entriesOf([
          ...(["text", "vision"] as const).map((kind) => ({ id: basename(bundledModel(kind)), dir: bundledModel(kind) })),
          // The bundled audio model's codec is a folder of its own.
          { id: basename(bundledModel("audio")), dir: bundledModel("audio"), mimi: bundledModel("mimi") },
        ]);
    if (entries.length === 0) throw new LfmError("MODEL_NOT_FOUND", `${modelsDir ?? "this installation"} holds no LFM2, LFM2-VL or LFM2-Audio checkpoint folder to serve.`);
    if (!modelsDir) log("(no --models-dir: serving the bundled tiny random models; their output is random)");

    const metrics = new Metrics();
    const registry = new ModelRegistry(entries, {
      precision,
      threads,
      cacheDir,
      memoryBudgetBytes,
      promptCacheBytes: promptCacheMb * 1024 ** 2,
      onLoad: (id, bytes, ms) => {
        metrics.inc("lfm_model_loads_total", "Model loads.", { model: id });
        log(`loaded ${id} (+${Math.round(bytes / 1024 ** 2)} MiB resident) in ${(ms / 1000).toFixed(1)} s`);
      },
      onUnload: (id) => {
        metrics.inc("lfm_model_unloads_total", "Models released to stay under --memory-budget.", { model: id });
        log(`unloaded ${id} (--memory-budget)`);
      },
    });
    const host = typeof v.host === "string" ? v.host : "127.0.0.1";
    const requestTimeoutMs = timeoutS === 0 ? undefined : timeoutS * 1000;
    const server = await startServer({
      registry,
      host,
      port,
      maxQueue,
      maxBatch,
      apiKey,
      allowFiles,
      bodyLimitBytes,
      log,
      metrics,
      requestTimeoutMs,
      search: indexesDir === undefined ? undefined : { indexesDir, load: { threads, cacheDir } },
    });
    log(`serving ${entries.map((e) => e.id).join(", ")}`);
    process.stdout.write(`listening on ${server.url}\n`);
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
    log("stopping…");
    await server.close();
    return 0;
  },
};
