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
 * weaker grammar. `withCapturedDiagnostics` takes those lines off stderr so that the first becomes
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

/** Imports the UMD bundle once: it reads `require` and `__filename` and publishes `globalThis.xgrammar`. */
export function loadXGrammar(): Promise<XGrammarModule> {
  loading ??= (async () => {
    const require = createRequire(import.meta.url);
    const entry = require.resolve("@mlc-ai/web-xgrammar");
    const g = globalThis as Record<string, unknown>;
    g.require ??= require;
    g.__filename ??= entry;
    await import("@mlc-ai/web-xgrammar");
    const xg = g.xgrammar as XGrammarModule | undefined;
    if (!xg?.GrammarCompiler) throw new LfmError("RUNTIME_FAILED", `@mlc-ai/web-xgrammar (${entry}) did not load: globalThis.xgrammar is missing.`);
    return xg;
  })();
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
      evicted.dispose();
    }
    return grammar;
  }
}

/** Compiled grammars kept per tokenizer (a nested schema compiles in ~50 ms on the tiny vocab, 0.4 s on 65k). */
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
      return new VocabCompiler(info, await xg.GrammarCompiler.createGrammarCompiler(info, false));
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
  const fatals: string[] = [];
  const warnings: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    const ours = lines.length > 0 && lines.every((l) => DIAGNOSTIC.test(l) || /^Aborted\(/.test(l));
    if (!ours) return (write as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
    for (const line of lines) {
      const m = DIAGNOSTIC.exec(line);
      if (m) (m[1] === "FATAL" ? fatals : warnings).push(m[2]);
    }
    return true;
  }) as typeof process.stderr.write;
  try {
    return { result: await call(), warnings };
  } catch (e) {
    const detail = fatals.length > 0 ? fatals.join("; ") : e instanceof Error ? e.message : String(e);
    throw new LfmError(code, `The ${what} is not valid: ${detail.replace(/[.\s]+$/, "")}.`, { cause: e });
  } finally {
    process.stderr.write = write;
  }
}

/**
 * One sequence's grammar state. `mask` sets the logits of every token the grammar rejects to
 * -Infinity; `accept` advances it; `finished` says only a stop token may follow.
 */
export class TokenMatcher {
  private bitmask: Int32Array | undefined;
  constructor(
    private readonly matcher: GrammarMatcher,
    private readonly stopIds: ReadonlySet<number>,
  ) {}

  /** The allowed-token bitmask for the next token (cached until `accept`). */
  async allowed(): Promise<Int32Array> {
    this.bitmask ??= await this.matcher.getNextTokenBitmask();
    return this.bitmask;
  }

  async mask(logits: Float32Array): Promise<void> {
    const bits = await this.allowed();
    const V = logits.length;
    for (let w = 0; w < bits.length; w++) {
      const word = bits[w];
      if (word === -1) continue;
      const base = w * 32;
      for (let b = 0; b < 32 && base + b < V; b++) if (((word >>> b) & 1) === 0) logits[base + b] = -Infinity;
    }
  }

  accept(id: number): void {
    if (!this.matcher.acceptToken(id)) {
      throw new LfmError("RUNTIME_FAILED", `the grammar matcher rejected token ${id}, which its own mask allowed.`);
    }
    this.bitmask = undefined;
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
  const compiled = await vc.compile(xg, source);
  return {
    async newMatcher(stopIds) {
      const ids = stopIds.length > 0 ? [...stopIds] : [tokenizer.eosTokenId];
      const matcher = await xg.GrammarMatcher.createGrammarMatcher(compiled, ids, false);
      return new TokenMatcher(matcher, new Set(ids));
    },
  };
}
