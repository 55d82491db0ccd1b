/**
 * A PyLate (Sentence Transformers) ColBERT folder, read the way PyLate's `models.ColBERT` reads it:
 *
 *   modules.json                       the pipeline: one Transformer, then Dense layers in order
 *   <transformer path>/                config.json, model.safetensors, tokenizer files (path "" = the root)
 *   sentence_bert_config.json          the Transformer's settings; a `modality_config` with "message"
 *                                      means Sentence Transformers ≥ 6 renders every text through the
 *                                      chat template (what the fixture's PyLate 1.4 did)
 *   N_Dense/config.json + model.safetensors   `linear.weight` [out, in], optional `linear.bias`,
 *                                      activation, `use_residual` (`residual.weight` when in ≠ out)
 *   config_sentence_transformers.json  prefixes, lengths, query expansion, skiplist
 *
 * Settings resolve as in PyLate (`colbert.py`): the config file's value when present and not null,
 * else PyLate's default. Modules other than Transformer and Dense (Pooling, Normalize) are dropped,
 * as PyLate drops them. Stanford-NLP checkpoints (no modules.json, `artifact.metadata`) are not
 * LFM2 models and are not read.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type ConfigJson, ConfigFields, isObject, readJsonObject } from "../text-core/config-fields.ts";
import { LfmError } from "../text-core/errors.ts";

/** PyLate's defaults (`pylate/models/colbert.py`), used for keys the config does not set. */
export const PYLATE_DEFAULTS = {
  queryPrefix: "[Q] ",
  documentPrefix: "[D] ",
  queryLength: 32,
  documentLength: 180,
  doQueryExpansion: true,
  attendToExpansionTokens: false,
  /** Python's `string.punctuation`. */
  skiplistWords: [..."!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"],
} as const;

export interface PylateSettings {
  /** Added token inserted after BOS; "" inserts nothing. */
  queryPrefix: string;
  documentPrefix: string;
  /** Total query tokens (prefix included); queries are padded to it when expansion is on. */
  queryLength: number;
  /** Maximum document tokens (prefix included). */
  documentLength: number;
  doQueryExpansion: boolean;
  /** Expansion positions are attended to (attention mask 1) instead of only attending. */
  attendToExpansionTokens: boolean;
  /** Tokens whose document vectors are dropped after encoding (they still feed attention). */
  skiplistWords: string[];
  /** `prompts[default_prompt_name]`, prepended to every text as Sentence Transformers does; "" if none. */
  prompt: string;
}

export type DenseActivation = "identity" | "tanh" | "relu" | "gelu" | "sigmoid" | "silu" | "leaky_relu";

export interface DenseLayerSpec {
  /** Folder of the layer relative to the model folder, e.g. "1_Dense"; also the prefix of its graph values. */
  path: string;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
  activation: DenseActivation;
  /** `y = act(Wx + b) + x` (or `+ Rx` with `residual.weight` when the widths differ). */
  useResidual: boolean;
  /** Absolute path of the layer's weights. */
  weightsFile: string;
}

/** How the Transformer module turns a text into tokens. */
export type InputFormat =
  | { kind: "text" }
  /** Sentence Transformers ≥ 6 with a "message" modality: one user message through the chat template. */
  | { kind: "message"; content: "structured" | "flat" };

export interface PylateFolder {
  dir: string;
  /** Folder of the LFM2 backbone and its tokenizer. */
  backboneDir: string;
  dense: DenseLayerSpec[];
  settings: PylateSettings;
  inputFormat: InputFormat;
  /** `do_lower_case` of the Transformer module. */
  lowercase: boolean;
}

type Json = ConfigJson;

const REMEDY = "Restore the file published with the model.";

/** A PyLate JSON file; absent optional ones are undefined. */
function readJson(file: string, what: string, required: true): Json;
function readJson(file: string, what: string, required: false): Json | undefined;
function readJson(file: string, what: string, required: boolean): Json | undefined {
  const hint = "Copy the complete PyLate model folder.";
  return required ? readJsonObject(file, { what, hint }) : readJsonObject(file, { what, hint, optional: true });
}

const isString = (v: unknown): v is string => typeof v === "string";

/** Prefixes, lengths, expansion and skiplist from `config_sentence_transformers.json`. */
export function parsePylateSettings(raw: Json, file: string): PylateSettings {
  const d = PYLATE_DEFAULTS;
  const f = new ConfigFields(raw, file, REMEDY);
  const doQueryExpansion = f.bool("do_query_expansion", d.doQueryExpansion);
  const prompts = f.get("prompts") ?? {};
  if (!isObject(prompts)) throw f.invalid("prompts", "must be an object of name → prompt text", prompts);
  let prompt = "";
  if (f.has("default_prompt_name")) {
    const promptName = f.str("default_prompt_name");
    const text = prompts[promptName];
    if (!isString(text)) throw f.invalid("default_prompt_name", `must be a key of "prompts" (${Object.keys(prompts).join(", ") || "none"})`, promptName);
    prompt = text;
  }
  return {
    queryPrefix: f.str("query_prefix", d.queryPrefix),
    documentPrefix: f.str("document_prefix", d.documentPrefix),
    queryLength: f.int("query_length", d.queryLength, 2),
    documentLength: f.int("document_length", d.documentLength, 2),
    doQueryExpansion,
    // PyLate: without expansion there is nothing to attend to.
    attendToExpansionTokens: doQueryExpansion && f.bool("attend_to_expansion_tokens", d.attendToExpansionTokens),
    skiplistWords: f.stringList("skiplist_words", d.skiplistWords),
    prompt,
  };
}

/** The last segment of a dotted Python path: "torch.nn.modules.linear.Identity" → "Identity". */
const lastSegment = (path: string) => path.slice(path.lastIndexOf(".") + 1);

const ACTIVATIONS: Record<string, DenseActivation> = {
  Identity: "identity",
  Tanh: "tanh",
  ReLU: "relu",
  GELU: "gelu",
  Sigmoid: "sigmoid",
  SiLU: "silu",
  LeakyReLU: "leaky_relu",
};

function parseDense(dir: string, path: string, moduleType: string): DenseLayerSpec {
  const folder = join(dir, path);
  const file = join(folder, "config.json");
  const f = new ConfigFields(readJson(file, `the configuration of Dense layer ${path}`, true), file, REMEDY);
  // PyLate's Dense defaults to Identity; a Sentence Transformers Dense (converted by PyLate) to Tanh.
  const defaultActivation = moduleType.startsWith("pylate.") ? "torch.nn.modules.linear.Identity" : "torch.nn.modules.activation.Tanh";
  const activationPath = f.str("activation_function", defaultActivation);
  const activation = ACTIVATIONS[lastSegment(activationPath)];
  if (activation === undefined) {
    throw new LfmError(
      "CONFIG_INVALID",
      `${file}: activation "${activationPath}" is not supported (supported: ${Object.keys(ACTIVATIONS).join(", ")}).`,
    );
  }
  const weightsFile = join(folder, "model.safetensors");
  if (!existsSync(weightsFile)) {
    const hint = existsSync(join(folder, "pytorch_model.bin"))
      ? " Only pytorch_model.bin is there: pickled PyTorch weights are not read; save the model again with safetensors (PyLate's default)."
      : " Copy the complete model folder.";
    throw new LfmError("FILE_NOT_FOUND", `Dense layer ${path} has no weights: ${weightsFile} is missing.${hint}`);
  }
  return {
    path,
    inFeatures: f.int("in_features"),
    outFeatures: f.int("out_features"),
    bias: f.bool("bias", true),
    activation,
    useResidual: f.bool("use_residual", false),
    weightsFile,
  };
}

/** The Transformer module's `sentence_bert_config.json`: does it render texts as chat messages? */
function parseTransformerConfig(backboneDir: string): { inputFormat: InputFormat; lowercase: boolean } {
  const file = join(backboneDir, "sentence_bert_config.json");
  const f = new ConfigFields(readJson(file, "the Transformer module settings", false) ?? {}, file, REMEDY);
  const lowercase = f.bool("do_lower_case", false);
  const processing = f.get("processing_kwargs");
  if (processing !== undefined && (!isObject(processing) || Object.keys(processing).length > 0)) {
    throw new LfmError("CONFIG_INVALID", `${file}: "processing_kwargs" are not supported; remove them or encode with Sentence Transformers.`);
  }
  // Saved before Sentence Transformers 6 (no modality_config): plain text, as ST itself assumes.
  if (!f.has("modality_config")) return { inputFormat: { kind: "text" }, lowercase };
  const modalities = f.block("modality_config").raw;
  const message = modalities.message;
  if (message === undefined) {
    if (!("text" in modalities)) throw f.invalid("modality_config", 'must be an object with a "text" or "message" entry', modalities);
    return { inputFormat: { kind: "text" }, lowercase };
  }
  const format = isObject(message) ? message.format : undefined;
  return { inputFormat: { kind: "message", content: format === "flat" ? "flat" : "structured" }, lowercase };
}

/** Reads a PyLate ColBERT folder; `FILE_NOT_FOUND` / `CONFIG_INVALID` name the file and what to do. */
export function loadPylateFolder(dir: string): PylateFolder {
  const modulesFile = join(dir, "modules.json");
  if (!existsSync(modulesFile)) {
    throw new LfmError(
      "FILE_NOT_FOUND",
      `${dir} has no modules.json, so it is not a PyLate ColBERT folder (expected modules.json, 1_Dense/ and ` +
        `config_sentence_transformers.json beside the LFM2 weights). For a plain LFM2 language model use \`lfm generate\`.`,
    );
  }
  let modules: unknown;
  try {
    modules = JSON.parse(readFileSync(modulesFile, "utf8"));
  } catch (e) {
    throw new LfmError("CONFIG_INVALID", `${modulesFile} is not valid JSON (${(e as Error).message}); re-download it.`, { cause: e });
  }
  if (!Array.isArray(modules) || !modules.every((m) => isObject(m) && isString(m.type) && isString(m.path))) {
    throw new LfmError("CONFIG_INVALID", `${modulesFile} must be a list of {"idx", "name", "path", "type"} modules.`);
  }
  const ordered = [...(modules as Json[])].sort((a, b) => Number(a.idx ?? 0) - Number(b.idx ?? 0));
  const kind = (m: Json) => lastSegment(m.type as string);
  const transformers = ordered.filter((m) => kind(m) === "Transformer");
  if (transformers.length !== 1 || ordered[0] !== transformers[0]) {
    throw new LfmError("CONFIG_INVALID", `${modulesFile} must start with exactly one Transformer module (found: ${ordered.map(kind).join(", ") || "none"}).`);
  }
  const backboneDir = join(dir, transformers[0].path as string);
  const dense = ordered.filter((m) => kind(m) === "Dense").map((m) => parseDense(dir, m.path as string, m.type as string));
  if (dense.length === 0) {
    throw new LfmError(
      "CONFIG_INVALID",
      `${modulesFile} lists no Dense projection: PyLate would add a randomly initialised one, so this is a base model, not a trained ColBERT.`,
    );
  }
  for (let i = 1; i < dense.length; i++) {
    if (dense[i].inFeatures !== dense[i - 1].outFeatures) {
      throw new LfmError(
        "CONFIG_INVALID",
        `Dense layer ${dense[i].path} takes ${dense[i].inFeatures} features but ${dense[i - 1].path} gives ${dense[i - 1].outFeatures}.`,
      );
    }
  }
  if (!statSync(backboneDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new LfmError("FILE_NOT_FOUND", `The Transformer module's folder ${backboneDir} (modules.json path "${transformers[0].path}") does not exist.`);
  }
  const stFile = join(dir, "config_sentence_transformers.json");
  const settings = parsePylateSettings(readJson(stFile, "the ColBERT settings", false) ?? {}, stFile);
  return { dir, backboneDir, dense, settings, ...parseTransformerConfig(backboneDir) };
}
