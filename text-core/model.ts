/**
 * A loaded LFM2 language model: checkpoint folder → config, tokenizer, chat template, built graph
 * (cached on disk) and runtime. What the CLI and the pipelines use.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ChatTemplate, type ChatMessage, type ToolDefinition } from "./chat.ts";
import { type Lfm2Config, loadLfm2Config } from "./config.ts";
import { LfmError } from "./errors.ts";
import { type FinishReason, type GenerateOptions, type PrefilledPrefix, collectTokens, generate, generateBatchRows, prefillPrefix } from "./generate.ts";
import { type GenerationDefaults, readGenerationDefaults, withGenerationDefaults } from "./generation-config.ts";
import { openCachedGraph } from "./graph-cache.ts";
import { DecodeBatcher } from "./decode-batcher.ts";
import { type ResponseFormat, type ToolChoice, compileStructuredOutput } from "./structured/response-format.ts";
import { type Precision, precisionOption } from "./graph/precision.ts";
import type { WeightSource } from "./graph/weights.ts";
import type { GraphBuilder } from "./graph/builder.ts";
import { EMBEDDINGS_FILE, buildLfm2Graph, findTextPrefix, type Lfm2GraphOptions, lfm2GraphIO } from "./lfm2.ts";
import { resolveModelDir } from "./model-dir.ts";
import type { InferenceSession } from "onnxruntime-node";
import { Lfm2Runtime, createSession } from "./runtime.ts";
import { EmbeddingTable } from "./embeddings.ts";
import { Checkpoint } from "./checkpoint.ts";
import { checkFloatDType } from "./safetensors.ts";
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

/** A checkpoint as the graph builders read it. */
export type CheckpointWeights = WeightSource & { names(): string[] };

/** Adapts a checkpoint to the graph builder's weight interface. */
export function checkpointWeights(ck: Checkpoint): CheckpointWeights {
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

/** A token of `TextModel.stream`: its text (never half a UTF-8 character), and with `logprobs`, its log-probability (see GeneratedToken). */
export interface StreamedToken {
  id: number;
  text: string;
  logprob?: number;
  topLogprobs?: { id: number; logprob: number }[];
}

export interface Completion {
  promptIds: number[];
  ids: number[];
  text: string;
  /** "stop": a stop token, or the grammar of a response format is complete; "length": maxTokens ran out first (constrained text is then unfinished). */
  finishReason: FinishReason;
  /** With `logprobs: true`: each new token's log-probability (see `GenerateOptions.logprobs`). */
  logprobs?: number[];
}

/** Generation options of `TextModel`: sampling, limits, and structured output. */
export interface TextGenerateOptions extends Omit<GenerateOptions, "constraint"> {
  /** Constrains the reply token by token to a JSON schema, any JSON object, an EBNF grammar or a regex. */
  responseFormat?: ResponseFormat;
  /** The tools the reply may call (`chat` also renders them into the prompt). */
  tools?: ToolDefinition[];
  /** With `tools`: "required"/{ name } constrains the reply to LFM2's call syntax, "auto" constrains a call once started. */
  toolChoice?: ToolChoice;
}

export class TextModel {
  private constructor(
    readonly dir: string,
    readonly config: Lfm2Config,
    readonly tokenizer: Lfm2Tokenizer,
    readonly runtime: Lfm2Runtime,
    private readonly template: ChatTemplate | undefined,
    /**
     * The sampling `generation_config.json` asks for (greedy without one), used for every option
     * a call leaves out.
     */
    readonly generationDefaults: GenerationDefaults,
  ) {}

  private batcher: DecodeBatcher | undefined;

  /**
   * This model's decode batcher (decode-batcher.ts): concurrent `stream`/`complete` calls given it
   * as `batcher` share their decode steps (what `lfm serve --max-batch` does).
   */
  get decodeBatcher(): DecodeBatcher {
    return (this.batcher ??= new DecodeBatcher(this.runtime));
  }

  static async load(path: string, opts: LoadOptions = {}): Promise<TextModel> {
    const dir = resolveModelDir(path);
    return TextModel.loadLanguageCore(dir, loadLfm2Config(dir), opts);
  }

  /**
   * The language model of checkpoint folder `dir` whose text config is `config`: what `load` does
   * once the config is read, and what a multimodal model (LFM2-VL) builds its text side from.
   */
  static async loadLanguageCore(dir: string, config: Lfm2Config, opts: LoadOptions = {}): Promise<TextModel> {
    const progress = opts.onProgress ?? (() => {});
    const generationDefaults = readGenerationDefaults(dir);
    const tokenizer = await Lfm2Tokenizer.fromDir(dir);
    const template = loadChatTemplate(dir, tokenizer);
    const graphOptions: Lfm2GraphOptions = {
      precision: precisionOption(opts.precision, "q4"),
      head: opts.head ?? "logits",
      exposeHidden: opts.exposeHidden ?? false,
    };
    const runtime = await buildRuntime(dir, config, graphOptions, opts, progress);
    return new TextModel(dir, config, tokenizer, runtime, template, generationDefaults);
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

  /**
   * The options a call runs with: this model's stop ids and sampling defaults under the caller's
   * options, and the compiled constraint of `responseFormat`/`toolChoice` (checked before any token).
   */
  async generationOptions(opts: TextGenerateOptions = {}): Promise<GenerateOptions> {
    const { responseFormat, tools, toolChoice, ...rest } = opts;
    const constraint = await compileStructuredOutput(this.tokenizer, this.config.vocabSize, { responseFormat, tools, toolChoice });
    return { ...withGenerationDefaults(this.generationDefaults, { stopTokenIds: this.stopTokenIds, ...rest }), constraint };
  }

  /** Streams new tokens with their text (never half a UTF-8 character); returns why generation ended. */
  async *stream(promptIds: number[], opts: TextGenerateOptions = {}): AsyncGenerator<StreamedToken, FinishReason> {
    const decoder = this.tokenizer.createStreamDecoder({ skipSpecialTokens: true });
    const tokens = generate(this.runtime, promptIds, await this.generationOptions(opts));
    try {
      for (;;) {
        const step = await tokens.next();
        if (step.done) {
          const rest = decoder.flush();
          if (rest) yield { id: -1, text: rest };
          return step.value;
        }
        const { id, logprob, topLogprobs } = step.value;
        // With logprobs asked for, each token carries them on (a flush, id −1, has none).
        yield logprob === undefined ? { id, text: decoder.push(id) } : { id, text: decoder.push(id), logprob, ...(topLogprobs ? { topLogprobs } : {}) };
      }
    } finally {
      await tokens.return("stop"); // a consumer that stops early still releases the grammar matcher
    }
  }

  /**
   * Runs a fixed prompt prefix (system text, instructions) once; pass the result as `prefix` to
   * any call whose prompt starts with it, and only the rest of that prompt is run.
   */
  prefillPrefix(ids: readonly number[]): Promise<PrefilledPrefix> {
    return prefillPrefix(this.runtime, ids);
  }

  async complete(promptIds: number[], opts: TextGenerateOptions = {}): Promise<Completion> {
    const { ids, finishReason, logprobs } = await collectTokens(generate(this.runtime, promptIds, await this.generationOptions(opts)));
    const completion: Completion = { promptIds, ids, text: this.tokenizer.decode(ids, { skipSpecialTokens: true }), finishReason };
    if (opts.logprobs) completion.logprobs = logprobs ?? [];
    return completion;
  }

  async completeBatch(prompts: number[][], opts: TextGenerateOptions = {}): Promise<Completion[]> {
    const rows = await generateBatchRows(this.runtime, prompts, await this.generationOptions(opts));
    return rows.map(({ ids, finishReason }, i) => ({ promptIds: prompts[i], ids, text: this.tokenizer.decode(ids, { skipSpecialTokens: true }), finishReason }));
  }

  /** Plain-text prompt: tokenised with BOS, as HF `tokenizer(text)` does. */
  encodePrompt(text: string): number[] {
    if (text.length === 0) throw new LfmError("EMPTY_PROMPT", "the prompt is empty; pass some text.");
    return this.tokenizer.encode(text);
  }

  chat(messages: ChatMessage[], opts: TextGenerateOptions = {}): AsyncGenerator<{ id: number; text: string }, FinishReason> {
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
 * The cached LFM2-core graph of `files` + `options` (text model, ColBERT) opened with its
 * embedding table: `openCachedGraph` with the core's opener.
 */
export async function openLfm2Graph(spec: {
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
  return openCachedGraph({
    ...spec,
    stages: { build: "building the ONNX graph from the checkpoint", load: "loading the graph into onnxruntime", rebuild: "the cached graph is unreadable; rebuilding it" },
    open: async (graphDir) => {
      const embeddings = EmbeddingTable.open(join(graphDir, EMBEDDINGS_FILE), spec.vocabSize, spec.hiddenSize);
      try {
        const session = await createSession(join(graphDir, "model.onnx"), { threads: spec.threads });
        return { session, embeddings, graphPath: spec.cacheDir === false ? undefined : join(graphDir, "model.onnx") };
      } catch (e) {
        embeddings.close();
        throw e;
      }
    },
  });
}

/**
 * Runs `use` with the checkpoint in `dir` open, closing it after (a graph reads its weights only
 * while it is built), and the files its graph's cache key hashes: config.json and the weights.
 */
export async function withCheckpoint<T>(dir: string, use: (weights: CheckpointWeights, keyFiles: string[]) => Promise<T>): Promise<T> {
  const ck = Checkpoint.open(dir);
  try {
    return await use(checkpointWeights(ck), [join(dir, "config.json"), ...ck.files]);
  } finally {
    ck.close();
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
  return withCheckpoint(dir, async (weights, files) => {
    const prefix = findTextPrefix(weights);
    const opened = await openLfm2Graph({
      kind: "lfm2",
      files,
      options: graphOptions,
      build: () => buildLfm2Graph(config, weights, prefix, graphOptions).builder,
      vocabSize: config.vocabSize,
      hiddenSize: config.hiddenSize,
      cacheDir: opts.cacheDir,
      threads: opts.threads,
      progress,
    });
    return new Lfm2Runtime(opened.session, config, lfm2GraphIO(config, graphOptions), opened.embeddings, opened.graphPath, { prefillChunk: opts.prefillChunk });
  });
}
