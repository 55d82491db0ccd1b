/**
 * Chat templates, rendered as transformers' `apply_chat_template` renders them: the model's Jinja
 * source (`chat_template.jinja` or `tokenizer_config.json`), `trim_blocks` + `lstrip_blocks`, and
 * the variables `messages`, `tools`, `documents`, `add_generation_prompt`, `bos_token`, `eos_token`.
 *
 * `@huggingface/jinja` runs the template. Its built-in `tojson` is close to transformers' filter
 * (`json.dumps(x, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`) but prints floats the
 * JavaScript way (`3.0` → `3`, `1e-07` → `1e-7`, `1e+16` → `10000000000000000`), treats
 * `indent=0` as no indent, takes no positional arguments, and sorts keys by locale. The library has
 * no filter registry, so `JinjaInterpreter` overrides the public `Interpreter.evaluate` to handle
 * `… | tojson(…)` itself (`pythonJsonDumps`); everything else is the library's.
 *
 * Limit: values that arrive from JavaScript (messages, tool schemas) have lost Python's int/float
 * distinction — `{"default": 1.0}` prints as `1`, as JSON.parse left it (integral values beyond
 * 2^53 print as floats, see `formatPythonNumber`) — and JS objects list integer-like keys ("2",
 * "10") first. Floats made inside the template keep their type. A tool given as a string is
 * inserted verbatim (the LFM2 template checks `tool is string`): the way to pass a schema whose
 * exact Python text matters.
 */
import * as jinja from "@huggingface/jinja";
import { LfmError } from "./errors.ts";
import type { Lfm2Tokenizer } from "./tokenizer.ts";
import { formatPythonFloat, formatPythonNumber, type JsonValue } from "./tool-calls.ts";

export type ContentPart = { type: "text"; text: string } | { type: "image"; image?: string } | { type: "audio"; audio?: string };

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | (string & {});
  content: string | ContentPart[];
}

/** A tool schema (JSON object, rendered with `tojson`) or its JSON text (inserted verbatim). */
export type ToolDefinition = { [key: string]: JsonValue } | string;

export interface ChatRenderOptions {
  tools?: ToolDefinition[];
  /** Append the assistant header (`<|im_start|>assistant\n`) so the model answers. Default false, as in transformers. */
  addGenerationPrompt?: boolean;
}

export class ChatTemplate {
  readonly source: string;
  private readonly program: AstNode;
  private readonly specials: { bosToken: string; eosToken: string };

  /** Compiles the template once; a syntax error is `CHAT_TEMPLATE_INVALID`. */
  constructor(source: string, specials: { bosToken: string; eosToken: string }) {
    if (source.trim() === "") {
      throw new LfmError("CHAT_TEMPLATE_MISSING", "The chat template is empty; give the model's chat_template.jinja text.");
    }
    try {
      this.program = new jinja.Template(source).parsed;
    } catch (e) {
      throw new LfmError("CHAT_TEMPLATE_INVALID", `The chat template does not parse: ${errorText(e)}.`, { cause: e });
    }
    this.source = source;
    this.specials = { ...specials };
  }

  /** The tokenizer folder's template (`chat_template.jinja` or `tokenizer_config.json`'s `chat_template`). */
  static fromTokenizer(tokenizer: Lfm2Tokenizer): ChatTemplate {
    if (tokenizer.chatTemplate === undefined) {
      throw new LfmError(
        "CHAT_TEMPLATE_MISSING",
        "The tokenizer has no chat template: expected chat_template.jinja in the model folder or a " +
          '"chat_template" entry in tokenizer_config.json. Base (non-instruct) checkpoints have none; encode plain text instead.',
      );
    }
    return new ChatTemplate(tokenizer.chatTemplate, { bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken });
  }

  /** The prompt text, BOS included (the LFM2 template writes it). */
  render(messages: readonly ChatMessage[], opts: ChatRenderOptions = {}): string {
    if (messages.length === 0) {
      throw new LfmError("INVALID_ARGUMENT", "render() needs at least one message.");
    }
    const env = new Environment();
    installGlobals(env);
    env.set("messages", messages);
    env.set("tools", opts.tools ?? null); // transformers passes None, so `tools is none` holds
    env.set("documents", null);
    env.set("add_generation_prompt", opts.addGenerationPrompt ?? false);
    env.set("bos_token", this.specials.bosToken);
    env.set("eos_token", this.specials.eosToken);
    let result: RuntimeView;
    try {
      result = new JinjaInterpreter(env).run(this.program);
    } catch (e) {
      if (e instanceof TemplateRaisedError) {
        throw new LfmError("INVALID_ARGUMENT", `The chat template rejected the conversation: ${e.message}`, { cause: e });
      }
      throw new LfmError("CHAT_TEMPLATE_INVALID", `The chat template failed while rendering: ${errorText(e)}.`, { cause: e });
    }
    if (typeof result.value !== "string") {
      throw new LfmError("CHAT_TEMPLATE_INVALID", "The chat template did not render to text.");
    }
    return result.value;
  }
}

/** Chat prompt ids: `encode(render(...))` without adding BOS again (the template already wrote it). */
export function renderChatIds(
  tokenizer: Lfm2Tokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  opts: ChatRenderOptions = {},
): number[] {
  return tokenizer.encode(template.render(messages, opts), { addSpecialTokens: false });
}

// ---------------------------------------------------------------------------------------------
// transformers' `tojson`

interface PythonJsonOptions {
  ensureAscii?: boolean;
  /** Spaces per level, or the indent string; null = one line. 0 or "" still breaks lines, as in Python. */
  indent?: number | string | null;
  /** [item separator, key separator]; default `[", ", ": "]`, or `[",", ": "]` with an indent. */
  separators?: readonly [string, string] | null;
  sortKeys?: boolean;
}

/** A jinja runtime value as seen from outside: `type` names the class ("ObjectValue", …). */
interface RuntimeView {
  type: string;
  value: unknown;
}

/**
 * Python `json.dumps` over a jinja runtime value (what transformers' `tojson` filter calls).
 * Undefined renders as null, as in the library's filter (Python would raise).
 */
function pythonJsonDumps(value: RuntimeView, opts: PythonJsonOptions = {}): string {
  const indent = typeof opts.indent === "number" ? " ".repeat(opts.indent) : (opts.indent ?? null);
  const [itemSep, keySep] = opts.separators ?? (indent === null ? [", ", ": "] : [",", ": "]);
  const ensureAscii = opts.ensureAscii ?? false;
  const sortKeys = opts.sortKeys ?? false;

  const dump = (v: RuntimeView, depth: number): string => {
    switch (v.type) {
      case "NullValue":
      case "UndefinedValue":
        return "null";
      case "BooleanValue":
        return v.value ? "true" : "false";
      case "IntegerValue": // from JS, or int arithmetic in the template
        return formatPythonNumber(v.value as number);
      case "FloatValue": {
        const x = v.value as number;
        if (Number.isNaN(x)) return "NaN";
        if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
        return formatPythonFloat(x);
      }
      case "StringValue":
        return pythonJsonString(v.value as string, ensureAscii);
      case "ArrayValue":
      case "TupleValue":
        return container("[", "]", (v.value as RuntimeView[]).map((x) => dump(x, depth + 1)), depth);
      case "ObjectValue":
      case "KeywordArgumentsValue":
      case "NamespaceValue": {
        let entries = [...(v.value as Map<string, RuntimeView>)];
        if (sortKeys) entries = entries.sort(([a], [b]) => compareCodePoints(a, b));
        const items = entries.map(([k, x]) => pythonJsonString(k, ensureAscii) + keySep + dump(x, depth + 1));
        return container("{", "}", items, depth);
      }
      default:
        throw new Error(`Object of type ${v.type} is not JSON serializable`);
    }
  };
  const container = (open: string, close: string, items: string[], depth: number): string => {
    if (items.length === 0) return open + close;
    if (indent === null) return open + items.join(itemSep) + close;
    const inner = "\n" + indent.repeat(depth + 1);
    return open + inner + items.join(itemSep + inner) + "\n" + indent.repeat(depth) + close;
  };
  return dump(value, 0);
}

/** `json.dumps` string escaping: `\" \\ \n \r \t \b \f`, other controls as `\u00XX`; with ensure_ascii every non-ASCII UTF-16 unit too. */
function pythonJsonString(s: string, ensureAscii: boolean): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    const code = s.charCodeAt(i);
    const short = JSON_SHORT_ESCAPES[c];
    if (short !== undefined) out += short;
    else if (code < 0x20 || (ensureAscii && code > 0x7e)) out += "\\u" + code.toString(16).padStart(4, "0");
    else out += c;
  }
  return out + '"';
}

const JSON_SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
};

/** Python's str ordering (code points; plain `<` on JS strings compares UTF-16 units). */
function compareCodePoints(a: string, b: string): number {
  const ca = Array.from(a, (ch) => ch.codePointAt(0)!);
  const cb = Array.from(b, (ch) => ch.codePointAt(0)!);
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) if (ca[i] !== cb[i]) return ca[i] - cb[i];
  return ca.length - cb.length;
}

// ---------------------------------------------------------------------------------------------
// The interpreter: the library's, with transformers' `tojson`

// The AST fields this file reads (ast.d.ts of @huggingface/jinja; its node classes are not exported).
interface AstNode {
  type: string;
}
interface IdentifierNode extends AstNode {
  value: string;
}
interface CallNode extends AstNode {
  callee: AstNode;
  args: AstNode[];
}
interface KeywordArgumentNode extends AstNode {
  key: IdentifierNode;
  value: AstNode;
}
interface FilterNode extends AstNode {
  operand: AstNode;
  filter: IdentifierNode | CallNode;
}

// @huggingface/jinja 0.5.11's index.d.ts re-exports Environment and Interpreter from "./runtime"
// without a file extension, which NodeNext resolution cannot follow: both arrive typed `any`.
// These are the parts of their declared API (dist/runtime.d.ts) used here.
interface JinjaEnvironment {
  /** Declares a variable, converting a JS value into a runtime value (which it returns). */
  set(name: string, value: unknown): RuntimeView;
}
interface JinjaInterpreterApi {
  run(program: AstNode): RuntimeView;
  evaluate(statement: AstNode | undefined, environment: JinjaEnvironment): RuntimeView;
}
const Environment: new () => JinjaEnvironment = jinja.Environment;
const Interpreter: new (env?: JinjaEnvironment) => JinjaInterpreterApi = jinja.Interpreter;

/** transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` parameter order. */
const TOJSON_PARAMS = ["ensure_ascii", "indent", "separators", "sort_keys"] as const;

class JinjaInterpreter extends Interpreter {
  override evaluate(statement: AstNode | undefined, environment: JinjaEnvironment): RuntimeView {
    if (statement?.type === "FilterExpression") {
      const node = statement as FilterNode;
      const filter = node.filter;
      const name = filter.type === "Identifier" ? (filter as IdentifierNode).value : identifierName((filter as CallNode).callee);
      if (name === "tojson") {
        const operand = this.evaluate(node.operand, environment);
        const args = filter.type === "CallExpression" ? this.tojsonArguments((filter as CallNode).args, environment) : new Map();
        return toRuntimeValue(pythonJsonDumps(operand, tojsonOptions(args)));
      }
    }
    return super.evaluate(statement, environment);
  }

  private tojsonArguments(args: AstNode[], environment: JinjaEnvironment): Map<string, RuntimeView> {
    const named = new Map<string, RuntimeView>();
    args.forEach((arg, i) => {
      if (arg.type === "KeywordArgumentExpression") {
        const kwarg = arg as KeywordArgumentNode;
        named.set(kwarg.key.value, this.evaluate(kwarg.value, environment));
      } else if (i < TOJSON_PARAMS.length) {
        named.set(TOJSON_PARAMS[i], this.evaluate(arg, environment));
      } else {
        throw new Error("tojson() takes at most 4 positional arguments");
      }
    });
    for (const key of named.keys()) {
      if (!(TOJSON_PARAMS as readonly string[]).includes(key)) throw new Error(`tojson() got an unexpected keyword argument '${key}'`);
    }
    return named;
  }
}

function tojsonOptions(args: Map<string, RuntimeView>): PythonJsonOptions {
  const isNone = (v: RuntimeView | undefined) => v === undefined || v.type === "NullValue" || v.type === "UndefinedValue";
  const indent = args.get("indent");
  const separators = args.get("separators");
  const opts: PythonJsonOptions = {
    ensureAscii: truthy(args.get("ensure_ascii")),
    sortKeys: truthy(args.get("sort_keys")),
  };
  if (!isNone(indent)) {
    if (indent!.type !== "IntegerValue" && indent!.type !== "StringValue") throw new Error("tojson(): indent must be an int or a string");
    opts.indent = indent!.value as number | string;
  }
  if (!isNone(separators)) {
    const parts = separators!.value;
    if (!Array.isArray(parts) || parts.length !== 2 || !parts.every((p: RuntimeView) => p.type === "StringValue")) {
      throw new Error("tojson(): separators must be a pair of strings");
    }
    opts.separators = [parts[0].value as string, parts[1].value as string];
  }
  return opts;
}

/** Python truthiness for the flag arguments (`ensure_ascii=1` counts). */
function truthy(v: RuntimeView | undefined): boolean {
  if (v === undefined) return false;
  switch (v.type) {
    case "BooleanValue":
    case "IntegerValue":
    case "FloatValue":
    case "StringValue":
      return Boolean(v.value);
    case "ArrayValue":
    case "TupleValue":
      return (v.value as unknown[]).length > 0;
    case "ObjectValue":
      return (v.value as Map<string, unknown>).size > 0;
    default:
      return false;
  }
}

function identifierName(node: AstNode): string | undefined {
  return node.type === "Identifier" ? (node as IdentifierNode).value : undefined;
}

/** `Environment.set` is the library's public JS → runtime value conversion. */
function toRuntimeValue(value: string): RuntimeView {
  return new Environment().set("value", value);
}

/** Thrown by the template's `raise_exception(...)`: the conversation, not the template, is at fault. */
class TemplateRaisedError extends Error {}

/**
 * The globals the library's `Template.render` installs (its `setupGlobals` is not exported) and
 * transformers provides: booleans/None in both spellings, `raise_exception`, `range`, `strftime_now`.
 */
function installGlobals(env: JinjaEnvironment): void {
  for (const [name, value] of [["true", true], ["false", false], ["none", null], ["True", true], ["False", false], ["None", null]] as const) {
    env.set(name, value);
  }
  env.set("raise_exception", (message: unknown) => {
    throw new TemplateRaisedError(String(message));
  });
  env.set("range", (start: number, stop?: number, step = 1) => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error("range() arg 3 must not be zero");
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
    return out;
  });
  env.set("strftime_now", (format: string) => strftime(new Date(), format));
}

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** Python's `datetime.now().strftime(format)` for the common directives (C locale, local time). */
function strftime(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return format.replace(/%-?[a-zA-Z%]/g, (directive) => {
    const noPad = directive.length === 3; // glibc's %-d etc.
    const num = (n: number, width = 2) => (noPad ? String(n) : pad(n, width));
    switch (directive.at(-1)) {
      case "Y": return String(date.getFullYear());
      case "y": return num(date.getFullYear() % 100);
      case "m": return num(date.getMonth() + 1);
      case "d": return num(date.getDate());
      case "e": return String(date.getDate()).padStart(2, " ");
      case "j": {
        const dayOfYear = Math.round((Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) / 86_400_000) + 1;
        return num(dayOfYear, 3);
      }
      case "B": return MONTHS[date.getMonth()];
      case "b": return MONTHS[date.getMonth()].slice(0, 3);
      case "A": return WEEKDAYS[date.getDay()];
      case "a": return WEEKDAYS[date.getDay()].slice(0, 3);
      case "H": return num(date.getHours());
      case "I": return num(date.getHours() % 12 || 12);
      case "p": return date.getHours() < 12 ? "AM" : "PM";
      case "M": return num(date.getMinutes());
      case "S": return num(date.getSeconds());
      case "%": return "%";
      default: return directive;
    }
  });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
