/**
 * `GET /v1/indexes` and `POST /v1/search`: the ColBERT indexes of `--indexes-dir`, each named by
 * its folder name, searched as `lfm search` searches them (the query encoded by the model that
 * built the index, then the reader's MaxSim ranking: retrieval/index/search-text.ts).
 *
 * An index is opened for each request, so a search sees the last commit of an `lfm index add`
 * running beside the server. Encoders are loaded on first use and kept (one per model folder and
 * precision) until the server closes; with a registry, they load in its order and their memory is
 * counted in its --memory-budget (ModelRegistry.loadPinned).
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { ColbertEncoder } from "../retrieval/colbert.ts";
import { MANIFEST_FILE, type MetadataValue } from "../retrieval/index/format.ts";
import { chooseIndexModel } from "../retrieval/index/model-identity.ts";
import { compileFilter } from "../retrieval/index/metadata-filter.ts";
import { IndexReader, type MetadataFilter, readIndexStats } from "../retrieval/index/reader.ts";
import { searchText } from "../retrieval/index/search-text.ts";
import { LfmError } from "../text-core/errors.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { ComputeQueue } from "./compute-queue.ts";
import { ApiError, badField } from "./errors.ts";
import type { ModelLoadOptions, ModelRegistry } from "./model-registry.ts";

/** The signal a request's work runs under, and what an error it caused is answered as. */
export interface RequestLifetime {
  signal: AbortSignal;
  explain: (e: unknown) => unknown;
}

/** A request's work stops when its client goes away (the response closes before it is complete). */
export function untilClientLeaves(reply: FastifyReply): RequestLifetime {
  const gone = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return { signal: gone.signal, explain: (e) => e };
}

export interface SearchRouteOptions {
  /** The folder whose subfolders are the indexes (`lfm index add --index DIR/NAME`). */
  indexesDir: string;
  /** threads and graph cache for the query encoders (their precision is each index's own). */
  load: Omit<ModelLoadOptions, "precision">;
  /** Searches that may wait beside the one running; more are answered 429. */
  maxQueue: number;
  /** The lifetime of a request (default: until its client leaves; a server with deadlines adds them). */
  lifetime?: (reply: FastifyReply) => RequestLifetime;
  /** The server's models: encoders load in its order and count in its memory budget. */
  registry?: ModelRegistry;
}

export interface SearchRequest {
  index: string;
  query: string;
  k: number;
  filter?: MetadataFilter;
}

/** An index name: a plain folder name, so a request can never reach outside --indexes-dir. */
const INDEX_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_QUERY_CHARS = 4096;
const MAX_K = 100;
const KNOWN = new Set(["index", "query", "k", "filter"]);

function isMetadataValue(v: unknown): v is MetadataValue {
  return typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A search body, checked; a 400 naming the first field that is wrong. */
export function readSearchRequest(body: unknown): SearchRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badField("body", "must be a JSON object: {\"index\", \"query\", \"k\"?, \"filter\"?}.");
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) if (!KNOWN.has(key)) throw badField(key, "is not a field of a search (index, query, k, filter).");
  // A name that is no folder of --indexes-dir (a path trick included) is a 404 from indexDir, as on every index route.
  if (typeof b.index !== "string" || b.index === "") throw badField("index", "must be the name of an index (GET /v1/indexes).");
  if (typeof b.query !== "string" || b.query.trim() === "") throw badField("query", "must be a non-empty string.");
  if (b.query.length > MAX_QUERY_CHARS) throw badField("query", `must be at most ${MAX_QUERY_CHARS} characters.`);
  let k = 10;
  if (b.k !== undefined) {
    if (typeof b.k !== "number" || !Number.isInteger(b.k) || b.k < 1 || b.k > MAX_K) throw badField("k", `must be an integer from 1 to ${MAX_K}.`);
    k = b.k;
  }
  let filter: MetadataFilter | undefined;
  if (b.filter !== undefined) {
    if (typeof b.filter !== "object" || b.filter === null || Array.isArray(b.filter)) throw badField("filter", "must be an object of metadata key → value (or a list of values).");
    filter = Object.create(null) as MetadataFilter; // a key "__proto__" stays a plain key
    for (const [key, value] of Object.entries(b.filter)) {
      const one = (x: unknown) => isMetadataValue(x) || isPlainObject(x);
      const ok = one(value) || (Array.isArray(value) && value.length > 0 && value.length <= 64 && value.every(one));
      if (!ok) throw badField(`filter.${key}`, 'must be a string, number or boolean, {"prefix": "…"}, {"after": DATE, "before": DATE}, or a list of them.');
      filter[key] = value as MetadataFilter[string];
      // Conditions ({prefix}, {after, before}) are checked as the reader will read them.
      try {
        compileFilter({ [key]: filter[key] });
      } catch (e) {
        if (e instanceof LfmError) throw new ApiError("INVALID_ARGUMENT", e.message, `filter.${key}`);
        throw e;
      }
    }
  }
  return { index: b.index, query: b.query, k, filter };
}

/** The index folders of `indexesDir` (those holding a manifest), by name. */
export function listIndexes(indexesDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(indexesDir).sort();
  } catch {
    throw new LfmError("INDEX_NOT_FOUND", `--indexes-dir ${indexesDir} is not a readable folder.`);
  }
  return names.filter((name) => INDEX_NAME.test(name) && statSync(join(indexesDir, name), { throwIfNoEntry: false })?.isDirectory() && existsSync(join(indexesDir, name, MANIFEST_FILE)));
}

/**
 * The folder of the index `name` in `indexesDir`; INDEX_NOT_FOUND (404) listing the names there
 * are, on every index route alike, for a name that is no index there, one that is not a plain
 * folder name (`../x`, `a/b`: never joined to the path) included, as an unknown model is a 404.
 */
export function indexDir(indexesDir: string, name: string): string {
  if (!INDEX_NAME.test(name) || !existsSync(join(indexesDir, name, MANIFEST_FILE))) {
    const names = listIndexes(indexesDir);
    const shown = JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
    throw new LfmError("INDEX_NOT_FOUND", `no index ${shown} here; the indexes are: ${names.length > 0 ? names.join(", ") : "(none)"} (GET /v1/indexes).`);
  }
  return join(indexesDir, name);
}

/** The encoder of an open index's model (loaded on first use, kept until the server closes). */
export type IndexEncoder = (reader: IndexReader, name: string) => Promise<ColbertEncoder>;

/** Registers the routes; returns the encoder cache, shared with the answers and documents routes. */
export function registerSearchRoutes(app: FastifyInstance, opts: SearchRouteOptions | undefined): IndexEncoder {
  const notConfigured = () => new ApiError("INVALID_ARGUMENT", "this server has no indexes: start it with lfm serve --indexes-dir DIR (a folder of lfm index folders).", "index");
  const queue = new ComputeQueue("search", opts?.maxQueue ?? 0);
  const encoders = new Map<string, Promise<ColbertEncoder>>();
  const encoderFor = (path: string, precision: Precision | undefined): Promise<ColbertEncoder> => {
    const key = `${path}\0${precision ?? ""}`;
    let encoder = encoders.get(key);
    if (!encoder) {
      const load = () => import("../retrieval/colbert.ts").then(({ ColbertEncoder }) => ColbertEncoder.load(path, { ...opts?.load, precision }));
      encoder = opts?.registry ? opts.registry.loadPinned(`colbert ${path} ${precision ?? "default"}`, path, load) : load();
      encoders.set(key, encoder);
      encoder.catch(() => encoders.delete(key)); // a failed load is tried again by the next request
    }
    return encoder;
  };
  app.addHook("onClose", async () => {
    for (const encoder of encoders.values()) await encoder.then((e) => e.release(), () => {});
    encoders.clear();
  });

  const encoderOfIndex: IndexEncoder = async (reader, name) => {
    if (!reader.model) throw new LfmError("INDEX_EMPTY", `index ${name} records no model (nothing was ever added to it).`);
    // The model that built the index: another one's vectors would not be comparable.
    const model = chooseIndexModel(reader.model, undefined, () => reader.model!.path ?? "");
    return encoderFor(model.path as string, reader.model.precision);
  };

  app.get("/v1/indexes", async () => {
    if (!opts) return { object: "list", data: [] };
    return {
      object: "list",
      data: listIndexes(opts.indexesDir).map((id) => {
        const stats = readIndexStats(join(opts.indexesDir, id), false);
        return { id, object: "index", documents: stats.documents, sources: stats.sources, model: stats.model?.name ?? null, committed_at: stats.committedAt };
      }),
    };
  });

  app.post("/v1/search", async (request, reply) => {
    if (!opts) throw notConfigured();
    const req = readSearchRequest(request.body);
    const dir = indexDir(opts.indexesDir, req.index);
    const started = performance.now();
    const { signal, explain } = (opts.lifetime ?? untilClientLeaves)(reply);
    const search = () => queue.run(signal, async () => {
      const reader = await IndexReader.open(dir);
      try {
        const encoder = await encoderOfIndex(reader, req.index);
        return (await searchText(reader, encoder, req.query, { k: req.k, filter: req.filter, signal })).hits;
      } finally {
        await reader.close();
      }
    });
    let hits: Awaited<ReturnType<typeof search>>;
    try {
      hits = await search();
    } catch (e) {
      throw explain(e);
    }
    return {
      object: "list",
      index: req.index,
      query: req.query,
      data: hits.map((h) => ({ id: h.id, score: h.score, text: h.text, source: h.source, metadata: h.metadata })),
      timings: { total_ms: Math.round(performance.now() - started) },
    };
  });
  return encoderOfIndex;
}
