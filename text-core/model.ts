/**
 * A loaded LFM2 language model: checkpoint folder → config, tokenizer, chat template, built graph
 * (cached on disk) and runtime. What the CLI and the pipelines use.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChatTemplate, type ChatMessage, type ToolDefinition } from "./chat.ts";
import { type Lfm2Config, loadLfm2Config } from "./config.ts";
import { LfmError } from "./errors.ts";
import { type GenerateOptions, generate, generateBatch } from "./generate.ts";
import { cacheWriteError, cachedGraph, defaultCacheDir, discardCachedGraph, graphCacheKey } from "./graph-cache.ts";
import { type Precision, precisionOption } from "./graph/precision.ts";
import type { WeightSource } from "./graph/weights.ts";
import type { GraphBuilder } from "./graph/builder.ts";
import { EMBEDDINGS_FILE, buildLfm2Graph, findTextPrefix, type Lfm2GraphOptions, lfm2GraphIO } from "./lfm2.ts";
import { resolveModelDir } from "./model-dir.ts";
import type { InferenceSession } from "onnxruntime-node";
import { Lfm2Runtime, createSession } from "./runtime.ts";
import { EmbeddingTable } from "./embeddings.ts";
import { Checkpoint, checkFloatDType } from "./safetensors.ts";
import { Lfm2Tokenizer } from "./tokenizer.ts";

export interface LoadOptions {
  /** Weight precision of the big MatMuls: "q4" (default, fastest), "q8", or "fp32" (reference parity). */
  precision?: Precision;
  /** Intra-op threads (default: physical cores). */
  threads?: number;
  /** Where built graphs are cached; `false` builds in a temporary folder removed after loading. */
  cacheDir?: string | false;
  /** "hidden" returns final-normed hidden states instead of logits (ColBERT backbone). */
  head?: Lfm2GraphOptions["head"];
  /** Longest piece a prompt runs in (default 128): bounds attention's working memory. */
  prefillChunk?: number;
  exposeHidden?: boolean;
  /** Called with a short description of each loading stage. */
  onProgress?: (stage: string) => void;
}

/** Adapts a checkpoint to the graph builder's weight interface. */
export function checkpointWeights(ck: Checkpoint): WeightSource & { names(): string[] } {
  return {
    has: (name) => ck.has(name),
    // Every tensor the builder asks the shape of is one it will read as float: a quantised or
    // integer tensor fails here, while shapes are checked, not midway through the build.
    shape: (name) => {
      const info = ck.info(name);
      checkFloatDType(info);
      return info.shape;
    },
    readFloat32: (name) => ck.readFloat32(name),
    readFloat32Rows: (name, start, count) => ck.readFloat32Rows(name, start, count),
    dtype: (name) => ck.info(name).dtype,
    names: () => ck.names(),
  };
}

export interface Completion {
  promptIds: number[];
  ids: number[];
  text: string;
}

export class TextModel {
  private constructor(
    readonly dir: string,
    readonly config: Lfm2Config,
    readonly tokenizer: Lfm2Tokenizer,
    readonly runtime: Lfm2Runtime,
    private readonly template: ChatTemplate | undefined,
  ) {}

  static async load(path: string, opts: LoadOptions = {}): Promise<TextModel> {
    const dir = resolveModelDir(path);
    const progress = opts.onProgress ?? (() => {});
    const config = loadLfm2Config(dir);
    const tokenizer = await Lfm2Tokenizer.fromDir(dir);
    const template = loadChatTemplate(dir, tokenizer);
    const graphOptions: Lfm2GraphOptions = {
      precision: precisionOption(opts.precision, "q4"),
      head: opts.head ?? "logits",
      exposeHidden: opts.exposeHidden ?? false,
    };
    const runtime = await buildRuntime(dir, config, graphOptions, opts, progress);
    return new TextModel(dir, config, tokenizer, runtime, template);
  }

  /** Stop ids: the config's EOS plus `<|im_end|>` when the vocabulary has it. */
  get stopTokenIds(): number[] {
    const ids = new Set(this.config.eosTokenIds);
    const imEnd = this.tokenizer.tokenToId("<|im_end|>");
    if (imEnd !== undefined) ids.add(imEnd);
    return [...ids];
  }

  renderChat(messages: ChatMessage[], opts: { tools?: ToolDefinition[]; addGenerationPrompt?: boolean } = {}): string {
    if (!this.template) {
      throw new LfmError("CHAT_TEMPLATE_MISSING", `${this.dir} has no chat template (chat_template.jinja or tokenizer_config.json "chat_template"); use generate with a plain prompt.`);
    }
    return this.template.render(messages, { addGenerationPrompt: true, ...opts });
  }

  chatIds(messages: ChatMessage[], opts: { tools?: ToolDefinition[] } = {}): number[] {
    return this.tokenizer.encode(this.renderChat(messages, opts), { addSpecialTokens: false });
  }

  /** Streams new tokens with their text (never half a UTF-8 character). */
  async *stream(promptIds: number[], opts: GenerateOptions = {}): AsyncGenerator<{ id: number; text: string }> {
    const decoder = this.tokenizer.createStreamDecoder({ skipSpecialTokens: true });
    for await (const t of generate(this.runtime, promptIds, { stopTokenIds: this.stopTokenIds, ...opts })) {
      yield { id: t.id, text: decoder.push(t.id) };
    }
    const rest = decoder.flush();
    if (rest) yield { id: -1, text: rest };
  }

  async complete(promptIds: number[], opts: GenerateOptions = {}): Promise<Completion> {
    const ids: number[] = [];
    for await (const t of generate(this.runtime, promptIds, { stopTokenIds: this.stopTokenIds, ...opts })) ids.push(t.id);
    return { promptIds, ids, text: this.tokenizer.decode(ids, { skipSpecialTokens: true }) };
  }

  async completeBatch(prompts: number[][], opts: GenerateOptions = {}): Promise<Completion[]> {
    const all = await generateBatch(this.runtime, prompts, { stopTokenIds: this.stopTokenIds, ...opts });
    return all.map((ids, i) => ({ promptIds: prompts[i], ids, text: this.tokenizer.decode(ids, { skipSpecialTokens: true }) }));
  }

  /** Plain-text prompt: tokenised with BOS, as HF `tokenizer(text)` does. */
  encodePrompt(text: string): number[] {
    if (text.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty; pass some text.");
    return this.tokenizer.encode(text);
  }

  chat(messages: ChatMessage[], opts: GenerateOptions & { tools?: ToolDefinition[] } = {}): AsyncGenerator<{ id: number; text: string }> {
    return this.stream(this.chatIds(messages, { tools: opts.tools }), opts);
  }

  async release(): Promise<void> {
    await this.runtime.release();
  }
}

/** The tokenizer's chat template compiled; a syntax error is `CHAT_TEMPLATE_INVALID` naming the file it came from. */
function loadChatTemplate(dir: string, tokenizer: Lfm2Tokenizer): ChatTemplate | undefined {
  const source = tokenizer.chatTemplate;
  if (!source) return undefined;
  try {
    return new ChatTemplate(source, { bosToken: tokenizer.bosToken ?? "", eosToken: tokenizer.eosToken ?? "" });
  } catch (e) {
    if (!(e instanceof LfmError)) throw e;
    const jinja = join(dir, "chat_template.jinja");
    const where = existsSync(jinja) ? jinja : `${join(dir, "tokenizer_config.json")} ("chat_template")`;
    const message = e.message.replace(/\.*$/, ".");
    throw new LfmError(e.code, `${where}: ${message} Restore the template published with the checkpoint.`, { cause: e });
  }
}

/** A built graph opened: its session and its embedding table. */
export interface OpenedGraph {
  session: InferenceSession;
  embeddings: EmbeddingTable;
  /** The model.onnx the session runs (absent when built in a temporary folder). */
  graphPath?: string;
}

/**
 * Finds the graph of `files` + `options` in the cache (building it with `build` when absent) and
 * opens it. A cached graph that cannot be opened (damaged on disk, edited by hand) is built once
 * more. With `cacheDir: false` it is built in a temporary folder removed once opened.
 */
export async function openCachedGraph(spec: {
  kind: string;
  files: string[];
  options: unknown;
  build: () => GraphBuilder;
  vocabSize: number;
  hiddenSize: number;
  cacheDir?: string | false;
  threads?: number;
  progress?: (stage: string) => void;
}): Promise<OpenedGraph> {
  const progress = spec.progress ?? (() => {});
  let cacheRoot: string;
  try {
    cacheRoot = spec.cacheDir === false ? mkdtempSync(join(tmpdir(), `lfm2-${spec.kind}-graph-`)) : (spec.cacheDir ?? defaultCacheDir());
  } catch (e) {
    throw cacheWriteError(tmpdir(), e);
  }
  const build = () => {
    progress("building the ONNX graph from the checkpoint");
    return spec.build();
  };
  const open = async (graphDir: string): Promise<OpenedGraph> => {
    const embeddings = EmbeddingTable.open(join(graphDir, EMBEDDINGS_FILE), spec.vocabSize, spec.hiddenSize);
    try {
      const session = await createSession(join(graphDir, "model.onnx"), { threads: spec.threads });
      return { session, embeddings, graphPath: spec.cacheDir === false ? undefined : join(graphDir, "model.onnx") };
    } catch (e) {
      embeddings.close();
      throw e;
    }
  };
  try {
    const key = graphCacheKey(spec.kind, spec.files, spec.options, cacheRoot);
    const cached = cachedGraph(cacheRoot, key, build);
    progress("loading the graph into onnxruntime");
    try {
      return await open(cached.dir);
    } catch (e) {
      if (cached.built) throw e;
      progress("the cached graph is unreadable; rebuilding it");
      discardCachedGraph(cached.dir);
      return await open(cachedGraph(cacheRoot, key, build).dir);
    }
  } finally {
    // The files of an open session may go: onnxruntime has read the graph, and the table's
    // descriptor stays valid after its file is removed.
    if (spec.cacheDir === false && existsSync(cacheRoot)) rmSync(cacheRoot, { recursive: true, force: true });
  }
}

/** Builds (or finds in the cache) the graph for `dir` and opens an onnxruntime session on it. */
export async function buildRuntime(
  dir: string,
  config: Lfm2Config,
  graphOptions: Lfm2GraphOptions,
  opts: Pick<LoadOptions, "cacheDir" | "threads" | "prefillChunk">,
  progress: (stage: string) => void = () => {},
): Promise<Lfm2Runtime> {
  const ck = Checkpoint.open(dir);
  try {
    const weights = checkpointWeights(ck);
    const prefix = findTextPrefix(weights);
    const opened = await openCachedGraph({
      kind: "lfm2",
      files: [join(dir, "config.json"), ...ck.files],
      options: graphOptions,
      build: () => buildLfm2Graph(config, weights, prefix, graphOptions).builder,
      vocabSize: config.vocabSize,
      hiddenSize: config.hiddenSize,
      cacheDir: opts.cacheDir,
      threads: opts.threads,
      progress,
    });
    return new Lfm2Runtime(opened.session, config, lfm2GraphIO(config, graphOptions), opened.embeddings, opened.graphPath, { prefillChunk: opts.prefillChunk });
  } finally {
    ck.close();
  }
}
