/**
 * Tool calls in LFM2 output. The model writes a Pythonic call list between the special tokens
 * `<|tool_call_start|>` and `<|tool_call_end|>`, free text may surround it:
 *
 *   <|tool_call_start|>[get_weather(city="Paris"), set_valve(id=7, open=True)]<|tool_call_end|>
 *
 * `parseToolCalls` reads that with a small lexer + recursive-descent parser over the Python
 * literal subset tools need (keyword arguments; str/int/float/True/False/None; lists, tuples,
 * dicts). When a system prompt asks for JSON calls the span holds `[{"name": …, "arguments": …}]`
 * instead; both forms are accepted (and JSON's true/false/null inside Pythonic calls too).
 * A nested call, a positional argument or any other Python expression is an error, not code to run.
 *
 * `readToolCalls` is the forgiving reader for model output: a span that does not parse is
 * returned beside the good calls (its raw text and the error) instead of failing the whole reply,
 * since models do emit broken calls.
 *
 * `formatToolCalls` writes calls back in the Pythonic form, for assistant turns in the history
 * (the LFM2 chat template does not render `tool_calls` itself).
 */
import { LfmError } from "./errors.ts";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ToolCall {
  name: string;
  arguments: Record<string, JsonValue>;
}

export const TOOL_CALL_START = "<|tool_call_start|>";
export const TOOL_CALL_END = "<|tool_call_end|>";

/** A malformed tool call; `offset` (0-based, UTF-16 units), `line` and `column` (1-based) locate it in the parsed text. */
export class ToolCallParseError extends LfmError {
  readonly offset: number;
  readonly line: number;
  readonly column: number;
  constructor(text: string, offset: number, problem: string) {
    const before = text.slice(0, offset);
    const line = before.split("\n").length;
    const column = offset - before.lastIndexOf("\n");
    const near = JSON.stringify(text.slice(Math.max(0, offset - 20), offset + 20));
    super(
      "TOOL_CALL_PARSE_FAILED",
      `Malformed tool call at line ${line}, column ${column} (offset ${offset}): ${problem}. Near ${near}. ` +
        `Expected a list of calls like [name(arg="value", n=1)] or a JSON list [{"name": ..., "arguments": {...}}].`,
    );
    this.name = "ToolCallParseError";
    this.offset = offset;
    this.line = line;
    this.column = column;
  }
}

/**
 * Splits model output into the text outside the tool-call spans and the parsed calls, in order.
 * A start marker without an end marker (generation stopped first) is parsed to the end of the text.
 * Throws `ToolCallParseError` (TOOL_CALL_PARSE_FAILED) at the first span that does not parse; see
 * `readToolCalls` for model output that may hold broken calls.
 */
export function parseToolCalls(text: string): { content: string; toolCalls: ToolCall[] } {
  const toolCalls: ToolCall[] = [];
  let content = "";
  for (const piece of toolCallSpans(text)) {
    if (typeof piece === "string") content += piece;
    else toolCalls.push(...new CallParser(text, piece.bodyStart, piece.bodyEnd).parseSpan());
  }
  return { content, toolCalls };
}

/** A tool-call span that did not parse: its text as the model wrote it and why it failed. */
export interface MalformedToolCall {
  /** The whole span, `<|tool_call_start|>` and (when present) `<|tool_call_end|>` included. */
  raw: string;
  /** Where and why parsing failed (code TOOL_CALL_PARSE_FAILED; offsets count in the whole text). */
  error: ToolCallParseError;
  /** The span had no end marker: generation stopped (e.g. at maxTokens) inside the call. */
  unterminated: boolean;
}

export interface ToolCallsRead {
  /** The text outside every tool-call span, parsed or not. */
  content: string;
  /** The calls of the spans that parsed, in order. */
  toolCalls: ToolCall[];
  /** The spans that did not, in order; empty when every call parsed. */
  malformed: MalformedToolCall[];
}

/**
 * `parseToolCalls` that never throws on a broken call: each span is parsed on its own, and one
 * that fails is reported in `malformed` (raw text + error) while the other spans' calls and the
 * text around them are kept. Models do emit malformed calls; the rest of the reply still counts.
 */
export function readToolCalls(text: string): ToolCallsRead {
  const result: ToolCallsRead = { content: "", toolCalls: [], malformed: [] };
  for (const piece of toolCallSpans(text)) {
    if (typeof piece === "string") {
      result.content += piece;
      continue;
    }
    try {
      result.toolCalls.push(...new CallParser(text, piece.bodyStart, piece.bodyEnd).parseSpan());
    } catch (e) {
      if (!(e instanceof ToolCallParseError)) throw e;
      result.malformed.push({ raw: text.slice(piece.start, piece.end), error: e, unterminated: piece.unterminated });
    }
  }
  return result;
}

interface Span {
  start: number;
  end: number;
  bodyStart: number;
  bodyEnd: number;
  unterminated: boolean;
}

/** The text in order as plain pieces (strings) and tool-call spans. */
function* toolCallSpans(text: string): Generator<string | Span> {
  let pos = 0;
  for (;;) {
    const start = text.indexOf(TOOL_CALL_START, pos);
    if (start < 0) break;
    yield text.slice(pos, start);
    const bodyStart = start + TOOL_CALL_START.length;
    const close = text.indexOf(TOOL_CALL_END, bodyStart);
    const bodyEnd = close < 0 ? text.length : close;
    pos = close < 0 ? text.length : close + TOOL_CALL_END.length;
    yield { start, end: pos, bodyStart, bodyEnd, unterminated: close < 0 };
  }
  yield text.slice(pos);
}

/**
 * Writes calls as LFM2 emits them: `[name(key="v", n=1, flag=True)]`, wrapped in the
 * `<|tool_call_start|>`/`<|tool_call_end|>` markers unless `markers` is false.
 * Numbers print as Python does (an integral JS number prints as an int: `1`, not `1.0`; see
 * `formatPythonNumber`).
 */
export function formatToolCalls(calls: readonly ToolCall[], opts: { markers?: boolean } = {}): string {
  const list = `[${calls.map(formatCall).join(", ")}]`;
  return (opts.markers ?? true) ? TOOL_CALL_START + list + TOOL_CALL_END : list;
}

/**
 * Python's `repr(float)` for a finite number: shortest round-trip digits (as JS), but fixed
 * notation only for decimal exponents -4..15 and always with a fraction or exponent
 * (`1.0`, `1e-05`, `1e+16`, `1234.5`).
 */
export function formatPythonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new LfmError("INVALID_ARGUMENT", `formatPythonFloat needs a finite number, got ${x}.`);
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mantissa, expText] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  if (digits.length <= exp + 1) return `${sign}${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/**
 * Python's repr of a JS number, which no longer knows whether it was an int or a float: integral
 * values within ±2^53 print as ints (`7`); larger ones as floats (`1.5e+16`), since a JS number
 * that big almost always comes from a float (JSON.parse("1e300")) and an int's exact digits are
 * lost anyway; the rest as floats (`2.5`, `1e-07`).
 */
export function formatPythonNumber(x: number): string {
  return Number.isSafeInteger(x) ? String(x) : formatPythonFloat(x);
}

// ---------------------------------------------------------------------------------------------
// Lexer

type TokenKind = "punct" | "string" | "number" | "name" | "eof";

interface Token {
  kind: TokenKind;
  /** punctuation char, identifier, or the string's decoded value */
  text: string;
  /** numeric value for "number" */
  num: number;
  offset: number;
}

const PUNCTUATION = new Set(["[", "]", "(", ")", "{", "}", ",", ":", "=", ".", "-", "+"]);
const NAME = /[\p{L}_][\p{L}\p{N}_]*/uy;
const NUMBER = /(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?/y;
// Python's escapes, plus JSON's "\/" (Python would keep the backslash) so that JSON-form calls read right.
const SIMPLE_ESCAPES: Record<string, string> = {
  "\\": "\\", "'": "'", '"': '"', n: "\n", r: "\r", t: "\t", b: "\b", f: "\f", v: "\v", a: "\x07", "/": "/",
};

class Lexer {
  private pos: number;
  constructor(
    private readonly text: string,
    start: number,
    private readonly end: number,
  ) {
    this.pos = start;
  }

  fail(offset: number, problem: string): never {
    throw new ToolCallParseError(this.text, offset, problem);
  }

  next(): Token {
    const { text, end } = this;
    while (this.pos < end && /\s/.test(text[this.pos])) this.pos++;
    const offset = this.pos;
    if (offset >= end) return { kind: "eof", text: "", num: 0, offset };
    const ch = text[offset];
    if (ch === '"' || ch === "'") return this.string(offset, offset, false);
    if (/[rRuU]/.test(ch) && (text[offset + 1] === '"' || text[offset + 1] === "'")) {
      return this.string(offset, offset + 1, ch === "r" || ch === "R");
    }
    if (/\d/.test(ch) || (ch === "." && /\d/.test(text[offset + 1] ?? ""))) {
      NUMBER.lastIndex = offset;
      const raw = NUMBER.exec(text)![0];
      this.pos = offset + raw.length;
      return { kind: "number", text: raw, num: Number(raw.replaceAll("_", "")), offset };
    }
    if (PUNCTUATION.has(ch)) {
      this.pos++;
      return { kind: "punct", text: ch, num: 0, offset };
    }
    NAME.lastIndex = offset;
    const name = NAME.exec(text);
    if (name && offset + name[0].length <= end) {
      this.pos = offset + name[0].length;
      return { kind: "name", text: name[0], num: 0, offset };
    }
    return this.fail(offset, `unexpected character ${JSON.stringify(ch)}`);
  }

  /** A Python string literal (single, double or triple quotes; `r` prefix = raw). */
  private string(offset: number, quotePos: number, raw: boolean): Token {
    const { text, end } = this;
    const q = text[quotePos];
    const triple = text.startsWith(q.repeat(3), quotePos) && quotePos + 3 <= end;
    const closing = triple ? q.repeat(3) : q;
    let i = quotePos + closing.length;
    let value = "";
    for (;;) {
      if (i >= end || (!triple && text[i] === "\n")) return this.fail(offset, "unterminated string literal");
      if (text.startsWith(closing, i)) break;
      const c = text[i];
      if (c !== "\\") {
        value += c;
        i++;
        continue;
      }
      const e = text[i + 1];
      if (e === undefined || i + 1 >= end) return this.fail(offset, "unterminated string literal");
      if (raw) {
        value += c + e;
        i += 2;
        continue;
      }
      if (e in SIMPLE_ESCAPES) {
        value += SIMPLE_ESCAPES[e];
        i += 2;
      } else if (e === "\n") {
        i += 2; // line continuation
      } else if (/[0-7]/.test(e)) {
        const oct = /^[0-7]{1,3}/.exec(text.slice(i + 1, i + 4))![0];
        value += String.fromCharCode(parseInt(oct, 8));
        i += 1 + oct.length;
      } else if (e === "x" || e === "u" || e === "U") {
        const width = e === "x" ? 2 : e === "u" ? 4 : 8;
        const hex = text.slice(i + 2, i + 2 + width);
        if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(hex)) return this.fail(i, `bad \\${e} escape`);
        const code = parseInt(hex, 16);
        if (code > 0x10ffff) return this.fail(i, `\\${e} escape beyond U+10FFFF`);
        value += String.fromCodePoint(code);
        i += 2 + width;
      } else {
        value += c + e; // Python keeps unknown escapes verbatim
        i += 2;
      }
    }
    this.pos = i + closing.length;
    return { kind: "string", text: value, num: 0, offset };
  }
}

// ---------------------------------------------------------------------------------------------
// Parser

class CallParser {
  private readonly lexer: Lexer;
  private tok: Token;
  private ahead: Token | undefined;

  constructor(
    private readonly text: string,
    start: number,
    end: number,
  ) {
    this.lexer = new Lexer(text, start, end);
    this.tok = this.lexer.next();
  }

  /** The body of one `<|tool_call_start|>…<|tool_call_end|>` span. */
  parseSpan(): ToolCall[] {
    let calls: ToolCall[];
    if (this.isPunct("[")) {
      const first = this.peek();
      calls = first.kind === "punct" && first.text === "{" ? this.jsonCalls() : this.pythonCalls();
    } else if (this.isPunct("{")) {
      calls = [this.jsonCall()];
    } else if (this.tok.kind === "name") {
      calls = [this.pythonCall()]; // a bare call without the list brackets
    } else {
      return this.fail(this.tok, "expected a list of calls");
    }
    if (this.tok.kind !== "eof") this.fail(this.tok, `unexpected ${describe(this.tok)} after the call list`);
    return calls;
  }

  // --- Pythonic form: [name(key=value, ...), ...]

  private pythonCalls(): ToolCall[] {
    return this.sequence("[", "]", () => this.pythonCall());
  }

  private pythonCall(): ToolCall {
    const nameTok = this.expect("name", "a function name");
    let name = nameTok.text;
    while (this.isPunct(".")) {
      this.advance();
      name += "." + this.expect("name", "a name after '.'").text;
    }
    if (!this.isPunct("(")) this.fail(this.tok, `expected "(" after function name ${name}`);
    const args: Record<string, JsonValue> = {};
    this.sequence("(", ")", () => {
      const key = this.tok;
      const eq = this.peek();
      if (key.kind !== "name" || eq.kind !== "punct" || eq.text !== "=") {
        this.fail(key, `expected a keyword argument name=value in the call to ${name} (positional arguments are not supported)`);
      }
      this.advance();
      this.advance();
      if (Object.hasOwn(args, key.text)) this.fail(key, `keyword argument ${key.text} repeated in the call to ${name}`);
      args[key.text] = this.value();
    });
    return { name, arguments: args };
  }

  // --- JSON form: [{"name": ..., "arguments": {...}}, ...]

  private jsonCalls(): ToolCall[] {
    return this.sequence("[", "]", () => this.jsonCall());
  }

  private jsonCall(): ToolCall {
    const at = this.tok;
    const obj = this.value();
    if (!isJsonObject(obj) || typeof obj.name !== "string") return this.fail(at, 'expected a call object with a string "name"');
    let args: JsonValue = obj.arguments ?? {};
    if (typeof args === "string") {
      // OpenAI-style calls carry the arguments as a JSON string.
      try {
        args = JSON.parse(args) as JsonValue;
      } catch {
        return this.fail(at, `the "arguments" string of ${obj.name} is not valid JSON`);
      }
    }
    if (!isJsonObject(args)) return this.fail(at, `"arguments" of ${obj.name} must be an object`);
    return { name: obj.name, arguments: args };
  }

  // --- Values (Python literals, JSON accepted)

  private value(): JsonValue {
    const t = this.tok;
    if (t.kind === "string") {
      let s = "";
      while (this.tok.kind === "string") s += this.advance().text; // "a" "b" concatenates, as in Python
      return s;
    }
    if (t.kind === "number") return this.advance().num;
    if (t.kind === "punct") {
      switch (t.text) {
        case "-":
        case "+": {
          this.advance();
          const n = this.tok;
          if (n.kind !== "number") return this.fail(n, `expected a number after "${t.text}"`);
          this.advance();
          return t.text === "-" ? -n.num : n.num;
        }
        case "[":
          return this.sequence("[", "]", () => this.value());
        case "(":
          return this.parenthesized();
        case "{":
          return this.dict();
      }
    }
    if (t.kind === "name") {
      const next = this.peek();
      if (next.kind === "punct" && next.text === "(") {
        return this.fail(t, `nested call ${t.text}(...) is not allowed in tool-call arguments`);
      }
      const constant = NAMED_CONSTANTS.get(t.text);
      if (constant !== undefined) {
        this.advance();
        return constant.value;
      }
      return this.fail(t, `unknown name ${t.text} (expected a literal: string, number, True, False, None, list or dict)`);
    }
    return this.fail(t, `expected a value, found ${describe(t)}`);
  }

  /** `(v)` is v; `()`, `(v,)` and `(a, b)` are tuples, returned as arrays. */
  private parenthesized(): JsonValue {
    const open = this.advance();
    if (this.isPunct(")")) {
      this.advance();
      return [];
    }
    const first = this.value();
    if (this.isPunct(")")) {
      this.advance();
      return first;
    }
    if (!this.isPunct(",")) return this.fail(this.tok, `expected "," or ")" to close the "(" at offset ${open.offset}`);
    this.advance();
    const items = [first];
    while (!this.isPunct(")")) {
      items.push(this.value());
      if (this.isPunct(",")) this.advance();
      else if (!this.isPunct(")")) return this.fail(this.tok, `expected "," or ")" to close the "(" at offset ${open.offset}`);
    }
    this.advance();
    return items;
  }

  private dict(): { [key: string]: JsonValue } {
    const obj: { [key: string]: JsonValue } = {};
    this.sequence("{", "}", () => {
      const keyTok = this.tok;
      const key = this.value();
      if (typeof key !== "string" && typeof key !== "number") return this.fail(keyTok, "dict keys must be strings or numbers");
      if (!this.isPunct(":")) this.fail(this.tok, `expected ":" after a dict key, found ${describe(this.tok)}`);
      this.advance();
      obj[String(key)] = this.value();
    });
    return obj;
  }

  /** `open item (, item)* [,] close`, calling `item` with the current token at each element. */
  private sequence<T>(open: string, close: string, item: () => T): T[] {
    const openTok = this.advance();
    if (openTok.kind !== "punct" || openTok.text !== open) this.fail(openTok, `expected "${open}"`);
    const items: T[] = [];
    while (!this.isPunct(close)) {
      items.push(item());
      if (this.isPunct(",")) this.advance();
      else if (!this.isPunct(close)) {
        this.fail(this.tok, `expected "," or "${close}" to close the "${open}" at offset ${openTok.offset}, found ${describe(this.tok)}`);
      }
    }
    this.advance();
    return items;
  }

  // --- Token plumbing

  private advance(): Token {
    const t = this.tok;
    this.tok = this.ahead ?? this.lexer.next();
    this.ahead = undefined;
    return t;
  }

  private peek(): Token {
    this.ahead ??= this.lexer.next();
    return this.ahead;
  }

  private isPunct(p: string): boolean {
    return this.tok.kind === "punct" && this.tok.text === p;
  }

  private expect(kind: TokenKind, what: string): Token {
    if (this.tok.kind !== kind) this.fail(this.tok, `expected ${what}, found ${describe(this.tok)}`);
    return this.advance();
  }

  private fail(t: Token, problem: string): never {
    throw new ToolCallParseError(this.text, t.offset, problem);
  }
}

const NAMED_CONSTANTS = new Map<string, { value: JsonValue }>([
  ["True", { value: true }],
  ["False", { value: false }],
  ["None", { value: null }],
  ["true", { value: true }],
  ["false", { value: false }],
  ["null", { value: null }],
]);

function describe(t: Token): string {
  switch (t.kind) {
    case "eof":
      return "the end of the call";
    case "string":
      return `string ${JSON.stringify(t.text)}`;
    case "number":
      return `number ${t.text}`;
    default:
      return JSON.stringify(t.text);
  }
}

function isJsonObject(v: JsonValue | undefined): v is { [key: string]: JsonValue } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Formatting

const IDENTIFIER = /^[\p{L}_][\p{L}\p{N}_]*$/u;

function formatCall(call: ToolCall): string {
  if (!call.name.split(".").every((part) => IDENTIFIER.test(part))) {
    throw new LfmError("INVALID_ARGUMENT", `Tool name ${JSON.stringify(call.name)} is not a Python identifier; it cannot be written as a call.`);
  }
  const args = Object.entries(call.arguments).map(([key, value]) => {
    if (!IDENTIFIER.test(key)) {
      throw new LfmError("INVALID_ARGUMENT", `Argument name ${JSON.stringify(key)} of ${call.name} is not a Python identifier.`);
    }
    return `${key}=${formatPythonValue(value)}`;
  });
  return `${call.name}(${args.join(", ")})`;
}

function formatPythonValue(v: JsonValue): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new LfmError("INVALID_ARGUMENT", `Tool-call argument ${v} is not a finite number.`);
    return formatPythonNumber(v);
  }
  if (typeof v === "string") return formatPythonString(v);
  if (Array.isArray(v)) return `[${v.map(formatPythonValue).join(", ")}]`;
  return `{${Object.entries(v).map(([k, x]) => `${formatPythonString(k)}: ${formatPythonValue(x)}`).join(", ")}}`;
}

/** A double-quoted Python string literal (the quoting LFM2 uses in its calls). */
function formatPythonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + code.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}
