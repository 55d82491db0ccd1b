/**
 * Reading a command's flags: node's `parseArgs`, after a pass of our own that takes a negative
 * number after a flag that wants a value as that value (`--seed -1`, `--temperature -0.5`, which
 * parseArgs refuses as "ambiguous"), and that words every argument error for a CLI user, naming
 * the flag — parseArgs's own messages are never shown. Numeric flags are read with a stated
 * range (`FlagRange`), so every out-of-range value is an INVALID_ARGUMENT naming the flag and
 * the range it accepts.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { LfmError } from "../text-core/errors.ts";

export type FlagOptions = NonNullable<ParseArgsConfig["options"]>;
export type Values = Record<string, string | boolean | undefined>;

/** "-1", "-0.5", "-.5", "-2e3", "-Infinity": a value, not a flag (num() then judges it). */
const NEGATIVE_NUMBER = /^-(?:\d|\.\d|Infinity$)/;

function invalid(message: string): LfmError {
  return new LfmError("INVALID_ARGUMENT", message);
}

/** The flag of `options` nearest to a mistyped `name` (at most two edits away), for a hint. */
function nearestFlag(name: string, options: FlagOptions): string | undefined {
  if (name.length < 3) return undefined; // a letter or two is close to too much
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of Object.keys(options)) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length];
}

function unknownFlag(written: string, name: string, options: FlagOptions): LfmError {
  const near = nearestFlag(name, options);
  return invalid(`unknown flag ${written}${near ? ` (did you mean --${near}?)` : ""}. See --help for this command's flags.`);
}

/**
 * `args` with every flag that takes a value written `--name=value` when the value starts with a
 * "-" that makes a negative number; every other argument error thrown as INVALID_ARGUMENT in
 * lfm's words. Short flags (`-k 5`) come out in their long form.
 */
export function normalizeArgs(args: readonly string[], options: FlagOptions): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      out.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      name = arg.slice(2, eq < 0 ? undefined : eq);
      inline = eq < 0 ? undefined : arg.slice(eq + 1);
      if (!Object.hasOwn(options, name)) throw unknownFlag(eq < 0 ? arg : arg.slice(0, eq), name, options);
    } else {
      if (NEGATIVE_NUMBER.test(arg)) {
        throw invalid(`"${arg}" is not a flag: a number belongs after its flag (--seed ${arg}), and a text that starts with "-" goes after "--" at the end (-- "${arg}").`);
      }
      const letter = arg[1];
      const found = Object.entries(options).find(([, o]) => o.short === letter);
      if (!found) throw unknownFlag(arg, letter, options);
      name = found[0];
      if (arg.length > 2) {
        if (found[1].type === "boolean") throw unknownFlag(arg, arg.slice(1), options);
        inline = arg.slice(2);
      }
    }
    const spec = options[name];
    if (spec.type === "boolean") {
      if (inline !== undefined) throw invalid(`--${name} takes no value (got "${arg}").`);
      out.push(`--${name}`);
      continue;
    }
    if (inline !== undefined) {
      out.push(`--${name}=${inline}`);
      continue;
    }
    const next = args[i + 1];
    if (next === undefined) throw invalid(`--${name} needs a value. See --help.`);
    if (next.startsWith("-") && next !== "-" && !NEGATIVE_NUMBER.test(next)) {
      throw invalid(`--${name} needs a value, but "${next}" follows it; to give a value that starts with "-", write --${name}=${next}.`);
    }
    out.push(`--${name}=${next}`);
    i++;
  }
  return out;
}

/** The flags and positional arguments of `args` under `options`; every mistake is INVALID_ARGUMENT. */
export function parseFlags(args: readonly string[], options: FlagOptions): { values: Values; positionals: string[] } {
  const normalized = normalizeArgs(args, options);
  try {
    const { values, positionals } = parseArgs({ args: normalized, options, allowPositionals: true, strict: true });
    return { values: values as Values, positionals };
  } catch (e) {
    // normalizeArgs has refused every case parseArgs knows; should one slip through, its code, not its prose.
    throw invalid(`the arguments could not be read (${(e as { code?: string }).code ?? "parse error"}). See --help.`);
  }
}

/** What a numeric flag accepts: a whole number or any number, between `min` and `max`. */
export interface FlagRange {
  kind: "int" | "float";
  min: number;
  max: number;
  /** `min` itself is refused (a value must be above it). */
  aboveMin?: boolean;
}

export const intRange = (min: number, max: number): FlagRange => ({ kind: "int", min, max });
export const floatRange = (min: number, max: number, aboveMin = false): FlagRange => ({ kind: "float", min, max, aboveMin });

/** The range in words, as the help texts and errors state it: "a whole number from 1 to 64". */
export function rangeText(r: FlagRange): string {
  if (r.kind === "int") return `a whole number from ${r.min} to ${r.max}`;
  return r.aboveMin ? `a number above ${r.min} and at most ${r.max}` : `a number from ${r.min} to ${r.max}`;
}

/** The numeric flag `--<flag>` within `range`; undefined when absent. */
export function numberFlag(v: Values, flag: string, range: FlagRange, note?: string): number | undefined {
  const raw = v[flag];
  if (raw === undefined) return undefined;
  const n = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
  const fits =
    Number.isFinite(n) &&
    (range.kind === "float" || Number.isInteger(n)) &&
    (range.aboveMin ? n > range.min : n >= range.min) &&
    n <= range.max;
  if (!fits) throw invalid(`${flagText(flag)} must be ${rangeText(range)}${note ? ` (${note})` : ""}; got "${String(raw)}".`);
  return n;
}

/** How a user writes the flag: `--max-tokens`, or `-k` for a one-letter one. */
export const flagText = (flag: string): string => (flag.length === 1 ? `-${flag}` : `--${flag}`);

/** Library option names that library errors may quote, and the flag a CLI user gives instead. */
const FLAG_OF_OPTION: Record<string, string> = {
  maxInputPixels: "--max-input-pixels",
  maxSeconds: "--max-minutes",
  maxTokens: "--max-tokens",
  maxSteps: "--max-tokens",
  maxFrames: "--max-frames",
  topK: "--top-k",
  topP: "--top-p",
  minP: "--min-p",
  repetitionPenalty: "--repetition-penalty",
};
const OPTION_NAME = new RegExp(`\\b(${Object.keys(FLAG_OF_OPTION).join("|")})\\b`, "g");

/** An error message for the command line: library option names (`topP`) become their flags (`--top-p`). */
export function withFlagNames(message: string): string {
  return message.replace(OPTION_NAME, (name) => FLAG_OF_OPTION[name]);
}
