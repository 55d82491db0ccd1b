/**
 * A loaded LFM2-VL model — matches HF `Lfm2VlForConditionalGeneration`: the LFM2 language core
 * (text-core, unchanged) whose input embeddings at the `<image>` positions are replaced, in
 * order, by the image features of every crop of every image of the prompt.
 *
 *   messages → chat template (an image part renders as `<image>`) → each `<image>` expanded by the
 *   image processor → ids;  images → crops → ImageEncoder → features [T, D];
 *   generate(ids, overrides = { rows where id == image_token_id, features })
 */
import { join } from "node:path";
import { ChatTemplate, type ChatMessage, type ContentPart, type ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import { type GenerateOptions, generate } from "../text-core/generate.ts";
import { type Precision, precisionOption, promptEncoderPrecision } from "../text-core/graph/precision.ts";
import { type LoadOptions, type Completion, buildRuntime } from "../text-core/model.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import type { ForwardRequest, Lfm2Runtime } from "../text-core/runtime.ts";
import { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import { readConfigJson } from "../text-core/config.ts";
import { ImageEncoder, type PatchCrop } from "./image-encoder.ts";
import { type PreprocessOptions, type ProcessedImage, preprocessImage } from "./preprocess.ts";
import { type ImageProcessorConfig, readImageProcessorConfig } from "./processor-config.ts";
import { encodeVisionText } from "./processor.ts";
import { type Lfm2VlConfig, parseLfm2VlConfig } from "./vl-config.ts";

/** An image is a file path or the file's bytes (JPEG, PNG, WebP, TIFF, GIF). */
export type ImageInput = string | Uint8Array;

export type VlContentPart = { type: "text"; text: string } | { type: "image"; image: ImageInput };

export interface VlChatMessage {
  role: ChatMessage["role"];
  content: string | VlContentPart[];
}

/** Token ids whose `<image>` positions are filled, in order, by the crops' features. */
export interface ImagePrompt {
  promptIds: number[];
  /** Every crop of every image, in prompt order (each image: its tiles, then its thumbnail). */
  crops: PatchCrop[];
}

export interface VlLoadOptions extends Pick<LoadOptions, "precision" | "threads" | "cacheDir" | "onProgress" | "prefillChunk"> {
  /**
   * Precision of the vision tower and projector: default "fp32" when `precision` is, else "q8".
   * Not q4 by default: a 512×512 tile is 1024 rows per MatMul, where onnxruntime's 8-bit integer
   * GEMM beats its 4-bit kernel (and float32) by 25–35% (docs/vision-model.md), for 6–9% more memory.
   */
  visionPrecision?: Precision;
  /** Crops per vision-encoder call (default 1: each crop unpadded). */
  cropsPerCall?: number;
  /** Image decoding limits and alpha handling for every image this model reads. */
  image?: PreprocessOptions;
}

export type VlGenerateOptions = Omit<GenerateOptions, "promptOverrides">;

export type VlChatOptions = VlGenerateOptions & { tools?: ToolDefinition[] };

/** What `describe` asks when no prompt is given. */
export const DEFAULT_DESCRIBE_PROMPT = "Describe this image.";

export class VlModel {
  private constructor(
    readonly dir: string,
    readonly config: Lfm2VlConfig,
    readonly tokenizer: Lfm2Tokenizer,
    /** The language core; its prompt rows at `<image>` are replaced by image features. */
    readonly runtime: Lfm2Runtime,
    readonly encoder: ImageEncoder,
    readonly imageProcessor: ImageProcessorConfig,
    private readonly template: ChatTemplate | undefined,
    private readonly imageOptions: PreprocessOptions,
  ) {}

  static async load(path: string, opts: VlLoadOptions = {}): Promise<VlModel> {
    const dir = resolveModelDir(path);
    const progress = opts.onProgress ?? (() => {});
    const config = parseLfm2VlConfig(readConfigJson(dir), join(dir, "config.json"));
    const imageProcessor = readImageProcessorConfig(dir);
    checkProcessorMatchesModel(imageProcessor, config);
    const tokenizer = await Lfm2Tokenizer.fromDir(dir);
    const template = tokenizer.chatTemplate === undefined ? undefined : ChatTemplate.fromTokenizer(tokenizer);
    const precision = precisionOption(opts.precision, "q4");
    const towerPrecision = precisionOption(opts.visionPrecision, promptEncoderPrecision(precision), "visionPrecision");
    const runtime = await buildRuntime(dir, config.text, { precision, head: "logits", exposeHidden: false }, opts, progress);
    try {
      const encoder = await ImageEncoder.load(dir, config, { precision: towerPrecision, threads: opts.threads, cacheDir: opts.cacheDir, cropsPerCall: opts.cropsPerCall, onProgress: progress });
      return new VlModel(dir, config, tokenizer, runtime, encoder, imageProcessor, template, opts.image ?? {});
    } catch (e) {
      await runtime.release();
      throw e;
    }
  }

  /** Stop ids: the config's EOS plus `<|im_end|>` when the vocabulary has it. */
  get stopTokenIds(): number[] {
    const ids = new Set(this.config.text.eosTokenIds);
    const imEnd = this.tokenizer.tokenToId("<|im_end|>");
    if (imEnd !== undefined) ids.add(imEnd);
    return [...ids];
  }

  /** Features [T, D] of the crops, in order. */
  encodeImages(crops: readonly PatchCrop[]): Promise<Float32Array> {
    return this.encoder.encode(crops);
  }

  /**
   * The prompt's `<image>` rows and the features that replace them (HF's masked_scatter: the k-th
   * `<image>` token gets feature row k). `IMAGE_COUNT_MISMATCH` when the counts differ.
   */
  imageOverrides(promptIds: readonly number[], features: Float32Array): NonNullable<ForwardRequest["overrides"]> {
    const D = this.config.text.hiddenSize;
    const index: number[] = [];
    promptIds.forEach((id, i) => {
      if (id === this.config.imageTokenId) index.push(i);
    });
    if (index.length * D !== features.length) {
      throw new LfmError(
        "IMAGE_COUNT_MISMATCH",
        `the prompt has ${index.length} image tokens (id ${this.config.imageTokenId}) but the images give ${features.length / D} features: ` +
          "each <image> placeholder must be expanded for exactly one of the images given, in order.",
      );
    }
    return { index, values: features };
  }

  /** Encodes the prompt's crops and returns the overrides for its prefill. */
  async prefillOverrides(prompt: ImagePrompt): Promise<NonNullable<ForwardRequest["overrides"]>> {
    const expected = this.encoder.tokenCount(prompt.crops);
    const found = prompt.promptIds.filter((id) => id === this.config.imageTokenId).length;
    if (expected !== found) {
      // Checked before encoding: a wrong prompt should not cost an encoder run.
      throw new LfmError(
        "IMAGE_COUNT_MISMATCH",
        `the prompt has ${found} image tokens (id ${this.config.imageTokenId}) but the ${prompt.crops.length} crops give ${expected} features: ` +
          "each <image> placeholder must be expanded for exactly one of the images given, in order.",
      );
    }
    return this.imageOverrides(prompt.promptIds, await this.encodeImages(prompt.crops));
  }

  /** Streams new tokens with their text (never half a UTF-8 character). */
  async *stream(prompt: ImagePrompt, opts: VlGenerateOptions = {}): AsyncGenerator<{ id: number; text: string }> {
    const promptOverrides = await this.prefillOverrides(prompt);
    const decoder = this.tokenizer.createStreamDecoder({ skipSpecialTokens: true });
    for await (const t of generate(this.runtime, prompt.promptIds, { stopTokenIds: this.stopTokenIds, ...opts, promptOverrides })) {
      yield { id: t.id, text: decoder.push(t.id) };
    }
    const rest = decoder.flush();
    if (rest) yield { id: -1, text: rest };
  }

  async complete(prompt: ImagePrompt, opts: VlGenerateOptions = {}): Promise<Completion> {
    const promptOverrides = await this.prefillOverrides(prompt);
    const ids: number[] = [];
    for await (const t of generate(this.runtime, prompt.promptIds, { stopTokenIds: this.stopTokenIds, ...opts, promptOverrides })) ids.push(t.id);
    return { promptIds: prompt.promptIds, ids, text: this.tokenizer.decode(ids, { skipSpecialTokens: true }) };
  }

  /** The chat text with one `<image>` per image part (not yet expanded), BOS included. */
  renderChat(messages: readonly VlChatMessage[], opts: { tools?: ToolDefinition[] } = {}): string {
    if (!this.template) {
      throw new LfmError("CHAT_TEMPLATE_MISSING", `${this.dir} has no chat template (chat_template.jinja or tokenizer_config.json "chat_template").`);
    }
    // The template only needs to know where an image goes; the pixels stay here.
    const forTemplate: ChatMessage[] = messages.map((m) => ({
      role: m.role,
      content: typeof m.content === "string" ? m.content : m.content.map((p): ContentPart => (p.type === "image" ? { type: "image" } : p)),
    }));
    return this.template.render(forTemplate, { addGenerationPrompt: true, tools: opts.tools });
  }

  /** Decodes and preprocesses one image with this checkpoint's settings. */
  preprocess(image: ImageInput): Promise<ProcessedImage> {
    return preprocessImage(image, this.imageProcessor, this.imageOptions);
  }

  /** Messages with image parts → the expanded prompt ids and every image's crops. */
  async prepareChat(messages: readonly VlChatMessage[], opts: { tools?: ToolDefinition[] } = {}): Promise<ImagePrompt> {
    const text = this.renderChat(messages, opts);
    const processed: ProcessedImage[] = [];
    for (const image of imagesOf(messages)) processed.push(await this.preprocess(image));
    const { ids } = encodeVisionText(this.tokenizer, text, processed);
    return { promptIds: ids, crops: processed.flatMap((p) => p.crops) };
  }

  /** Streams the reply to a conversation whose messages may hold images. */
  async *chat(messages: readonly VlChatMessage[], opts: VlChatOptions = {}): AsyncGenerator<{ id: number; text: string }> {
    const { tools, ...generation } = opts;
    yield* this.stream(await this.prepareChat(messages, { tools }), generation);
  }

  /** One user turn: the images, then the prompt text. */
  static describeMessages(images: readonly ImageInput[], prompt = DEFAULT_DESCRIBE_PROMPT): VlChatMessage[] {
    if (images.length === 0) throw new LfmError("INVALID_ARGUMENT", "describe needs at least one image.");
    return [{ role: "user", content: [...images.map((image): VlContentPart => ({ type: "image", image })), { type: "text", text: prompt }] }];
  }

  /** Describes (or answers `prompt` about) one or more images. */
  async describe(images: ImageInput | readonly ImageInput[], prompt?: string, opts: VlGenerateOptions = {}): Promise<Completion> {
    const list = typeof images === "string" || images instanceof Uint8Array ? [images] : images;
    return this.complete(await this.prepareChat(VlModel.describeMessages(list, prompt)), opts);
  }

  async release(): Promise<void> {
    await this.runtime.release();
    await this.encoder.release();
  }
}

/** The images of a conversation, in the order their `<image>` placeholders appear. */
export function imagesOf(messages: readonly VlChatMessage[]): ImageInput[] {
  const images: ImageInput[] = [];
  for (const [i, m] of messages.entries()) {
    if (typeof m.content === "string") continue;
    if (!Array.isArray(m.content)) throw new LfmError("INVALID_ARGUMENT", `message ${i}: content must be a string or a list of parts.`);
    for (const p of m.content) {
      if (p.type !== "image") continue;
      if (typeof p.image !== "string" && !(p.image instanceof Uint8Array)) {
        throw new LfmError("INVALID_ARGUMENT", `message ${i}: an image part needs "image": a file path or the file's bytes.`);
      }
      images.push(p.image);
    }
  }
  return images;
}

/** The processor's geometry must be the model's: a mismatch would misplace every feature. */
function checkProcessorMatchesModel(processor: ImageProcessorConfig, config: Lfm2VlConfig): void {
  const pairs: Array<[string, number, number]> = [
    ["encoder_patch_size", processor.encoderPatchSize, config.vision.patchSize],
    ["downsample_factor", processor.downsampleFactor, config.downsampleFactor],
  ];
  for (const [key, found, expected] of pairs) {
    if (found !== expected) {
      throw new LfmError("CONFIG_INVALID", `${processor.source}: "${key}" is ${found} but ${config.source} says ${expected}; use the processor config published with the checkpoint.`);
    }
  }
}
