/**
 * `POST /v1/documents` and `DELETE /v1/documents/{source-or-id}`: maintaining an index of
 * `--indexes-dir` over HTTP. A text is chunked as `lfm index add` chunks a file (the same
 * passage size from the encoder's document length, the same overlap, tokens counted with the
 * encoder's tokenizer), encoded with the index's own encoder, and committed through IndexWriter:
 * its writer lock keeps out any other writer (an `lfm index add` beside the server: 409
 * INDEX_LOCKED) and its commit is atomic, so a crash mid-request leaves the last generation.
 *
 * Writes to one index run one at a time, in arrival order (the lock allows one writer per process
 * too); each opens the writer, commits and closes it, so searches and `lfm` see every commit.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { ColbertEncoder } from "../retrieval/colbert.ts";
import type { Metadata, MetadataValue } from "../retrieval/index/format.ts";
import { IndexReader } from "../retrieval/index/reader.ts";
import { IndexWriter } from "../retrieval/index/writer.ts";
import { chunkText, encoderTokenCounter } from "../retrieval/ingest/chunker.ts";
import { LfmError } from "../text-core/errors.ts";
import { ApiError, badField } from "./errors.ts";
import { type IndexEncoder, type RequestLifetime, indexDir, untilClientLeaves } from "./search.ts";

export interface DocumentsRouteOptions {
  /** The --indexes-dir folder (none: the routes say the server has no indexes). */
  indexesDir?: string;
  encoderOfIndex: IndexEncoder;
  lifetime?: (reply: FastifyReply) => RequestLifetime;
}

export interface AddDocumentRequest {
  index: string;
  source: string;
  text: string;
  metadata: Metadata;
}

const MAX_SOURCE_CHARS = 1024;
/** 16 MiB of text: what a body limit of 32M allows with JSON escaping, and far beyond a page. */
const MAX_TEXT_CHARS = 16 * 1024 ** 2;
const KNOWN = new Set(["index", "source", "text", "metadata"]);

function isMetadataValue(v: unknown): v is MetadataValue {
  return typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
}

/** A document body, checked; a 400 naming the first field that is wrong. */
export function readAddDocumentRequest(body: unknown): AddDocumentRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badField("body", "must be a JSON object: {\"index\", \"source\", \"text\", \"metadata\"?}.");
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) if (!KNOWN.has(key)) throw badField(key, "is not a field of a document (index, source, text, metadata).");
  if (typeof b.index !== "string" || b.index === "") throw badField("index", "must be the name of an index (GET /v1/indexes).");
  // The source names the document (its passages' ids are SOURCE#N); "" is the index's no-source mark.
  if (typeof b.source !== "string" || b.source.trim() === "" || b.source.length > MAX_SOURCE_CHARS || /[\u0000-\u001f]/.test(b.source)) {
    throw badField("source", `must be a non-empty name of at most ${MAX_SOURCE_CHARS} characters, without control characters.`);
  }
  if (typeof b.text !== "string" || b.text.trim() === "") throw badField("text", "must be a non-empty string.");
  if (b.text.length > MAX_TEXT_CHARS) throw badField("text", `must be at most ${MAX_TEXT_CHARS} characters.`);
  const metadata: Metadata = {};
  if (b.metadata !== undefined) {
    if (typeof b.metadata !== "object" || b.metadata === null || Array.isArray(b.metadata)) throw badField("metadata", "must be an object of key → string, number or boolean.");
    for (const [key, value] of Object.entries(b.metadata)) {
      if (!isMetadataValue(value)) throw badField(`metadata.${key}`, "must be a string, number or boolean.");
      if (key === "source") throw badField("metadata.source", "is the document's source; give it as the source field.");
      metadata[key] = value;
    }
  }
  return { index: b.index, source: b.source, text: b.text, metadata };
}

export function registerDocumentsRoutes(app: FastifyInstance, opts: DocumentsRouteOptions): void {
  const notConfigured = () => new ApiError("INVALID_ARGUMENT", "this server has no indexes: start it with lfm serve --indexes-dir DIR (a folder of lfm index folders).", "index");
  /** The last write queued on each index: the next one starts when it has settled. */
  const tails = new Map<string, Promise<unknown>>();
  const serialised = <T>(dir: string, work: () => Promise<T>): Promise<T> => {
    const run = (tails.get(dir) ?? Promise.resolve()).then(work, work);
    const tail = run.catch(() => {});
    tails.set(dir, tail);
    void tail.then(() => {
      if (tails.get(dir) === tail) tails.delete(dir);
    });
    return run;
  };
  const counters = new Map<string, Promise<(text: string) => number>>();
  const counterOf = (encoder: ColbertEncoder) => {
    let counter = counters.get(encoder.dir);
    if (!counter) counters.set(encoder.dir, (counter = encoderTokenCounter(encoder)));
    return counter;
  };

  /** Opens the writer (the lock), runs `change`, commits when it changed anything, closes. */
  const write = async (dir: string, change: (writer: IndexWriter) => Promise<{ added: string[]; removed: string[] }> | { added: string[]; removed: string[] }, signal: AbortSignal) => {
    const writer = await IndexWriter.open(dir);
    try {
      const { added, removed } = await change(writer);
      const changed = added.length > 0 || removed.length > 0;
      const generation = changed ? (await writer.commit({ signal })).generation : writer.generation;
      return { added, removed, generation };
    } finally {
      await writer.close();
    }
  };

  app.post("/v1/documents", async (request, reply) => {
    const req = readAddDocumentRequest(request.body);
    if (opts.indexesDir === undefined) throw notConfigured();
    const dir = indexDir(opts.indexesDir, req.index);
    const { signal, explain } = (opts.lifetime ?? untilClientLeaves)(reply);
    const started = performance.now();
    let result: { added: string[]; removed: string[]; generation: number };
    try {
      result = await serialised(dir, async () => {
        if (signal.aborted) throw new LfmError("ABORTED", "the request was cancelled before its write started.");
        // The encoder is read from the committed index before the lock is taken (encoding is the long part).
        const reader = await IndexReader.open(dir);
        let encoder: ColbertEncoder;
        try {
          encoder = await opts.encoderOfIndex(reader, req.index);
        } finally {
          await reader.close();
        }
        const documentLength = encoder.settings.documentLength;
        const maxTokens = Math.max(8, Math.min(documentLength - 2, 256));
        const chunks = chunkText(req.text, { maxTokens, overlapTokens: Math.floor(maxTokens / 8), countTokens: await counterOf(encoder) });
        const vectors = await encoder.encodeDocuments(chunks.map((c) => c.text), { signal });
        const hash = createHash("sha256").update(req.text).update(JSON.stringify(req.metadata)).digest("hex").slice(0, 32);
        const version = `${hash}:${chunks.length}`;
        return write(
          dir,
          (writer) => {
            // Replaces the document with the same source: its old passages go in the same commit.
            const fresh = new Set(chunks.map((c) => `${req.source}#${c.index}`));
            const old = [...writer.documents()].filter((d) => d.source === req.source).map((d) => d.id);
            writer.delete(old);
            const added = chunks.map((c, i) => {
              const id = `${req.source}#${c.index}`;
              writer.upsert({ id, text: c.text, source: req.source, start: c.start, end: c.end, sourceHash: version, metadata: { type: "text", ...req.metadata }, embeddings: vectors[i] });
              return id;
            });
            return { added, removed: old.filter((id) => !fresh.has(id)) };
          },
          signal,
        );
      });
    } catch (e) {
      throw explain(e);
    }
    return { object: "document", index: req.index, source: req.source, added: result.added, removed: result.removed, generation: result.generation, timings: { total_ms: Math.round(performance.now() - started) } };
  });

  // A source may hold slashes (a path), so the rest of the path is the source or passage id.
  app.delete("/v1/documents/*", async (request, reply) => {
    const key = (request.params as { "*": string })["*"];
    const index = (request.query as Record<string, unknown>).index;
    if (typeof index !== "string" || index === "") throw badField("index", "give the index as ?index=NAME (GET /v1/indexes).");
    if (key === "") throw badField("id", "give the document's source or a passage id: DELETE /v1/documents/{source-or-id}?index=NAME.");
    if (opts.indexesDir === undefined) throw notConfigured();
    const dir = indexDir(opts.indexesDir, index);
    const { signal, explain } = (opts.lifetime ?? untilClientLeaves)(reply);
    let result: { added: string[]; removed: string[]; generation: number };
    try {
      result = await serialised(dir, () =>
        write(
          dir,
          (writer) => {
            const ids = [...writer.documents()].filter((d) => d.id === key || d.source === key).map((d) => d.id);
            writer.delete(ids);
            return { added: [], removed: ids };
          },
          signal,
        ),
      );
    } catch (e) {
      throw explain(e);
    }
    if (result.removed.length === 0) throw new LfmError("DOCUMENT_NOT_FOUND", `index ${index} has no document with the source or passage id ${JSON.stringify(key)}.`);
    return { object: "document.deleted", index, id: key, removed: result.removed, generation: result.generation };
  });
}
