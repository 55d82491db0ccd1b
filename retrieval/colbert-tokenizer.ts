/**
 * Text → model input ids exactly as PyLate's `ColBERT.preprocess` produces them (no model here):
 *
 *   ids   = tokenizer(text, truncation to L−1)        BOS + text tokens  (L = query/document length)
 *           or, for a "message" Transformer, the chat template render of one user message,
 *           truncated to L−1 with the template's tail (`<|im_end|>\n`) written back over the last
 *           tokens (Sentence Transformers 6 `_restore_chat_template_suffix`)
 *   query = ids padded to L−1 with the expansion token when query expansion is on
 *   ids   = [ids[0], PREFIX, ids[1:]]                  the prefix is one added token, not text
 *
 * The expansion token is the tokenizer's mask token, else its EOS (PyLate sets `pad_token_id` so).
 * Expansion positions get attention mask 0 unless `attend_to_expansion_tokens`. Kept vectors:
 * every query position with expansion (else the real ones); document positions that are real and
 * not skiplist tokens.
 */
import type { ChatMessage, ChatTemplate } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import type { Lfm2Tokenizer } from "../text-core/tokenizer.ts";
import type { InputFormat, PylateSettings } from "./pylate-config.ts";

/** One text ready for the model. */
export interface ColbertInput {
  ids: number[];
  /** 1 where the model attends to the position, 0 at expansion tokens that are not attended to. */
  mask: number[];
  /** Positions whose vectors are returned. */
  keep: boolean[];
  /** Expansion tokens at the end (queries with query expansion). */
  expansion: number;
}

export interface ColbertTokenizerOptions {
  settings: PylateSettings;
  inputFormat: InputFormat;
  lowercase: boolean;
  /** Needed for the "message" input format. */
  template?: ChatTemplate;
  /** The tokenizer_config.json mask token, if the tokenizer has one. */
  maskToken?: string;
  /** Rows of the embedding table: every id must be below it. */
  vocabSize: number;
}

export class ColbertTokenizer {
  readonly queryPrefixId: number | undefined;
  readonly documentPrefixId: number | undefined;
  /** Fills queries up to `queryLength` (and pads batches). */
  readonly expansionId: number;
  readonly skiplistIds: ReadonlySet<number>;
  readonly settings: PylateSettings;
  private readonly chatSuffix: number[];

  constructor(
    private readonly tokenizer: Lfm2Tokenizer,
    private readonly opts: ColbertTokenizerOptions,
  ) {
    const { settings } = opts;
    this.settings = settings;
    this.queryPrefixId = this.prefixId(settings.queryPrefix, "query_prefix");
    this.documentPrefixId = this.prefixId(settings.documentPrefix, "document_prefix");
    const mask = opts.maskToken === undefined ? undefined : tokenizer.tokenToId(opts.maskToken);
    this.expansionId = mask ?? tokenizer.eosTokenId;
    // PyLate: convert_tokens_to_ids(word); words that are no single token match nothing.
    this.skiplistIds = new Set(settings.skiplistWords.map((w) => tokenizer.tokenToId(w)).filter((id): id is number => id !== undefined));
    if (opts.inputFormat.kind === "message" && opts.template === undefined) {
      throw new LfmError(
        "CHAT_TEMPLATE_MISSING",
        "sentence_bert_config.json renders texts as chat messages (modality_config has \"message\"), but the tokenizer has no chat template; restore chat_template.jinja.",
      );
    }
    this.chatSuffix = opts.inputFormat.kind === "message" ? this.templateSuffix() : [];
  }

  private prefixId(prefix: string, key: string): number | undefined {
    if (prefix === "") return undefined;
    const id = this.tokenizer.tokenToId(prefix);
    if (id === undefined || id >= this.opts.vocabSize) {
      throw new LfmError(
        "TOKENIZER_INVALID",
        `${key} ${JSON.stringify(prefix)} is not a token of the model's vocabulary: PyLate adds it to tokenizer.json (and a row to ` +
          `the embeddings) when it saves a model. This folder's tokenizer files do not belong to the ColBERT weights.`,
      );
    }
    return id;
  }

  query(text: string): ColbertInput {
    const { queryLength, doQueryExpansion, attendToExpansionTokens } = this.settings;
    const prefix = this.queryPrefixId;
    const width = prefix === undefined ? queryLength : queryLength - 1;
    const ids = this.truncated(text, width);
    const mask = ids.map(() => 1);
    const expansion = doQueryExpansion ? width - ids.length : 0;
    for (let i = 0; i < expansion; i++) {
      ids.push(this.expansionId);
      mask.push(attendToExpansionTokens ? 1 : 0);
    }
    const input = withPrefix(ids, mask, prefix);
    return { ...input, keep: input.ids.map((_, i) => doQueryExpansion || input.mask[i] === 1), expansion };
  }

  document(text: string): ColbertInput {
    const prefix = this.documentPrefixId;
    const ids = this.truncated(text, prefix === undefined ? this.settings.documentLength : this.settings.documentLength - 1);
    const input = withPrefix(ids, ids.map(() => 1), prefix);
    return { ...input, keep: input.ids.map((id) => !this.skiplistIds.has(id)), expansion: 0 };
  }

  /** The text's ids (specials included) cut to `maxLength` as the HF tokenizer cuts them. */
  private truncated(rawText: string, maxLength: number): number[] {
    let text = this.settings.prompt + rawText;
    if (this.opts.lowercase) text = text.toLowerCase();
    if (this.opts.inputFormat.kind === "message") {
      const ids = this.tokenizer.encode(this.render(text), { addSpecialTokens: false });
      if (ids.length < maxLength) return ids;
      const cut = ids.slice(0, maxLength);
      const tail = this.chatSuffix.slice(-Math.min(this.chatSuffix.length, maxLength));
      cut.splice(maxLength - tail.length, tail.length, ...tail);
      return cut;
    }
    // Specials (BOS) are kept and the text tokens are cut: HF's truncation with add_special_tokens.
    const full = this.tokenizer.encode(text);
    const bare = this.tokenizer.encode(text, { addSpecialTokens: false });
    const specials = full.length - bare.length;
    if (full.length <= maxLength) return full;
    const head = specialsBefore(full, bare);
    return [...full.slice(0, head), ...bare.slice(0, Math.max(0, maxLength - specials)), ...full.slice(head + bare.length)];
  }

  private render(text: string): string {
    const content: ChatMessage["content"] = this.opts.inputFormat.kind === "message" && this.opts.inputFormat.content === "flat" ? text : [{ type: "text", text }];
    return (this.opts.template as ChatTemplate).render([{ role: "user", content }], { addGenerationPrompt: false });
  }

  /**
   * The ids the template writes after the content: the longest common token suffix of two renders
   * with different contents (Sentence Transformers 6 `_chat_template_suffix_ids`).
   */
  private templateSuffix(): number[] {
    const a = this.tokenizer.encode(this.render("0"), { addSpecialTokens: false });
    const b = this.tokenizer.encode(this.render("1 2 3 4"), { addSpecialTokens: false });
    let n = 0;
    while (n < Math.min(a.length, b.length) && a[a.length - 1 - n] === b[b.length - 1 - n]) n++;
    return n > 0 && n < Math.min(a.length, b.length) ? a.slice(a.length - n) : [];
  }
}

/** PyLate's `insert_prefix_token`: the prefix goes after position 0 (BOS), attended to. */
function withPrefix(ids: number[], mask: number[], prefix: number | undefined): { ids: number[]; mask: number[] } {
  if (prefix === undefined) return { ids, mask };
  return { ids: [...ids.slice(0, 1), prefix, ...ids.slice(1)], mask: [...mask.slice(0, 1), 1, ...mask.slice(1)] };
}

/** How many special tokens the post-processor put before the text's own tokens. */
function specialsBefore(full: number[], bare: number[]): number {
  for (let head = 0; head + bare.length <= full.length; head++) {
    if (bare.every((id, i) => full[head + i] === id)) return head;
  }
  return 0;
}
