/**
 * `POST /v1/extract`: one document (a PDF or an image, uploaded as multipart `file`) and a JSON
 * Schema → JSON valid under it, as `lfm extract` makes it (pipelines/extract.ts): PDF pages with a
 * text layer go to the model's language core as text, images and scanned pages to LFM2-VL, pages
 * are merged, and every value comes with its confidence and the page it came from.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import { GENERIC_SCHEMA, checkObjectSchema, extractDocument } from "../pipelines/extract.ts";
import { LfmError } from "../text-core/errors.ts";
import type { ComputeQueue } from "./compute-queue.ts";
import { ApiError, badField } from "./errors.ts";
import type { ModelEntry, ModelRegistry } from "./model-registry.ts";
import { type RequestLifetime, untilClientLeaves } from "./search.ts";

export interface ExtractRouteOptions {
  registry: ModelRegistry;
  /** The compute queue of a model (extraction waits in the same queue as the model's chats). */
  queueOf: (entry: ModelEntry) => ComputeQueue;
  /** The lifetime of a request (default: until its client leaves; a server with deadlines adds them). */
  lifetime?: (reply: FastifyReply) => RequestLifetime;
}

export interface ExtractRequest {
  /** An LFM2-VL model id; undefined: the first vision model offered. */
  model?: string;
  file: Uint8Array;
  fileName: string;
  schema: unknown;
  maxTokens: number;
}

const KNOWN = new Set(["file", "schema", "model", "max_tokens"]);
const MAX_TOKENS = 4096;
const DEFAULT_MAX_TOKENS = 512;

/** The form's fields, checked; a 400 naming the first that is wrong. */
export async function readExtractForm(form: FormData): Promise<ExtractRequest> {
  for (const key of form.keys()) if (!KNOWN.has(key)) throw badField(key, "is not a field of an extraction (file, schema, model, max_tokens).");
  const file = form.get("file");
  if (file === null || typeof file === "string") throw badField("file", "must be the document (a PDF or an image), uploaded as a file part.");
  const model = form.get("model");
  if (model !== null && (typeof model !== "string" || model === "")) throw badField("model", "must be the name of a vision model (GET /v1/models).");
  let schema: unknown = GENERIC_SCHEMA;
  const schemaText = form.get("schema");
  if (schemaText !== null && !(typeof schemaText === "string" && schemaText.trim() === "")) {
    const text = typeof schemaText === "string" ? schemaText : await schemaText.text();
    try {
      schema = JSON.parse(text);
    } catch (e) {
      throw new ApiError("SCHEMA_INVALID", `schema: is not JSON (${(e as Error).message}).`, "schema");
    }
    try {
      checkObjectSchema(schema);
    } catch (e) {
      if (e instanceof LfmError) throw new ApiError(e.code, `schema: ${e.message}`, "schema");
      throw e;
    }
  }
  let maxTokens = DEFAULT_MAX_TOKENS;
  const maxTokensText = form.get("max_tokens");
  if (maxTokensText !== null) {
    const n = typeof maxTokensText === "string" && /^\d+$/.test(maxTokensText.trim()) ? Number(maxTokensText) : Number.NaN;
    if (!(n >= 1 && n <= MAX_TOKENS)) throw badField("max_tokens", `must be an integer from 1 to ${MAX_TOKENS} (tokens per page).`);
    maxTokens = n;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (bytes.length === 0) throw badField("file", "is empty.");
  return { model: typeof model === "string" ? model : undefined, file: bytes, fileName: file.name || "the upload", schema, maxTokens };
}

/** The vision model an extraction runs on: the one asked for, else the first offered. */
function visionEntry(registry: ModelRegistry, id: string | undefined): ModelEntry {
  if (id !== undefined) {
    const entry = registry.get(id);
    if (entry.kind !== "vision") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} is not an LFM2-VL model (its input modalities: ${entry.input.join(", ")}); extraction reads pages as images.`, "model");
    return entry;
  }
  const first = registry.list().find((e) => e.kind === "vision");
  if (!first) throw new LfmError("MODEL_NOT_FOUND", "this server offers no LFM2-VL model, which extraction needs (GET /v1/models).");
  return first;
}

/** Registers POST /v1/extract, with multipart bodies taken on it alone (parsed whole by the platform's FormData, within the body limit). */
export function registerExtractRoute(app: FastifyInstance, opts: ExtractRouteOptions): void {
  app.register(async (scope) => {
    scope.addContentTypeParser("multipart/form-data", { parseAs: "buffer" }, (_request, body, done) => done(null, body));
    scope.post("/v1/extract", async (request, reply) => {
      if (!Buffer.isBuffer(request.body)) throw new ApiError("INVALID_ARGUMENT", "upload the document as multipart/form-data (file, schema).", "body");
      let form: FormData;
      try {
        form = await new Response(new Uint8Array(request.body.buffer as ArrayBuffer, request.body.byteOffset, request.body.byteLength), { headers: { "content-type": String(request.headers["content-type"]) } }).formData();
      } catch {
        throw new ApiError("INVALID_ARGUMENT", "the multipart body does not parse (its boundary or parts are damaged).", "body");
      }
      const req = await readExtractForm(form);
      const entry = visionEntry(opts.registry, req.model);
      const { signal, explain } = (opts.lifetime ?? untilClientLeaves)(reply);
      const started = performance.now();
      const sha256 = createHash("sha256").update(req.file).digest("hex");
      let result: Awaited<ReturnType<typeof extractDocument>>;
      try {
        result = await opts.queueOf(entry).run(signal, () =>
          opts.registry.use(entry.id, async (loaded) => {
            if (loaded.kind !== "vision") throw new ApiError("INVALID_ARGUMENT", `model: ${entry.id} is not an LFM2-VL model.`, "model");
            return extractDocument(req.fileName, req.file, { schema: req.schema, model: loaded.model, maxTokens: req.maxTokens, signal }, sha256);
          }),
        );
      } catch (e) {
        throw explain(e);
      }
      return {
        object: "extraction",
        model: entry.id,
        filename: req.fileName,
        sha256: result.sha256,
        data: result.data,
        confidence: result.confidence,
        provenance: result.provenance,
        pages: result.pages,
        timings: { total_ms: Math.round(performance.now() - started) },
      };
    });
  });
}
