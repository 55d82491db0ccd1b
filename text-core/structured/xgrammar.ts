/**
 * Every contact with xgrammar (`@mlc-ai/web-xgrammar`, WASM) lives here: loading it in Node,
 * the tokenizer info built from the checkpoint's vocabulary (once per tokenizer), compiled
 * grammars (cached by content hash, bounded), and the per-sequence matcher that masks logits.
 *
 * This module is only imported dynamically (see response-format.ts), so a CLI run that asks for no
 * structured output never loads the 1 MB bundle.
 *
 * Errors: xgrammar reports a bad grammar by printing `[FATAL] …` on stderr and aborting the call
 * (the module stays usable); a JSON-schema feature it drops prints `[WARNING] …` and compiles a
 * weaker grammar. `withCapturedDiagnostics` takes those lines (see `withErrorRouter`) so that the first becomes
 * a typed error with xgrammar's position and the second is refused instead of enforced weaker.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import type { CompiledGrammar, GrammarCompiler, GrammarMatcher, TokenizerInfo } from "@mlc-ai/web-xgrammar";
import { LfmError, type LfmErrorCode } from "../errors.ts";
import type { Lfm2Tokenizer } from "../tokenizer.ts";
import { substituteLeaves } from "./json-schema.ts";

type XGrammarModule = typeof import("@mlc-ai/web-xgrammar");

let loading: Promise<XGrammarModule> | undefined;

/** While set, receives xgrammar's stderr lines; returns true for the lines it took. */
let diagnosticSink: ((line: string) => boolean) | undefined;

/**
 * xgrammar's WASM prints through `console.error.bind(console)`, bound when the module starts. It
 * starts inside `start()`, with `console.error` pointed at a router: later, our sink takes the
 * diagnostics of the call under way and everything else goes to the console as before.
 */
async function withErrorRouter<T>(start: () => Promise<T>): Promise<T> {
  const original = console.error;
  const router = (...args: unknown[]) => {
    const text = args.map(String).join(" ");
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    if (diagnosticSink && lines.length > 0 && lines.every((l) => diagnosticSink!(l))) return;
    original.apply(console, args);
  };
  console.error = router;
  try {
    return await start();
  } finally {
    if (console.error === router) console.error = original;
  }
}

/** Imports the UMD bundle once: it reads `require` and `__filename` and publishes `globalThis.xgrammar`. */
export function loadXGrammar(): Promise<XGrammarModule> {
  loading ??= withErrorRouter(async () => {
    const require = createRequire(import.meta.url);
    const entry = require.resolve("@mlc-ai/web-xgrammar");
    const g = globalThis as Record<string, unknown>;
    const shims = (["require", "__filename"] as const).filter((name) => !(name in g));
    g.require ??= require;
    g.__filename ??= entry;
    try {
      await import("@mlc-ai/web-xgrammar");
      const xg = g.xgrammar as XGrammarModule | undefined;
      if (!xg?.GrammarCompiler) throw new LfmError("RUNTIME_FAILED", `@mlc-ai/web-xgrammar (${entry}) did not load: globalThis.xgrammar is missing.`);
      // The WASM module starts on first use: make that happen here, under the router (and the shims).
      (await xg.Grammar.builtinJSONGrammar()).dispose();
      return xg;
    } finally {
      for (const name of shims) delete g[name]; // leave no CommonJS look-alikes in an ES module program
    }
  });
  return loading;
}

/** How a grammar is given to the compiler. */
export type GrammarSource =
  /** `leaves`: placeholder → EBNF rule, from `prepareJsonSchema`. */
  | { kind: "json_schema"; schema: string; leaves: [string, string][]; indent: number | undefined }
  | { kind: "json_object"; indent: number | undefined }
  | { kind: "ebnf"; ebnf: string }
  | { kind: "regex"; pattern: string }
  | { kind: "structural_tag"; tag: string };

/** Which special tokens the grammar may spell as text (the tool-call markers, for tool grammars). */
export type VocabView = "plain" | "tool-calls";

const TOOL_MARKERS = ["<|tool_call_start|>", "<|tool_call_end|>"];

/** The tokenizer-level state shared by every grammar of one tokenizer and vocabulary view. */
class VocabCompiler {
  private readonly compiled = new Map<string, CompiledGrammar>(); // insertion order = LRU order
  constructor(
    readonly info: TokenizerInfo,
    readonly compiler: GrammarCompiler,
    readonly utf8: Utf8Table,
  ) {}

  async compile(xg: XGrammarModule, source: GrammarSource): Promise<CompiledGrammar> {
    const key = createHash("sha256").update(JSON.stringify(source)).digest("hex");
    const hit = this.compiled.get(key);
    if (hit) {
      this.compiled.delete(key);
      this.compiled.set(key, hit);
      return hit;
    }
    const grammar = await compileSource(xg, this.compiler, source);
    this.compiled.set(key, grammar);
    while (this.compiled.size > COMPILED_GRAMMAR_CACHE) {
      const [oldest, evicted] = this.compiled.entries().next().value as [string, CompiledGrammar];
      this.compiled.delete(oldest);
      // A matcher being created from it right now (after an await) still reads it: free it once
      // the current turn of the event loop is over. Matchers hold their own reference.
      setImmediate(() => evicted.dispose());
    }
    return grammar;
  }
}

/** Compiled grammars kept per tokenizer and view (measured 5–17 ms a schema on the tiny model's vocabulary; issue 16 measured 0.4 s for a nested schema at 65,536 tokens). */
export const COMPILED_GRAMMAR_CACHE = 32;

const vocabCompilers = new WeakMap<Lfm2Tokenizer, Map<string, Promise<VocabCompiler>>>();

/**
 * The raw (byte-level encoded) token strings by id, as xgrammar wants them. Special added tokens
 * become "" (xgrammar never allows an empty token), except the tool-call markers in the
 * "tool-calls" view, so a JSON string can never contain `<|im_start|>` and text decoded with
 * `skipSpecialTokens` is exactly what the grammar matched.
 */
export function encodedVocab(tokenizer: Lfm2Tokenizer, size: number, view: VocabView): string[] {
  const vocab: string[] = new Array(size);
  for (let id = 0; id < size; id++) {
    const token = tokenizer.idToToken(id);
    if (token === undefined) vocab[id] = "";
    else if (tokenizer.specialTokenIds.has(id)) vocab[id] = view === "tool-calls" && TOOL_MARKERS.includes(token) ? token : "";
    else vocab[id] = token;
  }
  return vocab;
}

async function vocabCompiler(xg: XGrammarModule, tokenizer: Lfm2Tokenizer, logitsWidth: number, view: VocabView): Promise<VocabCompiler> {
  let byView = vocabCompilers.get(tokenizer);
  if (!byView) vocabCompilers.set(tokenizer, (byView = new Map()));
  const key = `${view}:${logitsWidth}`;
  let entry = byView.get(key);
  if (!entry) {
    entry = (async () => {
      const vocab = encodedVocab(tokenizer, logitsWidth, view);
      // Stop tokens are given to each matcher (the caller's stop ids); EOS is the default.
      const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, "byte_level", false, logitsWidth, [tokenizer.eosTokenId]);
      return new VocabCompiler(info, await xg.GrammarCompiler.createGrammarCompiler(info, false), new Utf8Table(vocab));
    })();
    byView.set(key, entry);
    entry.catch(() => byView.delete(key));
  }
  return entry;
}

async function compileSource(xg: XGrammarModule, compiler: GrammarCompiler, source: GrammarSource): Promise<CompiledGrammar> {
  const compact: [string, string] = [",", ":"];
  const pretty: [string, string] = [",", ": "];
  switch (source.kind) {
    case "json_schema": {
      // No free whitespace: indent -1 = one line with fixed separators, or a fixed indentation.
      const indent = source.indent ?? -1;
      const separators = source.indent === undefined ? compact : pretty;
      const compile = async () => {
        if (source.leaves.length === 0) return compiler.compileJSONSchema(source.schema, false, indent, separators, true);
        // xgrammar's own schema → EBNF conversion (public, if filed under "Testings"), then our leaves.
        const ebnf = await xg.Testings._jsonSchemaToEBNF(source.schema, false, indent, separators, true);
        return compiler.compileGrammar(substituteLeaves(ebnf, new Map(source.leaves)));
      };
      const { result, warnings } = await withCapturedDiagnostics("SCHEMA_INVALID", "JSON schema", compile);
      if (warnings.length > 0) {
        result.dispose();
        throw new LfmError("SCHEMA_UNSUPPORTED", `xgrammar would enforce a weaker schema than the one given: ${warnings.join("; ")}.`);
      }
      return result;
    }
    case "json_object":
      return (
        await withCapturedDiagnostics("SCHEMA_INVALID", "JSON schema", () =>
          compiler.compileJSONSchema(JSON.stringify({ type: "object" }), false, source.indent ?? -1, source.indent === undefined ? compact : pretty, false),
        )
      ).result;
    case "ebnf":
      return (await withCapturedDiagnostics("GRAMMAR_INVALID", "EBNF grammar", () => compiler.compileGrammar(source.ebnf))).result;
    case "regex":
      return (
        await withCapturedDiagnostics("REGEX_INVALID", "regular expression", () =>
          compiler.compileStructuralTag({ type: "structural_tag", format: { type: "regex", pattern: source.pattern } }),
        )
      ).result;
    case "structural_tag":
      return (await withCapturedDiagnostics("GRAMMAR_INVALID", "tool-call grammar", () => compiler.compileStructuralTag(source.tag))).result;
  }
}

const DIAGNOSTIC = /^\[(FATAL|WARNING)\] [^:]*:\d+: (.*)$/;

/**
 * Runs one xgrammar call with its stderr diagnostics captured instead of printed. A failure
 * becomes `code` with xgrammar's own message (it names the line/column or position).
 */
async function withCapturedDiagnostics<T>(code: LfmErrorCode, what: string, call: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  // One compile at a time, so that each one's diagnostics are its own.
  const previous = compiling;
  let release = () => {};
  compiling = new Promise((resolve) => (release = resolve));
  await previous;
  try {
    return await captureDiagnostics(code, what, call);
  } finally {
    release();
  }
}

let compiling: Promise<void> = Promise.resolve();

async function captureDiagnostics<T>(code: LfmErrorCode, what: string, call: () => Promise<T>): Promise<{ result: T; warnings: string[] }> {
  const fatals: string[] = [];
  const warnings: string[] = [];
  diagnosticSink = (line) => {
    const m = DIAGNOSTIC.exec(line);
    if (m) (m[1] === "FATAL" ? fatals : warnings).push(m[2]);
    return m !== null || /^Aborted\(/.test(line);
  };
  try {
    return { result: await call(), warnings };
  } catch (e) {
    const detail = fatals.length > 0 ? fatals.join("; ") : e instanceof Error ? e.message : String(e);
    throw new LfmError(code, `The ${what} is not valid: ${detail.replace(/[.\s]+$/, "")}.`, { cause: e });
  } finally {
    diagnosticSink = undefined;
  }
}

/**
 * One sequence's grammar state. `mask` sets the logits of every token the grammar rejects to
 * -Infinity; `accept` advances it; `finished` says only a stop token may follow.
 */
export class TokenMatcher {
  private bitmask: Int32Array | undefined;
  private utf8State = 0;
  constructor(
    private readonly matcher: GrammarMatcher,
    private readonly stopIds: ReadonlySet<number>,
    private readonly utf8: Utf8Table,
  ) {}

  /** The allowed-token bitmask for the next token (cached until `accept`): the grammar's, less the tokens that would make the output invalid UTF-8. */
  async allowed(): Promise<Int32Array> {
    if (!this.bitmask) {
      const bits = await this.matcher.getNextTokenBitmask();
      const valid = this.utf8.allowedIn(this.utf8State);
      for (let w = 0; w < bits.length; w++) bits[w] &= valid[w];
      this.bitmask = bits;
    }
    return this.bitmask;
  }

  async mask(logits: Float32Array): Promise<void> {
    const bits = await this.allowed();
    const V = logits.length;
    for (let w = 0; w < bits.length; w++) {
      const word = bits[w];
      if (word === -1) continue;
      const base = w * 32;
      if (word === 0) {
        logits.fill(-Infinity, base, Math.min(base + 32, V));
        continue;
      }
      for (let b = 0; b < 32 && base + b < V; b++) if (((word >>> b) & 1) === 0) logits[base + b] = -Infinity;
    }
  }

  accept(id: number): void {
    if (!this.matcher.acceptToken(id)) {
      throw new LfmError("RUNTIME_FAILED", `the grammar matcher rejected token ${id}, which its own mask allowed.`);
    }
    this.utf8State = this.utf8.next(this.utf8State, id);
    this.bitmask = undefined;
  }

  /** The one token allowed next when there is exactly one (and it is not a stop token), else undefined. */
  async forcedToken(): Promise<number | undefined> {
    const bits = await this.allowed();
    let found: number | undefined;
    for (let w = 0; w < bits.length; w++) {
      const word = bits[w];
      if (word === 0) continue;
      if (found !== undefined || (word & (word - 1)) !== 0) return undefined;
      found = w * 32 + (31 - Math.clz32(word & -word));
    }
    return found === undefined || this.stopIds.has(found) ? undefined : found;
  }

  /** True when the grammar is complete and allows nothing but a stop token next. */
  async finished(): Promise<boolean> {
    if (this.matcher.isTerminated()) return true;
    const bits = await this.allowed();
    for (let w = 0; w < bits.length; w++) {
      let word = bits[w];
      while (word !== 0) {
        const b = 31 - Math.clz32(word & -word);
        if (!this.stopIds.has(w * 32 + b)) return false;
        word &= word - 1;
      }
    }
    return true;
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

/** A compiled grammar ready to start matchers; what generation receives. */
export interface CompiledConstraint {
  newMatcher(stopIds: readonly number[]): Promise<TokenMatcher>;
}

/** Compiles (or finds in the cache) `source` for this tokenizer and logits width. */
export async function compileConstraint(tokenizer: Lfm2Tokenizer, logitsWidth: number, view: VocabView, source: GrammarSource): Promise<CompiledConstraint> {
  const xg = await loadXGrammar();
  const vc = await vocabCompiler(xg, tokenizer, logitsWidth, view);
  await vc.compile(xg, source); // compile errors surface here, before any token
  return {
    async newMatcher(stopIds) {
      const ids = stopIds.length > 0 ? [...stopIds] : [tokenizer.eosTokenId];
      // From the cache again: other grammars may have pushed this one out since (then it compiles anew).
      const compiled = await vc.compile(xg, source);
      const matcher = await xg.GrammarMatcher.createGrammarMatcher(compiled, ids, false);
      return new TokenMatcher(matcher, new Set(ids), vc.utf8);
    },
  };
}

/**
 * UTF-8 validity of the output, token by token. xgrammar decodes byte-level tokens leniently: a
 * negated character class such as JSON's string `[^"\\]` accepts an invalid sequence like the
 * overlong C0 B5, which the tokenizer then decodes as two U+FFFD (so a `maxLength: 6` string came
 * out 7 characters long). This table removes every token that would make the bytes so far invalid
 * UTF-8, given where the previous token left the current character.
 *
 * States: 0 = at a character boundary; 1–7 = inside a character, by how many continuation bytes
 * are still due and the range the next one must lie in (E0, ED, F0, F4 narrow it).
 */
export class Utf8Table {
  private static readonly STATES = 8;
  private readonly transitions: Int8Array; // [state * V + id] → next state, -1 = invalid
  private readonly masks: Int32Array[]; // per state: bit set = the token keeps the bytes valid UTF-8

  constructor(encodedVocab: readonly string[]) {
    const V = encodedVocab.length;
    const S = Utf8Table.STATES;
    this.transitions = new Int8Array(S * V);
    this.masks = Array.from({ length: S }, () => new Int32Array(Math.ceil(V / 32)));
    for (let id = 0; id < V; id++) {
      const bytes = tokenBytes(encodedVocab[id]);
      for (let s = 0; s < S; s++) {
        let state = s;
        for (let i = 0; i < bytes.length && state >= 0; i++) state = utf8Step(state, bytes[i]);
        this.transitions[s * V + id] = state;
        if (state >= 0) this.masks[s][id >> 5] |= 1 << (id & 31);
      }
    }
  }

  allowedIn(state: number): Int32Array {
    return this.masks[state];
  }

  next(state: number, id: number): number {
    const V = this.transitions.length / Utf8Table.STATES;
    return Math.max(0, this.transitions[state * V + id]);
  }
}

/** One byte through the UTF-8 validator (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF). */
function utf8Step(state: number, b: number): number {
  if (state === 0) {
    if (b < 0x80) return 0;
    if (b >= 0xc2 && b <= 0xdf) return 1;
    if (b === 0xe0) return 3;
    if (b === 0xed) return 4;
    if (b >= 0xe1 && b <= 0xef) return 2;
    if (b === 0xf0) return 6;
    if (b >= 0xf1 && b <= 0xf3) return 5;
    if (b === 0xf4) return 7;
    return -1;
  }
  const [lo, hi] = state === 3 ? [0xa0, 0xbf] : state === 4 ? [0x80, 0x9f] : state === 6 ? [0x90, 0xbf] : state === 7 ? [0x80, 0x8f] : [0x80, 0xbf];
  if (b < lo || b > hi) return -1;
  return state === 1 ? 0 : state <= 4 ? 1 : 2;
}

/** GPT-2's byte-level alphabet, reversed: the character that stands for each byte → the byte. */
const BYTE_OF_CHAR: Map<number, number> = (() => {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = [...bytes];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + extra++);
    }
  }
  return new Map(chars.map((c, i) => [c, bytes[i]]));
})();

/** The bytes a byte-level token string stands for (a character outside the alphabet, as in a marker token, as its own UTF-8). */
function tokenBytes(token: string): number[] {
  const out: number[] = [];
  for (const ch of token) {
    const code = ch.codePointAt(0)!;
    const byte = BYTE_OF_CHAR.get(code);
    if (byte !== undefined) out.push(byte);
    else out.push(...Buffer.from(ch, "utf8"));
  }
  return out;
}
