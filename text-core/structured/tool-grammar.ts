/**
 * The grammar of LFM2's own tool-call syntax, built from the tools' JSON schemas:
 *
 *   <|tool_call_start|>[get_weather(city="Paris", days=3), set_valve(id=7, open=True)]<|tool_call_end|>
 *
 * Arguments are keyword arguments in the schema's property order (required ones always, optional
 * ones may be left out), values are Python literals of the declared type. Everything it allows
 * is read by `parseToolCalls` (tool-calls.ts): double-quoted strings with JSON-style escapes and
 * never the text "<|" (so no string can hold a tool-call marker), ints, floats, True/False/None,
 * lists and dicts.
 */
import type { ToolDefinition } from "../chat.ts";
import { LfmError } from "../errors.ts";
import { TOOL_CALL_END, TOOL_CALL_START, formatPythonNumber } from "../tool-calls.ts";
import { integerRangeRule } from "./json-schema.ts";

/** At most this many calls in one list (a sampled small model could otherwise list calls until maxTokens). */
export const MAX_CALLS_PER_LIST = 4;

const ANNOTATIONS = new Set(["title", "description", "default", "examples", "$comment"]);
const ARGUMENT_KEYWORDS = new Set(["minLength", "maxLength", "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]);
const IDENTIFIER = /^[\p{L}_][\p{L}\p{N}_]*$/u;
/** What a tool's top-level `parameters` schema may hold: the arguments are keyword arguments. */
const PARAMETERS_KEYWORDS = new Set(["type", "properties", "required", "additionalProperties", "$schema"]);

/** The name and parameter schema of one tool definition (LFM2/HF form, or OpenAI's `{type: "function", function}`). */
export interface ToolSignature {
  name: string;
  parameters: { [key: string]: unknown };
}

export function toolSignature(tool: ToolDefinition, index: number): ToolSignature {
  let def: unknown = tool;
  if (typeof tool === "string") {
    try {
      def = JSON.parse(tool);
    } catch {
      throw new LfmError("SCHEMA_INVALID", `tools[${index}] is a string that is not JSON; constrained tool calls need the tool's JSON schema.`);
    }
  }
  if (isObject(def) && def.type === "function" && isObject(def.function)) def = def.function;
  if (!isObject(def) || typeof def.name !== "string") throw new LfmError("SCHEMA_INVALID", `tools[${index}] has no string "name".`);
  if (!def.name.split(".").every((part) => IDENTIFIER.test(part))) {
    throw new LfmError("SCHEMA_UNSUPPORTED", `tools[${index}].name ${JSON.stringify(def.name)} is not a Python identifier, so LFM2's call syntax cannot name it.`);
  }
  const parameters = def.parameters ?? { type: "object", properties: {} };
  if (!isObject(parameters)) throw new LfmError("SCHEMA_INVALID", `tools[${index}].parameters must be a JSON schema object.`);
  return { name: def.name, parameters };
}

/** EBNF rules shared by every tool grammar. */
const BASE_RULES = [
  `py_esc ::= "\\\\" ["\\\\/bfnrt] | "\\\\u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2})`,
  `py_char ::= [^"\\\\<\\0-\\x1f] | py_esc`,
  `py_char_after_lt ::= [^"\\\\<|\\0-\\x1f] | py_esc`,
  `py_str ::= "\\"" (py_char | "<"+ py_char_after_lt)* "<"* "\\""`,
  // Length-bounded strings leave out "|" altogether, which keeps "<|" out without counting "<" runs.
  `py_char_no_pipe ::= [^"\\\\|\\0-\\x1f] | py_esc`,
  `py_int ::= "-"? ("0" | [1-9] [0-9]{0,15})`,
  // Bounded digits and exponent: a float that always parses finite (1e999 would be Infinity).
  `py_num ::= py_int ("." [0-9]{1,15})? ([eE] [+-]? [0-9]{1,2})?`,
  `py_bool ::= "True" | "False"`,
  `py_none ::= "None"`,
  `py_any ::= py_str | py_num | py_bool | py_none | py_list | py_dict`,
  `py_list ::= "[" "]" | "[" py_any (", " py_any){0,15} "]"`,
  `py_dict ::= "{" "}" | "{" py_str ": " py_any (", " py_str ": " py_any){0,15} "}"`,
];

class ToolGrammarBuilder {
  readonly rules: string[] = [...BASE_RULES];
  private count = 0;

  private rule(body: string): string {
    const name = `r${this.count++}`;
    this.rules.push(`${name} ::= ${body}`);
    return name;
  }

  /** A rule for values of `schema`; `at` names it in errors ("tools[1].parameters/properties/x"). */
  value(schema: unknown, at: string): string {
    if (schema === true || (isObject(schema) && Object.keys(schema).every((k) => ANNOTATIONS.has(k)))) return "py_any";
    if (!isObject(schema)) throw new LfmError("SCHEMA_INVALID", `${at} must be a JSON schema object.`);
    for (const key of Object.keys(schema)) {
      if (!ARGUMENT_KEYWORDS.has(key) && !ANNOTATIONS.has(key)) {
        throw new LfmError("SCHEMA_UNSUPPORTED", `${at}/${key}: "${key}" is not enforced in constrained tool-call arguments; remove it or check the argument after the call.`);
      }
    }
    if ("const" in schema) return this.rule(pythonLiteral(schema.const, `${at}/const`));
    if ("enum" in schema) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0) throw new LfmError("SCHEMA_INVALID", `${at}/enum must be a non-empty array.`);
      return this.rule(schema.enum.map((v, i) => pythonLiteral(v, `${at}/enum/${i}`)).join(" | "));
    }
    if ("anyOf" in schema) {
      if (!Array.isArray(schema.anyOf) || schema.anyOf.length === 0) throw new LfmError("SCHEMA_INVALID", `${at}/anyOf must be a non-empty array.`);
      return this.rule(schema.anyOf.map((s, i) => this.value(s, `${at}/anyOf/${i}`)).join(" | "));
    }
    const types = Array.isArray(schema.type) ? schema.type : schema.type === undefined ? undefined : [schema.type];
    if (types === undefined) return "py_any";
    return this.rule(types.map((t) => this.typed(String(t), schema, at)).join(" | "));
  }

  private typed(type: string, schema: { [key: string]: unknown }, at: string): string {
    const bounds = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"].filter((k) => k in schema);
    const lengths = ["minLength", "maxLength"].filter((k) => k in schema);
    if (lengths.length > 0 && type !== "string") {
      throw new LfmError("SCHEMA_UNSUPPORTED", `${at}/${lengths[0]}: string lengths are enforced only on "type": "string".`);
    }
    if (bounds.length > 0 && type !== "integer") {
      throw new LfmError("SCHEMA_UNSUPPORTED", `${at}/${bounds[0]}: numeric bounds are enforced only on "type": "integer".`);
    }
    switch (type) {
      case "string": {
        if (!("minLength" in schema) && !("maxLength" in schema)) return "py_str";
        const lo = (schema.minLength as number | undefined) ?? 0;
        const hi = schema.maxLength as number | undefined;
        if (!Number.isSafeInteger(lo) || lo < 0 || (hi !== undefined && (!Number.isSafeInteger(hi) || hi < lo))) {
          throw new LfmError("SCHEMA_INVALID", `${at}: minLength/maxLength must be integers with 0 ≤ minLength ≤ maxLength.`);
        }
        return this.rule(`"\\"" py_char_no_pipe{${lo},${hi ?? ""}} "\\""`);
      }
      case "integer": {
        if (bounds.length === 0) return "py_int";
        const n = (k: string) => schema[k] as number | undefined;
        let lo: bigint | undefined;
        let hi: bigint | undefined;
        if (n("minimum") !== undefined) lo = BigInt(Math.ceil(n("minimum")!));
        if (n("exclusiveMinimum") !== undefined) lo = max(lo, BigInt(Math.floor(n("exclusiveMinimum")!)) + 1n);
        if (n("maximum") !== undefined) hi = BigInt(Math.floor(n("maximum")!));
        if (n("exclusiveMaximum") !== undefined) hi = min(hi, BigInt(Math.ceil(n("exclusiveMaximum")!)) - 1n);
        if (lo !== undefined && hi !== undefined && lo > hi) throw new LfmError("SCHEMA_INVALID", `${at}: no integer lies in [${lo}, ${hi}].`);
        return this.rule(integerRangeRule(lo, hi));
      }
      case "number":
        return "py_num";
      case "boolean":
        return "py_bool";
      case "null":
        return "py_none";
      case "array": {
        const item = this.value(schema.items ?? true, `${at}/items`);
        const lo = (schema.minItems as number | undefined) ?? 0;
        const hi = (schema.maxItems as number | undefined) ?? Math.max(lo, 16);
        if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || lo < 0 || lo > hi) throw new LfmError("SCHEMA_INVALID", `${at}: minItems/maxItems must be integers with 0 ≤ minItems ≤ maxItems.`);
        const nonEmpty = hi === 0 ? undefined : `"[" ${item} (", " ${item}){${Math.max(0, lo - 1)},${hi - 1}} "]"`;
        return this.rule([lo === 0 ? `"[" "]"` : undefined, nonEmpty].filter(Boolean).join(" | "));
      }
      case "object":
        return this.rule(`"{" ${this.fields(schema, at, (key) => `${jsonLiteral(JSON.stringify(key))} ": "`)} "}"`);
      default:
        throw new LfmError("SCHEMA_INVALID", `${at}/type: unknown type ${JSON.stringify(type)}.`);
    }
  }

  /**
   * The properties of an object in schema order, joined by ", ": required ones always present,
   * optional ones may be skipped. `key` writes the prefix of one property (`name=` or `"name": `).
   */
  fields(schema: { [key: string]: unknown }, at: string, key: (name: string) => string): string {
    const props = schema.properties ?? {};
    if (!isObject(props)) throw new LfmError("SCHEMA_INVALID", `${at}/properties must be an object of schemas.`);
    if (schema.additionalProperties !== undefined && schema.additionalProperties !== false && schema.additionalProperties !== true) {
      throw new LfmError("SCHEMA_UNSUPPORTED", `${at}/additionalProperties: only true/false are supported in tool arguments (only the listed properties are ever generated).`);
    }
    const required = new Set(Array.isArray(schema.required) ? schema.required.map(String) : []);
    for (const name of required) {
      if (!(name in props)) throw new LfmError("SCHEMA_INVALID", `${at}/required names "${name}", which is not in properties.`);
    }
    const names = Object.keys(props);
    const items = names.map((name) => `${key(name)} ${this.value(props[name], `${at}/properties/${name}`)}`);
    // tail(i): the properties after the i-th, each with its ", " (optional ones may be absent).
    const tail = (from: number) =>
      names
        .slice(from)
        .map((name, j) => (required.has(name) ? `", " ${items[from + j]}` : `(", " ${items[from + j]})?`))
        .join(" ");
    const firstRequired = names.findIndex((n) => required.has(n));
    const lastFirst = firstRequired < 0 ? names.length - 1 : firstRequired;
    const alternatives: string[] = [];
    for (let i = 0; i <= lastFirst; i++) alternatives.push(`${items[i]} ${tail(i + 1)}`.trim());
    if (firstRequired < 0) alternatives.push(`""`);
    if (alternatives.length === 0) return `""`;
    return `(${alternatives.map((a) => `(${a})`).join(" | ")})`;
  }
}

/** EBNF of one call list `[call, …]` (no markers) for these tools; `only` restricts it to one tool. */
export function callListGrammar(tools: readonly ToolDefinition[], only?: string): { rules: string[]; list: string } {
  if (tools.length === 0) throw new LfmError("INVALID_ARGUMENT", "toolChoice needs at least one tool in `tools`.");
  const b = new ToolGrammarBuilder();
  const signatures = tools.map(toolSignature);
  const chosen = only === undefined ? signatures : signatures.filter((s) => s.name === only);
  if (chosen.length === 0) {
    throw new LfmError("INVALID_ARGUMENT", `toolChoice names ${JSON.stringify(only)}, which is not among the tools (${signatures.map((s) => s.name).join(", ")}).`);
  }
  const calls = chosen.map((sig) => {
    const at = `tools[${signatures.indexOf(sig)}].parameters`;
    for (const key of Object.keys(sig.parameters)) {
      if (!PARAMETERS_KEYWORDS.has(key) && !ANNOTATIONS.has(key)) {
        throw new LfmError("SCHEMA_UNSUPPORTED", `${at}/${key}: "${key}" is not enforced on a tool's parameters; remove it or check the call afterwards.`);
      }
    }
    if (sig.parameters.type !== undefined && sig.parameters.type !== "object") {
      throw new LfmError("SCHEMA_INVALID", `${at}/type: a tool's parameters must be an object schema (got ${JSON.stringify(sig.parameters.type)}).`);
    }
    const args = b.fields(sig.parameters, at, (name) => {
      if (!IDENTIFIER.test(name)) throw new LfmError("SCHEMA_UNSUPPORTED", `${at}/properties/${name}: argument names must be Python identifiers in LFM2's call syntax.`);
      return `"${name}="`;
    });
    return `(${jsonLiteral(sig.name)} "(" ${args} ")")`;
  });
  b.rules.push(`tool_call ::= ${calls.join(" | ")}`);
  return { rules: b.rules, list: `"[" tool_call (", " tool_call){0,${MAX_CALLS_PER_LIST - 1}} "]"` };
}

/** A complete EBNF grammar: the reply is exactly one marked call list. */
export function requiredToolCallEbnf(tools: readonly ToolDefinition[], only?: string): string {
  const { rules, list } = callListGrammar(tools, only);
  return [`root ::= ${jsonLiteral(TOOL_CALL_START)} ${list} ${jsonLiteral(TOOL_CALL_END)}`, ...rules].join("\n");
}

/** A structural tag: free text, and once `<|tool_call_start|>` appears, a call list up to `<|tool_call_end|>`. */
export function autoToolCallTag(tools: readonly ToolDefinition[]): string {
  const { rules, list } = callListGrammar(tools);
  const grammar = [`root ::= ${list}`, ...rules].join("\n");
  return JSON.stringify({
    type: "structural_tag",
    format: {
      type: "triggered_tags",
      triggers: [TOOL_CALL_START],
      tags: [{ type: "tag", begin: TOOL_CALL_START, content: { type: "grammar", grammar }, end: TOOL_CALL_END }],
      at_least_one: false,
      stop_after_first: false,
    },
  });
}

/** The Python literal of a primitive as an EBNF string literal. */
function pythonLiteral(v: unknown, at: string): string {
  if (v === null) return `"None"`;
  if (typeof v === "boolean") return v ? `"True"` : `"False"`;
  if (typeof v === "number" && Number.isFinite(v)) return `"${formatPythonNumber(v)}"`;
  if (typeof v === "string") return jsonLiteral(JSON.stringify(v));
  throw new LfmError("SCHEMA_UNSUPPORTED", `${at}: only string, number, boolean and null values are supported in enum/const of tool arguments.`);
}

/** An EBNF string literal that matches `text` exactly. */
function jsonLiteral(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t")}"`;
}

function max(a: bigint | undefined, b: bigint): bigint {
  return a === undefined || b > a ? b : a;
}

function min(a: bigint | undefined, b: bigint): bigint {
  return a === undefined || b < a ? b : a;
}

function isObject(v: unknown): v is { [key: string]: unknown } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
