/**
 * Structured output, the library side: what a caller asks for (`ResponseFormat`, `ToolChoice`)
 * and its compilation into a constraint that generation applies token by token.
 *
 * The schema is checked (json-schema.ts) before xgrammar is even loaded, so bad input fails fast;
 * xgrammar itself (xgrammar.ts) is imported on first use only.
 */
import type { ToolDefinition } from "../chat.ts";
import { LfmError } from "../errors.ts";
import type { Lfm2Tokenizer } from "../tokenizer.ts";
import { prepareJsonSchema } from "./json-schema.ts";
import { autoToolCallTag, requiredToolCallEbnf } from "./tool-grammar.ts";
import type { CompiledConstraint, GrammarSource, VocabView } from "./xgrammar.ts";

export type { CompiledConstraint, TokenMatcher } from "./xgrammar.ts";

/** The shape the reply must have. JSON is compact (no whitespace between tokens) unless `indent` is given. */
export type ResponseFormat =
  | { type: "json_schema"; schema: unknown; indent?: number }
  | { type: "json_object"; indent?: number }
  | { type: "grammar"; ebnf: string }
  | { type: "regex"; pattern: string };

/** "auto": text or calls, calls constrained once started; "required": only a call list; `{ name }`: only calls of that tool; "none": no constraint. */
export type ToolChoice = "auto" | "required" | "none" | { name: string };

/** Largest accepted `indent` (spaces per level): more only spends tokens. */
export const MAX_JSON_INDENT = 8;

/** Compiles a response format / tool choice into a constraint, or undefined when there is none. */
export async function compileStructuredOutput(
  tokenizer: Lfm2Tokenizer,
  logitsWidth: number,
  request: { responseFormat?: ResponseFormat; tools?: readonly ToolDefinition[]; toolChoice?: ToolChoice },
): Promise<CompiledConstraint | undefined> {
  const { responseFormat, tools, toolChoice } = request;
  const wantsTools = toolChoice !== undefined && toolChoice !== "none";
  if (responseFormat && wantsTools) {
    throw new LfmError("INVALID_ARGUMENT", "responseFormat and toolChoice cannot both constrain one reply; pick one.");
  }
  if (responseFormat?.type === "json_schema") checkNesting(responseFormat.schema, "responseFormat.schema");
  if (wantsTools) tools?.forEach((tool, i) => checkNesting(tool, `tools[${i}]`));
  let source: GrammarSource | undefined;
  let view: VocabView = "plain";
  if (responseFormat) source = formatSource(responseFormat);
  else if (wantsTools) {
    if (!tools || tools.length === 0) throw new LfmError("INVALID_ARGUMENT", `toolChoice ${JSON.stringify(toolChoice)} needs \`tools\`.`);
    view = "tool-calls";
    if (toolChoice === "auto") source = { kind: "structural_tag", tag: autoToolCallTag(tools) };
    else if (toolChoice === "required") source = { kind: "ebnf", ebnf: requiredToolCallEbnf(tools) };
    else if (typeof toolChoice === "object" && typeof toolChoice.name === "string") source = { kind: "ebnf", ebnf: requiredToolCallEbnf(tools, toolChoice.name) };
    else throw new LfmError("INVALID_ARGUMENT", `toolChoice must be "auto", "required", "none" or { name }; got ${JSON.stringify(toolChoice)}.`);
  }
  if (!source) return undefined;
  const { compileConstraint } = await import("./xgrammar.ts");
  return compileConstraint(tokenizer, logitsWidth, view, source);
}

/**
 * The deepest JSON nesting (objects and arrays) a schema or a tool definition may have. xgrammar's
 * compiler recurses on the WASM stack: a schema of 70 nested properties traps it ("memory access
 * out of bounds"; 50 compile), and after a trap the module's memory cannot be trusted — every
 * later grammar of the process failed. 64 levels is about 30 nested properties.
 */
export const MAX_SCHEMA_NESTING = 64;

function checkNesting(value: unknown, what: string): void {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (typeof node !== "object" || node === null) continue;
    if (depth > MAX_SCHEMA_NESTING) throw new LfmError("SCHEMA_UNSUPPORTED", `${what} nests deeper than ${MAX_SCHEMA_NESTING} levels of objects and arrays, more than the grammar compiler can take; flatten it.`);
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
}

function formatSource(format: ResponseFormat): GrammarSource {
  const indentOf = (indent: number | undefined) => {
    if (indent === undefined) return undefined;
    if (!Number.isInteger(indent) || indent < 0 || indent > MAX_JSON_INDENT) {
      throw new LfmError("INVALID_ARGUMENT", `responseFormat.indent must be an integer from 0 to ${MAX_JSON_INDENT} (got ${indent}).`);
    }
    return indent;
  };
  switch (format?.type) {
    case "json_schema": {
      const prepared = prepareJsonSchema(format.schema);
      return { kind: "json_schema", schema: JSON.stringify(prepared.schema), leaves: [...prepared.leaves], indent: indentOf(format.indent) };
    }
    case "json_object":
      return { kind: "json_object", indent: indentOf(format.indent) };
    case "grammar":
      if (typeof format.ebnf !== "string" || format.ebnf.trim() === "") throw new LfmError("GRAMMAR_INVALID", "responseFormat.ebnf must be a non-empty EBNF grammar with a `root` rule.");
      return { kind: "ebnf", ebnf: format.ebnf };
    case "regex":
      if (typeof format.pattern !== "string" || format.pattern === "") throw new LfmError("REGEX_INVALID", "responseFormat.pattern must be a non-empty regular expression.");
      return { kind: "regex", pattern: format.pattern };
    default:
      throw new LfmError("INVALID_ARGUMENT", `responseFormat.type must be "json_schema", "json_object", "grammar" or "regex"; got ${JSON.stringify((format as { type?: unknown })?.type)}.`);
  }
}
