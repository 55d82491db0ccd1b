/**
 * What every `lfm` command shares: flag parsing with typed errors, the common flags, and small
 * readers. Commands live in their own files and are listed in `commands.ts`.
 */
import { availableParallelism } from "node:os";
import type { ParseArgsConfig } from "node:util";
import type { ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import { maxThreads, threadCount } from "../text-core/runtime.ts";
import type { FinishReason, GenerateOptions } from "../text-core/generate.ts";
import { type Precision, isPrecision } from "../text-core/graph/precision.ts";
import type { ResponseFormat, ToolChoice } from "../text-core/structured/response-format.ts";
import { toolSignature } from "../text-core/structured/tool-grammar.ts";
import { type FlagOptions, type FlagRange, type Values, floatRange, intRange, numberFlag, parseFlags } from "./flags.ts";
import { STDIN_NAME, readTextFile, readTextInput } from "./input-source.ts";

/** A command reachable as `lfm <name>`: `run` returns the exit status (errors are thrown as LfmError). */
export interface CliCommand {
  name: string;
  /** One line for `lfm --help`. */
  summary: string;
  /** The text of `lfm <name> --help`. */
  help: string;
  /** The flags `run` parses; test/cli/command-help.test.ts checks that `help` names each. */
  options: FlagOptions;
  run(args: string[], signal: AbortSignal): Promise<number>;
}

export const COMMON = {
  model: { type: "string" },
  precision: { type: "string" },
  threads: { type: "string" },
  json: { type: "boolean" },
  "cache-dir": { type: "string" },
  "no-cache": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

export const SAMPLING = {
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  "min-p": { type: "string" },
  "repetition-penalty": { type: "string" },
  seed: { type: "string" },
  stop: { type: "string" },
} as const satisfies ParseArgsConfig["options"];

/** The structured-output flags of generate, chat and describe (at most one of them). */
export const STRUCTURED = {
  "json-schema": { type: "string" },
  "json-object": { type: "boolean" },
  grammar: { type: "string" },
  regex: { type: "string" },
} as const satisfies ParseArgsConfig["options"];

/** chat's flag beside --tools. */
export const TOOL_CHOICE = { "tool-choice": { type: "string" } } as const satisfies ParseArgsConfig["options"];

export const STRUCTURED_HELP = `Structured output (at most one; the reply is constrained token by token):
  --json-schema FILE.json  JSON valid under the schema in FILE (compact; see docs/structured-output.md)
  --json-object            Any JSON object
  --grammar FILE.ebnf      A string of the EBNF grammar in FILE (xgrammar's dialect, a \`root\` rule)
  --regex R                A full match of the regular expression R
  If --max-tokens runs out before the output is complete, the output is printed and lfm exits 2
  with OUTPUT_INCOMPLETE.`;

export type { Values } from "./flags.ts";

/** The flags and positionals of `args`; a mistake is INVALID_ARGUMENT in lfm's words (flags.ts). */
export function parse(args: string[], options: ParseArgsConfig["options"]): { values: Values; positionals: string[] } {
  return parseFlags(args, options ?? {});
}

/**
 * The range of every numeric flag, stated once: errors and help texts quote them. Upper bounds
 * sit far above any useful value; they keep a typo (an extra zero or three) from asking for
 * hours of work or gigabytes of memory.
 */
export const RANGES = {
  /** New tokens (0: the prompt only); the model's context caps it in any case. */
  maxTokens: intRange(0, 1_000_000),
  temperature: floatRange(0, 100),
  /** 0 = off. */
  topK: intRange(0, 1_000_000),
  topP: floatRange(0, 1, true),
  minP: floatRange(0, 1),
  repetitionPenalty: floatRange(0, 100, true),
  /** The sampler's generator takes 32 bits: larger seeds would repeat smaller ones. */
  seed: intRange(0, 2 ** 32 - 1),
  /** Audio frames, tokens and steps of the audio commands: at least one. */
  audioSteps: intRange(1, 1_000_000),
  /** Audio code sampling: top-k of at least one code. */
  audioTopK: intRange(1, 1_000_000),
  /** Recording length limit: a day at most. */
  maxMinutes: floatRange(0, 24 * 60, true),
  /** Pixels of one input image: 10 gigapixels at most (30 GB of RGB). */
  maxInputPixels: intRange(1, 10_000_000_000),
} as const;

/** The numeric flag `--<key>` checked against `range` (see RANGES); undefined when absent. */
export function num(v: Values, key: string, range: FlagRange): number | undefined {
  return numberFlag(v, key, range);
}

export function idList(raw: string, flag: string): number[] {
  const parts = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const ids = parts.map(Number);
  if (ids.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new LfmError("INVALID_ARGUMENT", `--${flag} expects comma-separated non-negative integers, got "${raw}".`);
  }
  return ids;
}

/** `--precision` (or `--<flag>`), checked; undefined when absent, so each model's loader picks its default. */
export function precisionOf(v: Values, flag = "precision"): Precision | undefined {
  const p = v[flag] as string | undefined;
  if (p === undefined) return undefined;
  if (!isPrecision(p)) throw new LfmError("INVALID_ARGUMENT", `--${flag} must be fp32, q8 or q4 (got "${p}").`);
  return p;
}

/** A JSON file (regular, UTF-8, bounded: input-source.ts), parsed; "-" reads standard input with readJsonInput. */
export function readJsonFile(path: string, what: string): unknown {
  return parseJsonText(readTextFile(path, `${what} file`), path, what);
}

/** A JSON file, or standard input for "-" (`--messages -`). */
export async function readJsonInput(path: string, what: string): Promise<unknown> {
  return parseJsonText(await readTextInput(path, `${what} file`), path === STDIN_NAME ? "standard input" : path, what);
}

function parseJsonText(text: string, where: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LfmError("INVALID_ARGUMENT", `${what} file ${where} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The load options every model command takes from the common flags (progress lines on a terminal, not with --json). */
export function loadFlags(v: Values): { precision?: Precision; threads?: number; cacheDir?: string | false; onProgress?: (stage: string) => void } {
  const tty = process.stderr.isTTY && !v.json;
  return {
    precision: precisionOf(v),
    // checked here too, so a bad value fails before any graph is built
    threads: threadsOf(v),
    cacheDir: v["no-cache"] ? false : (v["cache-dir"] as string | undefined),
    onProgress: tty ? (stage) => process.stderr.write(`\x1b[2m${stage}…\x1b[0m\n`) : undefined,
  };
}

/** `--threads`, 1 to maxThreads() (runtime.ts: more only costs memory and start-up time). */
export function threadsOf(v: Values): number | undefined {
  const threads = numberFlag(v, "threads", intRange(1, maxThreads()), `this machine has ${availableParallelism()} logical cores`);
  return threads === undefined ? undefined : threadCount(threads);
}

/**
 * The common flags and the generation flags, checked: a command calls this before it loads a
 * model or prints anything, so a bad value is the only output.
 */
export function checkGenerationFlags(v: Values): void {
  precisionOf(v);
  threadsOf(v);
  generationOptions({ stopTokenIds: [] }, v, new AbortController().signal);
}

/** The generation flags as options; the model applies its generation_config.json under them (greedy without one). */
export function generationOptions(model: { stopTokenIds: number[] }, v: Values, signal: AbortSignal): GenerateOptions {
  const extraStops = typeof v.stop === "string" ? idList(v.stop, "stop") : [];
  return {
    maxTokens: num(v, "max-tokens", RANGES.maxTokens) ?? 256,
    temperature: num(v, "temperature", RANGES.temperature),
    topK: num(v, "top-k", RANGES.topK),
    topP: num(v, "top-p", RANGES.topP),
    minP: num(v, "min-p", RANGES.minP),
    repetitionPenalty: num(v, "repetition-penalty", RANGES.repetitionPenalty),
    seed: num(v, "seed", RANGES.seed),
    stopTokenIds: [...model.stopTokenIds, ...extraStops],
    signal,
  };
}

/** The sampling part of a command's help, with each flag's range. */
export const SAMPLING_HELP = `Sampling (defaults come from the checkpoint's generation_config.json, else greedy):
  --max-tokens N           New tokens at most (default 256; 0 to ${RANGES.maxTokens.max})
  --temperature T          0 = greedy (0 to ${RANGES.temperature.max})
  --top-k K                0 = off (0 to ${RANGES.topK.max})
  --top-p P                Above 0, at most 1
  --min-p P                0 to 1
  --repetition-penalty R   Above 0, at most ${RANGES.repetitionPenalty.max} (1 = off)
  --seed S                 Reproducible sampling (0 to ${RANGES.seed.max})
  --stop ID[,ID...]        Extra stop token ids (the config's EOS and <|im_end|> always stop)`;

/** What the structured-output flags ask of one reply: options for the library, and whether the output is bound to complete. */
export interface StructuredFlags {
  responseFormat?: ResponseFormat;
  toolChoice?: ToolChoice;
  /** A response format or a forced tool call: output cut by --max-tokens is then an error. */
  mustComplete: boolean;
}

/**
 * `--json-schema`/`--json-object`/`--grammar`/`--regex` and `--tool-choice` → `responseFormat` and
 * `toolChoice`, checked before any model is loaded. `tools` is what --tools gave (undefined without it).
 */
export function structuredFlags(v: Values, tools?: readonly ToolDefinition[]): StructuredFlags {
  const given = (["json-schema", "json-object", "grammar", "regex"] as const).filter((f) => v[f] !== undefined && v[f] !== false);
  if (given.length > 1) throw new LfmError("INVALID_ARGUMENT", `give one output format, not ${given.map((f) => `--${f}`).join(" and ")}.`);
  let responseFormat: ResponseFormat | undefined;
  if (typeof v["json-schema"] === "string") responseFormat = { type: "json_schema", schema: readJsonFile(v["json-schema"], "--json-schema") };
  else if (v["json-object"] === true) responseFormat = { type: "json_object" };
  else if (typeof v.grammar === "string") responseFormat = { type: "grammar", ebnf: readTextFile(v.grammar, "--grammar file") };
  else if (typeof v.regex === "string") responseFormat = { type: "regex", pattern: v.regex };

  const choice = v["tool-choice"];
  if (typeof choice !== "string") return { responseFormat, mustComplete: responseFormat !== undefined };
  if (tools === undefined) throw new LfmError("INVALID_ARGUMENT", "--tool-choice needs --tools FILE.json.");
  if (responseFormat) throw new LfmError("INVALID_ARGUMENT", `--tool-choice and --${given[0]} cannot both constrain one reply; pick one.`);
  if (choice === "required" || choice === "auto") return { toolChoice: choice, mustComplete: choice === "required" };
  const names = tools.map((t, i) => toolSignature(t, i).name);
  if (!names.includes(choice)) {
    throw new LfmError("INVALID_ARGUMENT", `--tool-choice must be required, auto or one of the tools' names (${names.join(", ")}); got "${choice}".`);
  }
  return { toolChoice: { name: choice }, mustComplete: true };
}

/** After the output is printed: a constrained reply cut short by --max-tokens is an error (exit 2). */
export function checkComplete(structured: StructuredFlags, finishReason: FinishReason): void {
  if (structured.mustComplete && finishReason === "length") {
    throw new LfmError("OUTPUT_INCOMPLETE", "the output hit --max-tokens before the grammar was complete; raise --max-tokens.");
  }
}
