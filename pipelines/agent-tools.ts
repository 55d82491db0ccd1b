/**
 * The agent's tools: plain JavaScript objects `{ name, description, parameters, run, confirm? }`,
 * checked once when they are loaded, their calls' arguments checked against `parameters` before
 * `run`, and every outcome of `run` — a value, a throw, a timeout, a result too large to put in a
 * prompt — turned into the text of a tool message. A tool never crashes the agent.
 *
 * Argument validation: the tool's `parameters` may use only the JSON Schema keywords that the
 * constrained call grammar enforces (text-core/structured/tool-grammar.ts refuses the others when
 * the tools are loaded), so `validateArguments` checks exactly that subset, by hand, with no
 * dependency. A constrained call already satisfies it; an unconstrained one (no --tool-choice)
 * may not, and is answered with the validation error instead of being run.
 */
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { ToolDefinition } from "../text-core/chat.ts";
import { LfmError } from "../text-core/errors.ts";
import { callListGrammar } from "../text-core/structured/tool-grammar.ts";
import type { JsonValue, ToolCall } from "../text-core/tool-calls.ts";

/** One tool the agent may call. */
export interface AgentTool {
  /** A Python identifier (LFM2 writes calls as `name(key=value)`); unique among the tools. */
  name: string;
  description?: string;
  /** JSON Schema of the keyword arguments: `{ type: "object", properties, required }`. */
  parameters?: { [key: string]: JsonValue };
  /**
   * Does the work; the result goes back to the model as JSON (a string as it is). `signal` aborts
   * when the call times out or the turn is cancelled: a tool that ignores it runs on unobserved.
   */
  run(args: Record<string, JsonValue>, context: { signal: AbortSignal }): unknown;
  /** A tool that changes things: the agent asks the user "yes or no?" before it runs. */
  confirm?: boolean;
}

/** Results longer than this (UTF-16 units of their JSON text) are cut, with a note to the model. */
export const MAX_TOOL_RESULT_CHARS = 16 * 1024;
/** How long one call may run unless the caller says otherwise. */
export const DEFAULT_TOOL_TIMEOUT_MS = 10_000;

/** What the chat template renders for a tool: its schema without `run`. */
export function toolDefinition(tool: AgentTool): ToolDefinition {
  const def: { [key: string]: JsonValue } = { name: tool.name };
  if (tool.description !== undefined) def.description = tool.description;
  def.parameters = tool.parameters ?? { type: "object", properties: {} };
  return def;
}

/**
 * Checks a list of tools (the default export of a tools module, or what a library caller passes):
 * TOOLS_INVALID for a wrong shape or a repeated name, SCHEMA_INVALID / SCHEMA_UNSUPPORTED for a
 * `parameters` schema the call grammar cannot enforce — each naming the tool.
 */
export function checkTools(tools: unknown, where = "the tools"): AgentTool[] {
  if (!Array.isArray(tools) || tools.length === 0) {
    throw new LfmError("TOOLS_INVALID", `${where} must be a non-empty array of tools { name, description, parameters, run } (got ${describeValue(tools)}).`);
  }
  const seen = new Set<string>();
  tools.forEach((tool: unknown, i) => {
    const label = `${where}: tool ${i}`;
    if (typeof tool !== "object" || tool === null) throw new LfmError("TOOLS_INVALID", `${label} is ${describeValue(tool)}, not an object { name, description, parameters, run }.`);
    const t = tool as Record<string, unknown>;
    if (typeof t.name !== "string" || t.name === "") throw new LfmError("TOOLS_INVALID", `${label} has no string "name".`);
    const named = `${where}: tool "${t.name}"`;
    if (seen.has(t.name)) throw new LfmError("TOOLS_INVALID", `${named} is defined twice; tool names must be unique.`);
    seen.add(t.name);
    if (typeof t.run !== "function") throw new LfmError("TOOLS_INVALID", `${named} has no "run" function (async (args) => result).`);
    if (t.description !== undefined && typeof t.description !== "string") throw new LfmError("TOOLS_INVALID", `${named}: "description" must be a string.`);
    if (t.confirm !== undefined && typeof t.confirm !== "boolean") throw new LfmError("TOOLS_INVALID", `${named}: "confirm" must be true or false.`);
    if (t.parameters !== undefined && (typeof t.parameters !== "object" || t.parameters === null || Array.isArray(t.parameters))) {
      throw new LfmError("SCHEMA_INVALID", `${named}: "parameters" must be a JSON Schema object.`);
    }
    try {
      // The grammar a constrained call is generated under: what it refuses, validation cannot promise either.
      callListGrammar([toolDefinition(t as unknown as AgentTool)]);
    } catch (e) {
      if (!(e instanceof LfmError)) throw e;
      throw new LfmError(e.code, `${named}: ${e.message.replace(/^tools\[0\]\.?/, "")}`, { cause: e });
    }
  });
  return tools as AgentTool[];
}

/**
 * Loads a tools module (`--tools tools.mjs`): its default export, checked by `checkTools`. A
 * module that cannot be imported (missing, a syntax error, a throw at load) is TOOLS_INVALID with
 * the import error's message.
 */
export async function loadToolsModule(path: string): Promise<AgentTool[]> {
  let module: { default?: unknown };
  try {
    module = (await import(pathToFileURL(resolve(path)).href)) as { default?: unknown };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === "ERR_MODULE_NOT_FOUND" ? `it (or a module it imports) was not found` : `${err.name ?? "Error"}: ${String(err.message ?? e).replace(/\.+$/, "")}`;
    throw new LfmError("TOOLS_INVALID", `cannot import the tools module ${path}: ${why}.`, { cause: e });
  }
  if (module.default === undefined) {
    throw new LfmError("TOOLS_INVALID", `the tools module ${path} has no default export; write \`export default [{ name, description, parameters, run }]\`.`);
  }
  return checkTools(module.default, path);
}

/** The first way `value` breaks `schema` (a pointer into the arguments and what is wrong), or null when it fits. */
export function validateArguments(schema: unknown, value: JsonValue, at = "arguments"): string | null {
  if (schema === true || schema === undefined) return null;
  if (schema === false) return `${at} is not allowed`;
  if (typeof schema !== "object" || schema === null) return null;
  const s = schema as Record<string, unknown>;
  if ("const" in s && !jsonEqual(s.const, value)) return `${at} must be ${JSON.stringify(s.const)}`;
  if (Array.isArray(s.enum) && !s.enum.some((v) => jsonEqual(v, value))) return `${at} must be one of ${JSON.stringify(s.enum)}`;
  if (Array.isArray(s.anyOf)) {
    const errors = s.anyOf.map((branch) => validateArguments(branch, value, at));
    if (errors.every((e) => e !== null)) return `${at} matches none of the allowed forms (${errors.join("; ")})`;
  }
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    if (!types.some((t) => hasType(value, t))) return `${at} must be ${types.join(" or ")} (got ${jsonType(value)})`;
  }
  if (typeof value === "string") {
    const length = [...value].length; // JSON Schema counts code points
    if (typeof s.minLength === "number" && length < s.minLength) return `${at} must be at least ${s.minLength} characters`;
    if (typeof s.maxLength === "number" && length > s.maxLength) return `${at} must be at most ${s.maxLength} characters`;
  }
  if (typeof value === "number") {
    if (typeof s.minimum === "number" && value < s.minimum) return `${at} must be ≥ ${s.minimum}`;
    if (typeof s.maximum === "number" && value > s.maximum) return `${at} must be ≤ ${s.maximum}`;
    if (typeof s.exclusiveMinimum === "number" && value <= s.exclusiveMinimum) return `${at} must be > ${s.exclusiveMinimum}`;
    if (typeof s.exclusiveMaximum === "number" && value >= s.exclusiveMaximum) return `${at} must be < ${s.exclusiveMaximum}`;
  }
  if (Array.isArray(value)) {
    if (typeof s.minItems === "number" && value.length < s.minItems) return `${at} must have at least ${s.minItems} items`;
    if (typeof s.maxItems === "number" && value.length > s.maxItems) return `${at} must have at most ${s.maxItems} items`;
    if (s.items !== undefined) {
      for (const [i, item] of value.entries()) {
        const e = validateArguments(s.items, item, `${at}[${i}]`);
        if (e) return e;
      }
    }
  }
  if (isObject(value)) {
    const props = isObject(s.properties) ? (s.properties as Record<string, unknown>) : {};
    for (const name of Array.isArray(s.required) ? (s.required as string[]) : []) {
      if (!Object.hasOwn(value, name)) return `${at}.${name} is required`;
    }
    for (const [name, v] of Object.entries(value)) {
      if (Object.hasOwn(props, name)) {
        const e = validateArguments(props[name], v, `${at}.${name}`);
        if (e) return e;
      } else if (s.additionalProperties === false) return `${at}.${name} is not a known argument (${Object.keys(props).join(", ") || "none"})`;
    }
  }
  return null;
}

/** The outcome of one tool call, as the model will read it. */
export interface ToolOutcome {
  call: ToolCall;
  ok: boolean;
  /** The tool message's content: the result's JSON (cut to MAX_TOOL_RESULT_CHARS), or `{"error": …}`. */
  content: string;
  /** The result was longer than the bound and was cut. */
  truncated: boolean;
  ms: number;
}

/**
 * Runs one call: unknown tool, arguments that break the schema, a throw and a timeout each become
 * an error content; a large result is cut with a note. Never throws (except for `signal`'s abort).
 */
export async function runToolCall(tools: readonly AgentTool[], call: ToolCall, opts: { timeoutMs?: number; signal?: AbortSignal; maxResultChars?: number } = {}): Promise<ToolOutcome> {
  const started = performance.now();
  const done = (ok: boolean, content: string, truncated = false): ToolOutcome => ({ call, ok, content, truncated, ms: performance.now() - started });
  const fail = (message: string) => done(false, JSON.stringify({ error: message }));
  const tool = tools.find((t) => t.name === call.name);
  if (!tool) return fail(`there is no tool named ${call.name}; the tools are ${tools.map((t) => t.name).join(", ")}.`);
  const invalid = validateArguments(tool.parameters ?? { type: "object" }, call.arguments);
  if (invalid) return fail(`invalid arguments for ${call.name}: ${invalid}.`);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const controller = new AbortController();
  const onAbort = () => controller.abort(opts.signal?.reason);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const running = Promise.resolve().then(() => tool.run(structuredClone(call.arguments), { signal: controller.signal }));
    running.catch(() => {}); // a tool that fails after its timeout must not become an unhandled rejection
    let result: unknown;
    try {
      result = await Promise.race([running, timedOut]);
    } catch (e) {
      if (opts.signal?.aborted) throw new LfmError("ABORTED", "the turn was cancelled.", { cause: e });
      return fail(`${call.name} failed: ${errorText(e)}`);
    }
    if (result === "timeout") {
      controller.abort(new Error(`${call.name} timed out`));
      return fail(`${call.name} did not finish within ${timeoutMs / 1000} s and was abandoned.`);
    }
    let text: string;
    try {
      text = typeof result === "string" ? result : (JSON.stringify(result ?? null) ?? "null");
    } catch (e) {
      return fail(`${call.name} returned a value that is not JSON (${errorText(e)}).`);
    }
    const max = opts.maxResultChars ?? MAX_TOOL_RESULT_CHARS;
    if (text.length <= max) return done(true, text);
    return done(true, `${text.slice(0, max)}… [result cut: ${text.length} characters, the first ${max} shown]`, true);
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return typeof e === "string" ? e : JSON.stringify(e) ?? String(e);
}

function isObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function hasType(v: JsonValue, type: string): boolean {
  switch (type) {
    case "string": return typeof v === "string";
    case "integer": return typeof v === "number" && Number.isInteger(v);
    case "number": return typeof v === "number";
    case "boolean": return typeof v === "boolean";
    case "null": return v === null;
    case "array": return Array.isArray(v);
    case "object": return isObject(v);
    default: return false;
  }
}

function jsonType(v: JsonValue): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return v.length === 0 ? "an empty array" : "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`.slice(0, 60);
}
