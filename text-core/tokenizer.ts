/**
 * The LFM2 tokenizer: `tokenizer.json` + `tokenizer_config.json` (+ `chat_template.jinja`) from a
 * Hugging Face folder, run by `@huggingface/tokenizers`. Matches transformers' `AutoTokenizer`:
 * `encode(text)` prepends BOS like `tokenizer(text)` (the `TemplateProcessing` post-processor),
 * `decode` keeps or skips the special added tokens like `tokenizer.decode`.
 *
 * Where the library and transformers differ, this wrapper follows transformers:
 * - `decode([])` is `""` (the library throws on an empty list);
 * - ids the vocabulary does not have are skipped, like the Rust `tokenizers` decode (the library
 *   would look up `unk_token`, which byte-level BPE has none of);
 * - `clean_up_tokenization_spaces` defaults to false, as in transformers ≥ 4.45 (the library
 *   defaults to true); LFM2 configs set it to false anyway.
 *
 * `createStreamDecoder` turns ids into text one at a time without ever emitting half a UTF-8
 * character (byte-level BPE splits emoji and CJK characters across tokens).
 */
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { isObject } from "./config-fields.ts";
import { LfmError } from "./errors.ts";

export interface EncodeOptions {
  /** Prepend BOS as `tokenizer(text)` does. Default true. Chat text rendered by the template
   *  already starts with BOS: encode it with `addSpecialTokens: false`. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special added tokens (`<|im_end|>`, `<|startoftext|>`, …). Default false. */
  skipSpecialTokens?: boolean;
}

/** Turns ids into text incrementally; see `Lfm2Tokenizer.createStreamDecoder`. */
export interface StreamDecoder {
  /** Adds one id; returns the text that became final since the last call (often `""`). */
  push(id: number): string;
  /** Returns whatever is still held back (an incomplete character decodes as U+FFFD, as in
   *  `decode`) and resets the decoder. */
  flush(): string;
}

type JsonObject = { [key: string]: unknown };

const REPLACEMENT_CHAR = "\uFFFD";

export class Lfm2Tokenizer {
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string | undefined;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number | undefined;
  /** Number of entries, added tokens included (`len(tokenizer)` in transformers). */
  readonly vocabSize: number;
  /** Ids of the special added tokens (what `skipSpecialTokens` drops). */
  readonly specialTokenIds: ReadonlySet<number>;
  /** Jinja source: `chat_template.jinja` if present, else `tokenizer_config.json`'s `chat_template`. */
  readonly chatTemplate: string | undefined;

  private readonly inner: Tokenizer;
  private readonly cleanUpTokenizationSpaces: boolean;

  private constructor(
    inner: Tokenizer,
    config: JsonObject,
    chatTemplate: string | undefined,
    source: string,
  ) {
    this.inner = inner;
    this.chatTemplate = chatTemplate;
    this.cleanUpTokenizationSpaces = config.clean_up_tokenization_spaces === true;
    this.vocabSize = inner.get_vocab(true).size;

    const special = new Set<number>();
    for (const [id, token] of inner.get_added_tokens_decoder()) if (token.special) special.add(id);

    const resolve = (key: string, required: boolean): [string, number] | undefined => {
      const token = specialTokenContent(config[key]);
      if (token === undefined) {
        if (!required) return undefined;
        throw new LfmError(
          "TOKENIZER_INVALID",
          `${source}: tokenizer_config.json has no "${key}"; an LFM2 tokenizer names it ` +
            `(e.g. "bos_token": "<|startoftext|>", "eos_token": "<|im_end|>").`,
        );
      }
      const id = inner.token_to_id(token);
      if (id === undefined) {
        throw new LfmError(
          "TOKENIZER_INVALID",
          `${source}: ${key} "${token}" from tokenizer_config.json is not in tokenizer.json's vocabulary; ` +
            `the two files do not belong together.`,
        );
      }
      special.add(id);
      return [token, id];
    };
    [this.bosToken, this.bosTokenId] = resolve("bos_token", true)!;
    [this.eosToken, this.eosTokenId] = resolve("eos_token", true)!;
    const pad = resolve("pad_token", false);
    this.padToken = pad?.[0];
    this.padTokenId = pad?.[1];
    this.specialTokenIds = special;
  }

  /**
   * Loads `tokenizer.json` and `tokenizer_config.json` (both required) and, if present,
   * `chat_template.jinja` from a model folder.
   */
  static async fromDir(dir: string): Promise<Lfm2Tokenizer> {
    const tokenizerJson = await readJsonFile(path.join(dir, "tokenizer.json"), "the tokenizer (vocabulary, merges, pre-tokenizer)");
    const tokenizerConfig = await readJsonFile(
      path.join(dir, "tokenizer_config.json"),
      "the tokenizer settings (bos_token, eos_token, optionally chat_template)",
    );
    let chatTemplate: string | undefined;
    try {
      chatTemplate = await readFile(path.join(dir, "chat_template.jinja"), "utf8");
    } catch (e) {
      if (!isNotFound(e)) throw cannotRead(path.join(dir, "chat_template.jinja"), e);
    }
    return Lfm2Tokenizer.fromJson(tokenizerJson, tokenizerConfig, { chatTemplate, source: dir });
  }

  /**
   * Builds the tokenizer from already-parsed `tokenizer.json` and `tokenizer_config.json`.
   * `chatTemplate` (the `chat_template.jinja` text) wins over the config's `chat_template`.
   */
  static fromJson(
    tokenizerJson: unknown,
    tokenizerConfig: unknown,
    opts: { chatTemplate?: string; source?: string } = {},
  ): Lfm2Tokenizer {
    const source = opts.source ?? "tokenizer";
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
      throw new LfmError("TOKENIZER_INVALID", `${source}: tokenizer.json has no "model" object; expected a Hugging Face fast-tokenizer file.`);
    }
    if (!isObject(tokenizerConfig)) {
      throw new LfmError("TOKENIZER_INVALID", `${source}: tokenizer_config.json is not a JSON object.`);
    }
    let inner: Tokenizer;
    try {
      inner = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (e) {
      throw new LfmError(
        "TOKENIZER_INVALID",
        `${source}: @huggingface/tokenizers could not build the tokenizer (${errorText(e)}).`,
        { cause: e },
      );
    }
    const chatTemplate = opts.chatTemplate ?? chatTemplateFromConfig(tokenizerConfig.chat_template, source);
    return new Lfm2Tokenizer(inner, tokenizerConfig, chatTemplate, source);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.inner.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter((id) => this.inner.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    return this.inner.decode(known, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpTokenizationSpaces,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  /**
   * Incremental detokenizer (the prefix/read-offset scheme of text-generation-inference and
   * transformers' `TextStreamer`). It keeps a small window of ids: `prefix` (already emitted,
   * decoded again only as context) and the pending ids after it. Each push decodes the window;
   * if the text ends in U+FFFD the last character is still incomplete and is held back,
   * otherwise the text beyond the prefix is emitted and the window moves on. The window only
   * grows while a character is incomplete (≤ 4 byte tokens), so a push costs O(1).
   *
   * Because the window always restarts at a character boundary, the concatenation of every push
   * and the final flush equals `decode(allIds)` (with `clean_up_tokenization_spaces` off, as in
   * LFM2; the cleanup rules look across token boundaries).
   */
  createStreamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    let window: number[] = [];
    let readOffset = 0; // window[0, readOffset) is the prefix, already emitted
    let prefixText = "";
    const decodeWindow = () => this.decode(window, opts);
    return {
      push: (id: number): string => {
        window.push(id);
        const text = decodeWindow();
        if (text.length <= prefixText.length || text.endsWith(REPLACEMENT_CHAR)) return "";
        const fresh = text.slice(prefixText.length);
        window = window.slice(readOffset);
        readOffset = window.length;
        prefixText = decodeWindow();
        return fresh;
      },
      flush: (): string => {
        const text = decodeWindow();
        const rest = text.length > prefixText.length ? text.slice(prefixText.length) : "";
        window = [];
        readOffset = 0;
        prefixText = "";
        return rest;
      },
    };
  }
}

/** `chat_template` in tokenizer_config.json: a string, or a list of `{name, template}` (pick "default"). */
function chatTemplateFromConfig(value: unknown, source: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value.filter(
      (t): t is { name: string; template: string } => isObject(t) && typeof t.name === "string" && typeof t.template === "string",
    );
    return named.find((t) => t.name === "default")?.template;
  }
  throw new LfmError(
    "TOKENIZER_INVALID",
    `${source}: tokenizer_config.json "chat_template" must be a string or a list of {name, template}; got ${typeof value}.`,
  );
}

/** Special tokens appear as plain strings or, in older configs, as AddedToken dicts `{content}`. */
function specialTokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.content === "string") return value.content;
  return undefined;
}

async function readJsonFile(file: string, what: string): Promise<JsonObject> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (isNotFound(e)) {
      throw new LfmError(
        "FILE_NOT_FOUND",
        `${file} not found: expected ${what} there, as saved by transformers' tokenizer.save_pretrained().`,
        { cause: e },
      );
    }
    throw cannotRead(file, e);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new LfmError("TOKENIZER_INVALID", `${file} is not valid JSON (${errorText(e)}); re-download it.`, { cause: e });
  }
  if (!isObject(parsed)) {
    throw new LfmError("TOKENIZER_INVALID", `${file} must hold a JSON object.`);
  }
  return parsed;
}

/** A read failure other than "not found" (a folder in the file's place, no permission, I/O error). */
function cannotRead(file: string, e: unknown): LfmError {
  return new LfmError("FILE_NOT_FOUND", `Cannot read ${file}: ${errorText(e)}. It must be a readable file; re-download the checkpoint.`, { cause: e });
}

function isNotFound(e: unknown): boolean {
  return isObject(e) && e.code === "ENOENT";
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
