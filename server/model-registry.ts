/**
 * The models a server offers, by name, and the ones it holds loaded.
 *
 * Names come from a models folder: each checkpoint folder in it is offered under its folder name
 * (`LFM2-350M`), each Hugging Face cache repo folder `models--Org--Name` under `Org/Name` — so a
 * folder that is itself an HF hub cache serves every model in it. A model is loaded on its first
 * request; loads run one at a time (they are CPU-bound and measured one by one). Under a memory
 * budget, the least recently used idle models are released before a load that would overflow it
 * and after a load that did; a model in use is never released, and the one just loaded stays even
 * alone over the budget (better slow than refusing the only model asked for).
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Lfm2AudioModel } from "../audio/lfm2-audio-model.ts";
import { Speaker } from "../pipelines/speak.ts";
import { isLfm2AudioConfig } from "../audio/audio-config.ts";
import { readConfigJson } from "../text-core/config.ts";
import { LfmError } from "../text-core/errors.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import { TextModel } from "../text-core/model.ts";
import { PromptCache, type PromptCacheStats } from "../text-core/prompt-cache.ts";
import { isLfm2VlConfig } from "../vision/vl-config.ts";
import { VlModel } from "../vision/vl-model.ts";

/** What a checkpoint is, as far as serving goes. */
export type ModelKind = "text" | "vision" | "audio";

export type Modality = "text" | "image" | "audio";

/** A model the server offers (loaded or not). */
export interface ModelEntry {
  /** The name requests use: the folder name, or `Org/Name` for an HF cache repo. */
  id: string;
  /** The checkpoint folder (the one with config.json). */
  dir: string;
  kind: ModelKind;
  input: Modality[];
  output: Modality[];
  /** The folder's modification time, Unix seconds (OpenAI's `created`). */
  created: number;
  /** LFM2-Audio: the Mimi codec for speech (default: the checkpoint folder, which ships it). */
  mimi?: string;
}

/** What a model is loaded for: chat and transcription share one load, speech needs the audio head and codec. */
export type ModelPurpose = "chat" | "speech";

export type LoadedModel =
  /** `promptCache`: the decode states chats continue from (shared by all clients; none when off). */
  | { kind: "text"; model: TextModel; promptCache?: PromptCache }
  | { kind: "vision"; model: VlModel }
  | { kind: "audio"; model: Lfm2AudioModel }
  | { kind: "speech"; model: Speaker };

export interface ModelLoadOptions {
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  /** Bytes of decode states each text model keeps for chats to continue from (0 or absent: none kept). */
  promptCacheBytes?: number;
}

const MODALITIES: Record<ModelKind, { input: Modality[]; output: Modality[] }> = {
  text: { input: ["text"], output: ["text"] },
  vision: { input: ["text", "image"], output: ["text"] },
  // Speech comes from POST /v1/audio/speech; chat replies are text.
  audio: { input: ["text", "audio"], output: ["text", "audio"] },
};

/** The serving kind of the checkpoint in `dir`, or undefined for one this server does not chat with (ColBERT, a codec). */
export function modelKindOf(dir: string): ModelKind | undefined {
  const config = readConfigJson(dir);
  if (isLfm2VlConfig(config)) return "vision";
  if (isLfm2AudioConfig(config)) return "audio";
  // A PyLate folder (modules.json) is a retriever built on the same core: not a chat model.
  if (config.model_type === "lfm2" && !existsFile(join(dir, "modules.json"))) return "text";
  return undefined;
}

function existsFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function entryOf(id: string, dir: string): ModelEntry | undefined {
  const kind = modelKindOf(dir);
  if (!kind) return undefined;
  return { id, dir, kind, ...MODALITIES[kind], created: Math.floor(statSync(dir).mtimeMs / 1000) };
}

/**
 * The models of `modelsDir`: its checkpoint folders by folder name, its `models--Org--Name` cache
 * folders as `Org/Name`. A folder that is not a model (or whose config does not read) is reported
 * through `warn` and skipped, so one broken download does not take the others down.
 */
export function scanModelsDir(modelsDir: string, warn: (message: string) => void = () => {}): ModelEntry[] {
  let names: string[];
  try {
    names = readdirSync(modelsDir).sort();
  } catch {
    throw new LfmError("MODEL_NOT_FOUND", `--models-dir ${modelsDir} is not a readable folder; give the folder that holds your checkpoint folders (or an HF cache).`);
  }
  const entries: ModelEntry[] = [];
  for (const name of names) {
    const path = join(modelsDir, name);
    if (name.startsWith(".") || !statSync(path, { throwIfNoEntry: false })?.isDirectory()) continue;
    const cached = /^models--([^-].*?)--(.+)$/.exec(name);
    try {
      const dir = resolveModelDir(path);
      const entry = entryOf(cached ? `${cached[1]}/${cached[2]}` : name, dir);
      if (entry) entries.push(entry);
    } catch (e) {
      if (!(e instanceof LfmError)) throw e;
      warn(`skipping ${path}: [${e.code}] ${e.message}`);
    }
  }
  return entries;
}

/** Named checkpoint folders as entries (the bundled tiny models); folders that are absent are left out. */
export function entriesOf(folders: readonly { id: string; dir: string; mimi?: string }[]): ModelEntry[] {
  return folders.flatMap(({ id, dir, mimi }) => {
    if (!existsFile(join(dir, "config.json"))) return [];
    const entry = entryOf(id, dir);
    if (entry && mimi !== undefined && entry.kind === "audio") entry.mimi = mimi;
    return entry ? [entry] : [];
  });
}

/** The registry's key of a model loaded for `purpose` (a speech load sits beside the chat load). */
function residentKey(id: string, purpose: ModelPurpose): string {
  return purpose === "speech" ? `${id} (speech)` : id;
}

interface Resident {
  loaded: LoadedModel;
  /** Growth of the process's resident memory while it loaded (bytes). */
  bytes: number;
  users: number;
  lastUsed: number;
}

export interface RegistryEvents {
  onLoad?: (id: string, bytes: number, ms: number) => void;
  onUnload?: (id: string) => void;
}

export class ModelRegistry {
  private readonly byId: Map<string, ModelEntry>;
  private readonly resident = new Map<string, Resident>();
  /** Loads run one after another: the chain's tail. */
  private loading: Promise<unknown> = Promise.resolve();
  private readonly pendingLoads = new Map<string, Promise<Resident>>();
  /**
   * Memory the server holds beside the models but counts in the same budget: the retrieval
   * encoders (ColBERT) of /v1/search, /v1/answers and /v1/documents, by key. They are handed to
   * requests without a count of users, so they cannot be released safely and stay until close;
   * their bytes make the budget release idle models instead.
   */
  private readonly pinnedBytes = new Map<string, number>();
  private useCounter = 0;

  constructor(
    entries: readonly ModelEntry[],
    private readonly options: ModelLoadOptions & { memoryBudgetBytes?: number } & RegistryEvents = {},
  ) {
    this.byId = new Map(entries.map((e) => [e.id, e]));
  }

  list(): ModelEntry[] {
    return [...this.byId.values()];
  }

  /** The entry named `id`; MODEL_NOT_FOUND (404) listing the names there are. */
  get(id: string): ModelEntry {
    const entry = this.byId.get(id);
    if (!entry) {
      const names = [...this.byId.keys()];
      throw new LfmError("MODEL_NOT_FOUND", `no model "${id}" here; the models are: ${names.length > 0 ? names.join(", ") : "(none)"} (GET /v1/models).`);
    }
    return entry;
  }

  /** The loaded models and their measured memory (their kept decode states included), most recently used first. */
  loaded(): { id: string; bytes: number; users: number; promptCache?: PromptCacheStats }[] {
    return [...this.resident.entries()]
      .sort((a, b) => b[1].lastUsed - a[1].lastUsed)
      .map(([id, r]) => {
        const cache = promptCacheOf(r.loaded);
        return cache ? { id, bytes: residentBytes(r), users: r.users, promptCache: cache.stats() } : { id, bytes: r.bytes, users: r.users };
      });
  }

  /** Runs `use` with model `id` loaded for `purpose` (loading it first if needed); it is not released meanwhile. */
  async use<T>(id: string, use: (loaded: LoadedModel) => Promise<T>, purpose: ModelPurpose = "chat"): Promise<T> {
    const entry = this.get(id);
    if (purpose === "speech" && entry.kind !== "audio") throw new LfmError("INVALID_ARGUMENT", `model ${id} does not speak (its output modalities: ${entry.output.join(", ")}); use an LFM2-Audio model.`);
    const resident = await this.acquire(entry, purpose);
    try {
      return await use(resident.loaded);
    } finally {
      resident.users--;
      resident.lastUsed = ++this.useCounter;
      await this.evictOverBudget(0, this.mostRecent());
    }
  }

  /** The memory held beside the models (see pinnedBytes), by key. */
  pinned(): { key: string; bytes: number }[] {
    return [...this.pinnedBytes].map(([key, bytes]) => ({ key, bytes }));
  }

  /**
   * Loads something kept until the server closes (a retrieval encoder from the checkpoint folder
   * `dir`) in the registry's load order, measured as a model is, its bytes counted in the budget:
   * idle models are released before (room for its weight files) and after (what it measured).
   */
  loadPinned<T>(key: string, dir: string, load: () => Promise<T>): Promise<T> {
    const run = this.loading.then(async () => {
      await this.evictOverBudget(weightBytes(dir), undefined);
      const before = process.memoryUsage().rss;
      const value = await load();
      this.pinnedBytes.set(key, (this.pinnedBytes.get(key) ?? 0) + Math.max(0, process.memoryUsage().rss - before));
      await this.evictOverBudget(0, undefined);
      return value;
    });
    this.loading = run.catch(() => {});
    return run;
  }

  private async acquire(entry: ModelEntry, purpose: ModelPurpose): Promise<Resident> {
    const key = residentKey(entry.id, purpose);
    const found = this.resident.get(key);
    if (found) {
      found.users++;
      found.lastUsed = ++this.useCounter;
      return found;
    }
    let pending = this.pendingLoads.get(key);
    if (!pending) {
      pending = this.load(entry, purpose).finally(() => this.pendingLoads.delete(key));
      this.pendingLoads.set(key, pending);
    }
    const resident = await pending;
    resident.users++;
    resident.lastUsed = ++this.useCounter;
    return resident;
  }

  private load(entry: ModelEntry, purpose: ModelPurpose): Promise<Resident> {
    const key = residentKey(entry.id, purpose);
    const run = this.loading.then(async () => {
      await this.evictOverBudget(weightBytes(entry.dir), undefined);
      const before = process.memoryUsage().rss;
      const started = performance.now();
      const loaded = await loadModelOf(entry, purpose, this.options);
      const resident: Resident = { loaded, bytes: Math.max(0, process.memoryUsage().rss - before), users: 0, lastUsed: ++this.useCounter };
      this.resident.set(key, resident);
      this.options.onLoad?.(key, resident.bytes, performance.now() - started);
      await this.evictOverBudget(0, this.mostRecent());
      return resident;
    });
    this.loading = run.catch(() => {}); // a failed load does not block the next one
    return run;
  }

  /**
   * Releases idle models, least recently used first, while the loaded ones and the pinned memory
   * do not fit the budget: before a load, with room for `wanted` bytes (the weight files' size as
   * the guess); after a use, keeping `keep` (the most recently used model).
   */
  private async evictOverBudget(wanted: number, keep: string | undefined): Promise<void> {
    const budget = this.options.memoryBudgetBytes;
    if (budget === undefined) return;
    const pinned = [...this.pinnedBytes.values()].reduce((sum, b) => sum + b, 0);
    for (;;) {
      const total = pinned + [...this.resident.values()].reduce((sum, r) => sum + residentBytes(r), 0);
      if (total === 0 || total + wanted <= budget) return;
      const idle = [...this.resident.entries()].filter(([id, r]) => r.users === 0 && id !== keep).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
      if (idle.length === 0) return;
      const [id, r] = idle[0];
      this.resident.delete(id);
      await releaseModel(r.loaded);
      this.options.onUnload?.(id);
    }
  }

  private mostRecent(): string | undefined {
    let best: [string, number] | undefined;
    for (const [id, r] of this.resident) if (!best || r.lastUsed > best[1]) best = [id, r.lastUsed];
    return best?.[0];
  }

  /**
   * Releases every loaded model (server shutdown), once the requests using them have ended (their
   * connections are closed first, so they stop at their next token); a model is never released
   * under a running generation. Gives up waiting after `waitMs`.
   */
  async close(waitMs = 30_000): Promise<void> {
    await this.loading;
    const until = Date.now() + waitMs;
    while ([...this.resident.values()].some((r) => r.users > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    const all = [...this.resident.values()];
    this.resident.clear();
    this.pinnedBytes.clear(); // their owners release them (the search routes' onClose)
    await Promise.all(all.map((r) => releaseModel(r.loaded)));
  }
}

async function loadModelOf(entry: ModelEntry, purpose: ModelPurpose, opts: ModelLoadOptions): Promise<LoadedModel> {
  const load = { precision: opts.precision, threads: opts.threads, cacheDir: opts.cacheDir };
  if (purpose === "speech") return { kind: "speech", model: await Speaker.load(entry.dir, { ...load, mimi: entry.mimi }) };
  switch (entry.kind) {
    case "text": {
      const model = await TextModel.load(entry.dir, load);
      // Bounded by bytes only: a conversation's states are few but large, a short one's many and small.
      const bytes = opts.promptCacheBytes ?? 0;
      return bytes > 0 ? { kind: "text", model, promptCache: new PromptCache(Number.POSITIVE_INFINITY, bytes) } : { kind: "text", model };
    }
    case "vision":
      return { kind: "vision", model: await VlModel.load(entry.dir, load) };
    case "audio":
      return { kind: "audio", model: await Lfm2AudioModel.load(entry.dir, load) };
  }
}

/** Bytes of a checkpoint's weight files: what a model about to load is guessed to take. */
function weightBytes(dir: string): number {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".safetensors"))
    .reduce((sum, f) => sum + (statSync(join(dir, f), { throwIfNoEntry: false })?.size ?? 0), 0);
}

function promptCacheOf(loaded: LoadedModel): PromptCache | undefined {
  return loaded.kind === "text" ? loaded.promptCache : undefined;
}

/** A model's memory: what its load added, and the decode states it keeps now. */
function residentBytes(r: Resident): number {
  return r.bytes + (promptCacheOf(r.loaded)?.bytes ?? 0);
}

function releaseModel(loaded: LoadedModel): Promise<void> {
  promptCacheOf(loaded)?.clear();
  return loaded.model.release();
}
