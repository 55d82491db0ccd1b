/**
 * Text side of LFM2-VL (transformers' `Lfm2VlProcessor`): every `<image>` the chat template writes
 * becomes the image's placeholder string,
 *
 *   <|image_start|> [<|img_row_R_col_C|> <image>×tile_tokens]… [<|img_thumbnail|> <image>×thumb_tokens] <|image_end|>
 *   <|image_start|> <image>×view_tokens <|image_end|>                      (an image that is not tiled)
 *
 * and the expanded text is tokenised without adding BOS again. Labels are geometric (row = y,
 * col = x), as in transformers ≥ 5 (4.57 and older transposed them on non-square grids). With
 * `use_image_special_tokens` off only the `<image>` runs remain.
 */
import { LfmError } from "../text-core/errors.ts";
import { type ChatMessage, type ChatRenderOptions, ChatTemplate } from "../text-core/chat.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import type { ImageProcessorConfig } from "./processor-config.ts";
import type { ImageGeometry } from "./tiling.ts";

export const IMAGE_TOKEN = "<image>";
export const IMAGE_START_TOKEN = "<|image_start|>";
export const IMAGE_END_TOKEN = "<|image_end|>";
export const IMAGE_THUMBNAIL_TOKEN = "<|img_thumbnail|>";

export function tileLabelToken(row: number, col: number): string {
  return `<|img_row_${row}_col_${col}|>`;
}

/** The text that replaces one `<image>` for an image of this geometry. */
export function imagePlaceholder(geometry: ImageGeometry, cfg: Pick<ImageProcessorConfig, "useImageSpecialTokens">): string {
  const special = cfg.useImageSpecialTokens;
  const parts: string[] = [];
  if (special) parts.push(IMAGE_START_TOKEN);
  for (const crop of geometry.crops) {
    if (special && crop.kind === "tile") parts.push(tileLabelToken(crop.row, crop.col));
    if (special && crop.kind === "thumbnail") parts.push(IMAGE_THUMBNAIL_TOKEN);
    parts.push(IMAGE_TOKEN.repeat(crop.tokens));
  }
  if (special) parts.push(IMAGE_END_TOKEN);
  return parts.join("");
}

/** Number of `<image>` markers in `text`. */
export function countImageTokens(text: string): number {
  return text.split(IMAGE_TOKEN).length - 1;
}

/**
 * Replaces the i-th `<image>` of `text` by `placeholders[i]`. `IMAGE_COUNT_MISMATCH` when the
 * text has a different number of `<image>` markers than images were given.
 */
export function expandImagePlaceholders(text: string, placeholders: readonly string[]): string {
  const pieces = text.split(IMAGE_TOKEN);
  const markers = pieces.length - 1;
  if (markers !== placeholders.length) {
    throw new LfmError(
      "IMAGE_COUNT_MISMATCH",
      `The prompt has ${markers} image placeholder${markers === 1 ? "" : "s"} (${IMAGE_TOKEN}) but ${placeholders.length} ` +
        `image${placeholders.length === 1 ? " was" : "s were"} given. Give one image per image part of the messages ` +
        `(and do not write "${IMAGE_TOKEN}" in message text).`,
    );
  }
  let out = pieces[0];
  for (let i = 0; i < placeholders.length; i++) out += placeholders[i] + pieces[i + 1];
  return out;
}

/** A prompt with its images expanded: the text and its token ids. */
export interface VisionPrompt {
  text: string;
  ids: number[];
}

/**
 * Tokenises a text that already holds one `<image>` per image (e.g. a rendered chat), expanding
 * each into its placeholder. BOS is not added (the chat template writes it), as in HF's processor.
 */
export function encodeVisionText(tokenizer: Lfm2Tokenizer, text: string, images: readonly { placeholder: string }[]): VisionPrompt {
  const expanded = expandImagePlaceholders(text, images.map((i) => i.placeholder));
  return { text: expanded, ids: tokenizer.encode(expanded, { addSpecialTokens: false }) };
}

/**
 * Chat messages (image parts in content lists) → the prompt ids with every image expanded.
 * `images[i]` belongs to the i-th image part in message order. The template is the tokenizer's
 * chat template unless `opts.template` gives another.
 */
export function renderVisionChat(
  tokenizer: Lfm2Tokenizer,
  messages: readonly ChatMessage[],
  images: readonly { placeholder: string }[],
  opts: ChatRenderOptions & { template?: ChatTemplate } = {},
): VisionPrompt {
  const parts = messages.reduce(
    (n, m) => n + (typeof m.content === "string" ? 0 : m.content.filter((p) => p.type === "image").length),
    0,
  );
  if (parts !== images.length) {
    throw new LfmError(
      "IMAGE_COUNT_MISMATCH",
      `The messages have ${parts} image part${parts === 1 ? "" : "s"} but ${images.length} image${images.length === 1 ? " was" : "s were"} given; ` +
        `give exactly one processed image per {type: "image"} part, in order.`,
    );
  }
  const { template = ChatTemplate.fromTokenizer(tokenizer), ...renderOpts } = opts;
  return encodeVisionText(tokenizer, template.render(messages, renderOpts), images);
}
