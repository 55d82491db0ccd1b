/**
 * A loaded LFM2-VL model — matches HF `Lfm2VlForConditionalGeneration`: the LFM2 language core
 * (a `TextModel`, unchanged) whose input embeddings at the `<image>` positions are replaced, in
 * order, by the image features of every crop of every image of the prompt. Everything text-only
 * (stop ids, sampling defaults, streaming, the chat template and its errors) is the TextModel's;
 * this class adds the images.
 *
 *   messages → chat template (an image part renders as `<image>`) → each `<image>` expanded by the
 *   image processor → ids;  images → crops → ImageEncoder → features [T, D];
 *   generate(ids, overrides = { rows where id == image_token_id, features })
 */
import { join } from "node:path";
import type { ChatMessage, ContentPart, ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import type { FinishReason } from "../text-core/generate.ts";
import type { GenerationDefaults } from "../text-core/generation-config.ts";
import { type Precision, precisionOption, promptEncoderPrecision } from "../text-core/graph/precision.ts";
import { type LoadOptions, type Completion, type StreamedToken, type TextGenerateOptions, TextModel } from "../text-core/model.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import type { ForwardRequest, Lfm2Runtime } from "../text-core/runtime.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
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

/** The TextModel's generation options (sampling, limits, `responseFormat`, `tools`/`toolChoice`); the image rows are this class's. */
export type VlGenerateOptions = Omit<TextGenerateOptions, "promptOverrides">;

/** `tools` are also rendered into the prompt. */
export type VlChatOptions = VlGenerateOptions;

/** What `describe` asks when no prompt is given. */
export const DEFAULT_DESCRIBE_PROMPT = "Describe this image.";

export class VlModel {
  private constructor(
    readonly config: Lfm2VlConfig,
    /** The language core; its prompt rows at `<image>` are replaced by image features. */
    readonly textModel: TextModel,
    readonly encoder: ImageEncoder,
    readonly imageProcessor: ImageProcessorConfig,
    private readonly imageOptions: PreprocessOptions,
  ) {}

  static async load(path: string, opts: VlLoadOptions = {}): Promise<VlModel> {
    const dir = resolveModelDir(path);
    const progress = opts.onProgress ?? (() => {});
    const config = parseLfm2VlConfig(readConfigJson(dir), join(dir, "config.json"));
    const imageProcessor = readImageProcessorConfig(dir);
    checkProcessorMatchesModel(imageProcessor, config);
    const precision = precisionOption(opts.precision, "q4");
    const towerPrecision = precisionOption(opts.visionPrecision, promptEncoderPrecision(precision), "visionPrecision");
    const textModel = await TextModel.loadLanguageCore(dir, config.text, {
      precision,
      threads: opts.threads,
      cacheDir: opts.cacheDir,
      prefillChunk: opts.prefillChunk,
      onProgress: progress,
    });
    try {
      const encoder = await ImageEncoder.load(dir, config, { precision: towerPrecision, threads: opts.threads, cacheDir: opts.cacheDir, cropsPerCall: opts.cropsPerCall, onProgress: progress });
      return new VlModel(config, textModel, encoder, imageProcessor, opts.image ?? {});
    } catch (e) {
      await textModel.release();
      throw e;
    }
  }

  get dir(): string {
    return this.textModel.dir;
  }

  get tokenizer(): Lfm2Tokenizer {
    return this.textModel.tokenizer;
  }

  get runtime(): Lfm2Runtime {
    return this.textModel.runtime;
  }

  /** The language core's stop ids: the config's EOS plus `<|im_end|>` when the vocabulary has it. */
  get stopTokenIds(): number[] {
    return this.textModel.stopTokenIds;
  }

  /** The sampling `generation_config.json` asks for (greedy without one). */
  get generationDefaults(): GenerationDefaults {
    return this.textModel.generationDefaults;
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

  /** Streams new tokens with their text (never half a UTF-8 character); returns why generation ended. */
  async *stream(prompt: ImagePrompt, opts: VlGenerateOptions = {}): AsyncGenerator<StreamedToken, FinishReason> {
    const promptOverrides = await this.prefillOverrides(prompt);
    return yield* this.textModel.stream(prompt.promptIds, { ...opts, promptOverrides });
  }

  async complete(prompt: ImagePrompt, opts: VlGenerateOptions = {}): Promise<Completion> {
    const promptOverrides = await this.prefillOverrides(prompt);
    return this.textModel.complete(prompt.promptIds, { ...opts, promptOverrides });
  }

  /** The chat text with one `<image>` per image part (not yet expanded), BOS included. */
  renderChat(messages: readonly VlChatMessage[], opts: { tools?: ToolDefinition[] } = {}): string {
    // The template only needs to know where an image goes; the pixels stay here.
    const forTemplate: ChatMessage[] = messages.map((m) => ({
      role: m.role,
      content: typeof m.content === "string" ? m.content : m.content.map((p): ContentPart => (p.type === "image" ? { type: "image" } : p)),
    }));
    return this.textModel.renderChat(forTemplate, { tools: opts.tools });
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
  async *chat(messages: readonly VlChatMessage[], opts: VlChatOptions = {}): AsyncGenerator<{ id: number; text: string }, FinishReason> {
    // `tools` go to both: the template renders them, and a `toolChoice` constrains the reply to them.
    return yield* this.stream(await this.prepareChat(messages, { tools: opts.tools }), opts);
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
    await this.textModel.release();
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
