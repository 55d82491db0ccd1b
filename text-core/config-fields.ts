/**
 * Typed reads of config.json-like files (model, processor, Mimi, PyLate configs): one place that
 * decides what a missing, null or ill-typed key is.
 *
 * `null` is "not set", exactly like an absent key: transformers and PyLate save unset optionals as
 * null (`"head_dim": null`, `"rope_scaling": null`), so a getter with a fallback returns it and a
 * required one reports the key as required. Keys where null means something of its own (`eos_token_id:
 * null` is "no EOS", Mimi's `layer_scale: null` is "no layer scale") are read with `raw`, saying so.
 *
 * Every failure is `CONFIG_INVALID` naming the file and the key (`encoder.n_heads` in a block),
 * the value found, and what to do.
 */
import * as fs from "node:fs";
import { LfmError } from "./errors.ts";

/** A parsed JSON object. */
export type ConfigJson = Record<string, unknown>;

export function isObject(v: unknown): v is ConfigJson {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Reads and parses a file that must hold a JSON object. `FILE_NOT_FOUND` when it cannot be read
 * (`optional`: undefined when it does not exist), `invalidCode` (default `CONFIG_INVALID`) when it
 * is not a JSON object. `what` says what the file is, `hint` what to do when it is unreadable.
 */
export function readJsonObject(file: string, opts: { optional: true; what?: string; hint?: string; invalidCode?: "CONFIG_INVALID" | "TOKENIZER_INVALID" }): ConfigJson | undefined;
export function readJsonObject(file: string, opts?: { optional?: false; what?: string; hint?: string; invalidCode?: "CONFIG_INVALID" | "TOKENIZER_INVALID" }): ConfigJson;
export function readJsonObject(
  file: string,
  opts: { optional?: boolean; what?: string; hint?: string; invalidCode?: "CONFIG_INVALID" | "TOKENIZER_INVALID" } = {},
): ConfigJson | undefined {
  const what = opts.what === undefined ? "" : ` (${opts.what})`;
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if (opts.optional && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new LfmError("FILE_NOT_FOUND", `Cannot read ${file}${what}: ${(e as Error).message}.${opts.hint === undefined ? "" : ` ${opts.hint}`}`, { cause: e });
  }
  const code = opts.invalidCode ?? "CONFIG_INVALID";
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new LfmError(code, `${file} is not valid JSON (${(e as Error).message}); re-download it.`, { cause: e });
  }
  if (!isObject(parsed)) throw new LfmError(code, `${file} is not a JSON object${what}; re-download it.`);
  return parsed;
}

/**
 * Typed getters over one JSON object (a file, or a block of one). Without a fallback a key is
 * required. `source` names the file in messages, `prefix` the block ("encoder" → "encoder.n_heads"),
 * `remedy` ends every message ("Use the config.json published with the checkpoint.").
 */
export class ConfigFields {
  constructor(
    readonly raw: ConfigJson,
    readonly source: string,
    readonly remedy: string,
    readonly prefix = "",
  ) {}

  /** The key as messages name it: `prefix.key`. */
  key(k: string): string {
    return this.prefix ? `${this.prefix}.${k}` : k;
  }

  /** The value, with null as undefined. */
  get(k: string): unknown {
    const v = this.raw[k];
    return v === null ? undefined : v;
  }

  /** Set to something other than null. */
  has(k: string): boolean {
    return this.get(k) !== undefined;
  }

  /** `CONFIG_INVALID`: `<source>: "<key>" <what>[, found <value>]. <remedy>`. */
  invalid(k: string, what: string, ...found: [unknown?]): LfmError {
    const shown = found.length > 0 ? `, found ${JSON.stringify(found[0])}` : "";
    return new LfmError("CONFIG_INVALID", `${this.source}: "${this.key(k)}" ${what}${shown}. ${this.remedy}`);
  }

  #value(k: string, fallback: unknown): unknown {
    const v = this.get(k);
    if (v !== undefined) return v;
    if (fallback === undefined) throw this.invalid(k, "is required");
    return fallback;
  }

  /** A safe integer ≥ `min` (default 1; -Infinity for any integer). */
  int(k: string, fallback?: number, min = 1): number {
    const v = this.#value(k, fallback);
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
      const what = min === 1 ? "a positive integer" : min === 0 ? "a non-negative integer" : min === -Infinity ? "an integer" : `an integer ≥ ${min}`;
      throw this.invalid(k, `must be ${what}`, v);
    }
    return v;
  }

  /** A finite number, positive unless `positive: false`. */
  num(k: string, fallback?: number, { positive = true } = {}): number {
    const v = this.#value(k, fallback);
    if (typeof v !== "number" || !Number.isFinite(v) || (positive && v <= 0)) {
      throw this.invalid(k, positive ? "must be a positive number" : "must be a number", v);
    }
    return v;
  }

  bool(k: string, fallback?: boolean): boolean {
    const v = this.#value(k, fallback);
    if (typeof v !== "boolean") throw this.invalid(k, "must be true or false", v);
    return v;
  }

  str(k: string, fallback?: string): string {
    const v = this.#value(k, fallback);
    if (typeof v !== "string") throw this.invalid(k, "must be a string", v);
    return v;
  }

  stringList(k: string, fallback?: readonly string[]): string[] {
    const v = this.#value(k, fallback);
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw this.invalid(k, "must be a list of strings", v);
    return [...v];
  }

  /** One of `allowed`. */
  oneOf<T extends string>(k: string, allowed: readonly T[], fallback?: T): T {
    const v = this.#value(k, fallback);
    if (typeof v !== "string" || !allowed.includes(v as T)) throw this.invalid(k, `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}`, v);
    return v as T;
  }

  /** Only `expected` is implemented: any other value set is refused by name, saying `why`. */
  fixed(k: string, expected: unknown, why: string): void {
    const v = this.get(k);
    if (v !== undefined && v !== expected) throw this.invalid(k, `other than ${JSON.stringify(expected)} is not supported (${why})`, v);
  }

  /** The object at `k` as fields of its own (messages name `k.key`); required unless `fallback`. */
  block(k: string, fallback?: ConfigJson): ConfigFields {
    const v = this.#value(k, fallback);
    if (!isObject(v)) throw this.invalid(k, "must be an object", v);
    return new ConfigFields(v, this.source, this.remedy, this.key(k));
  }
}
