/**
 * What every `lfm` command shares: flag parsing with typed errors, the common flags, and small
 * readers. Commands live in their own files and are listed in `commands.ts`.
 */
import { readFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import { threadCount } from "../text-core/runtime.ts";
import type { FinishReason, GenerateOptions } from "../text-core/generate.ts";
import { type Precision, isPrecision } from "../text-core/graph/precision.ts";
import type { ResponseFormat, ToolChoice } from "../text-core/structured/response-format.ts";
import { toolSignature } from "../text-core/structured/tool-grammar.ts";

/** A command reachable as `lfm <name>`: `run` returns the exit status (errors are thrown as LfmError). */
export interface CliCommand {
  name: string;
  /** One line for `lfm --help`. */
  summary: string;
  /** The text of `lfm <name> --help`. */
  help: string;
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

export type Values = Record<string, string | boolean | undefined>;

export function parse(args: string[], options: ParseArgsConfig["options"]): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values: values as Values, positionals };
  } catch (e) {
    throw new LfmError("INVALID_ARGUMENT", `${(e as Error).message}. See --help.`);
  }
}

export function num(v: Values, key: string, kind: "int" | "float"): number | undefined {
  const raw = v[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(n) || (kind === "int" && !Number.isInteger(n))) {
    throw new LfmError("INVALID_ARGUMENT", `--${key} expects ${kind === "int" ? "an integer" : "a number"}, got "${String(raw)}".`);
  }
  return n;
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

export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new LfmError("FILE_NOT_FOUND", `cannot read ${what} file ${path}.`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LfmError("INVALID_ARGUMENT", `${what} file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}


/** The load options every model command takes from the common flags (progress lines on a terminal, not with --json). */
export function loadFlags(v: Values): { precision?: Precision; threads?: number; cacheDir?: string | false; onProgress?: (stage: string) => void } {
  const tty = process.stderr.isTTY && !v.json;
  return {
    precision: precisionOf(v),
    // checked here too, so a bad value fails before any graph is built
    threads: v.threads === undefined ? undefined : threadCount(num(v, "threads", "int")),
    cacheDir: v["no-cache"] ? false : (v["cache-dir"] as string | undefined),
    onProgress: tty ? (stage) => process.stderr.write(`\x1b[2m${stage}…\x1b[0m\n`) : undefined,
  };
}

/** The generation flags as options; the model applies its generation_config.json under them (greedy without one). */
export function generationOptions(model: { stopTokenIds: number[] }, v: Values, signal: AbortSignal): GenerateOptions {
  const extraStops = typeof v.stop === "string" ? idList(v.stop, "stop") : [];
  return {
    maxTokens: num(v, "max-tokens", "int") ?? 256,
    temperature: num(v, "temperature", "float"),
    topK: num(v, "top-k", "int"),
    topP: num(v, "top-p", "float"),
    minP: num(v, "min-p", "float"),
    repetitionPenalty: num(v, "repetition-penalty", "float"),
    seed: num(v, "seed", "int"),
    stopTokenIds: [...model.stopTokenIds, ...extraStops],
    signal,
  };
}

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
  else if (typeof v.grammar === "string") responseFormat = { type: "grammar", ebnf: readTextFile(v.grammar, "--grammar") };
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

function readTextFile(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw new LfmError("FILE_NOT_FOUND", `cannot read ${what} file ${path}.`);
  }
}
