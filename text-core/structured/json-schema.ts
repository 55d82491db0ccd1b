/**
 * JSON Schema intake: checks a schema against the keywords we know xgrammar enforces, before any
 * token is generated, and rewrites the few it compiles wrongly into EBNF rules of our own.
 *
 * Measured on @mlc-ai/web-xgrammar 0.1.27 (see docs/structured-output.md):
 * - integer `minimum`/`maximum` produce wrong ranges in some cases (7..123 accepts 124–129,
 *   `minimum: -5` accepts "-" alone); string `minLength`/`maxLength` allow raw control characters
 *   (JSON.parse then fails). Those leaves are replaced by a placeholder `const`, and the
 *   placeholder's rule in xgrammar's EBNF by our own (`integerRangeRule`, `stringLengthRule`).
 * - number (non-integer) ranges are wrong at both ends (`maximum: 20` accepts 20.5): refused.
 *   A plain `number` gets our bounded rule (`FINITE_NUMBER_RULE`; xgrammar's admits 1e999), a
 *   plain `integer` at most 16 digits (`BOUNDED_INTEGER_RULE`; xgrammar's digit run is unbounded).
 * - `format`, `uniqueItems`, `multipleOf`, `not`, `allOf`, `patternProperties`, … compile
 *   without being enforced: refused (they are not on the allow-list).
 * - `oneOf` compiles as `anyOf`: accepted only when its branches cannot overlap (distinct types,
 *   or objects told apart by a required `const` property).
 */
import { LfmError } from "../errors.ts";

export type JsonSchema = boolean | { [keyword: string]: unknown };

const TYPES = new Set(["string", "number", "integer", "boolean", "null", "array", "object"]);

/** Keywords that constrain nothing (annotations). */
const ANNOTATIONS = new Set(["$schema", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly", "writeOnly"]);

/** Keywords whose enforcement by xgrammar (or by our own rules) was verified. */
const ENFORCED = new Set([
  "type", "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions",
  "properties", "required", "additionalProperties",
  "items", "prefixItems", "minItems", "maxItems",
  "minLength", "maxLength", "pattern",
  "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
]);

export interface PreparedSchema {
  /** The schema with the leaves we enforce ourselves replaced by placeholder consts. */
  schema: JsonSchema;
  /** Placeholder string → the EBNF expression that replaces its `"\"placeholder\""` literal. */
  leaves: Map<string, string>;
}

/** Checks `schema` and prepares it for xgrammar; throws SCHEMA_INVALID or SCHEMA_UNSUPPORTED naming the keyword's JSON pointer. */
export function prepareJsonSchema(schema: unknown): PreparedSchema {
  if (!isSchema(schema)) throw invalid("", "a schema must be a JSON object (or true/false)");
  const text = JSON.stringify(schema);
  let k = 0;
  while (text.includes(`__lfm_leaf${k}_`)) k++;
  const prefix = `__lfm_leaf${k}_`;
  const leaves = new Map<string, string>();
  const root = schema;
  const rewrite = (node: JsonSchema, pointer: string): JsonSchema => {
    if (typeof node === "boolean") return node;
    checkKeywords(node, pointer);
    const numeric = Array.isArray(node.type) ? node.type.find((t) => t === "number" || t === "integer") : undefined;
    if (numeric !== undefined && (node.type as unknown[]).length > 1) {
      // Numbers need our bounded rules, which only a single-type leaf gets: split the list.
      const extra = Object.keys(node).filter((k) => k !== "type" && !ANNOTATIONS.has(k));
      if (extra.length > 0) {
        throw new LfmError("SCHEMA_UNSUPPORTED", `"type" at ${pointer}/type lists "${numeric}" beside other types together with "${extra[0]}"; write it as anyOf with one type per branch.`);
      }
      return rewrite({ anyOf: (node.type as string[]).map((type) => ({ type })) }, pointer);
    }
    const out: { [keyword: string]: unknown } = {};
    for (const [key, value] of Object.entries(node)) {
      const at = `${pointer}/${escapePointer(key)}`;
      switch (key) {
        case "properties":
        case "$defs":
        case "definitions": {
          if (!isPlainObject(value)) throw invalid(at, `"${key}" must be an object of schemas`);
          const children: { [name: string]: unknown } = {};
          for (const [name, child] of Object.entries(value)) {
            if (!isSchema(child)) throw invalid(`${at}/${escapePointer(name)}`, "must be a schema");
            children[name] = rewrite(child, `${at}/${escapePointer(name)}`);
          }
          out[key] = children;
          break;
        }
        case "items":
        case "additionalProperties":
          if (!isSchema(value)) throw invalid(at, `"${key}" must be a schema or a boolean`);
          out[key] = rewrite(value, at);
          break;
        case "anyOf":
        case "oneOf":
        case "prefixItems":
          if (!Array.isArray(value) || value.length === 0) throw invalid(at, `"${key}" must be a non-empty array of schemas`);
          out[key] = value.map((child, i) => {
            if (!isSchema(child)) throw invalid(`${at}/${i}`, "must be a schema");
            return rewrite(child, `${at}/${i}`);
          });
          if (key === "oneOf") checkExclusive(value as JsonSchema[], at, root);
          break;
        default:
          out[key] = value;
      }
    }
    const leaf = leafRule(node, pointer);
    if (leaf === undefined) return out;
    const placeholder = `${prefix}${leaves.size}__`;
    leaves.set(placeholder, leaf);
    const kept: { [keyword: string]: unknown } = { const: placeholder };
    for (const key of ["$defs", "definitions"]) if (key in out) kept[key] = out[key];
    return kept;
  };
  return { schema: rewrite(schema, ""), leaves };
}

function checkKeywords(node: { [keyword: string]: unknown }, pointer: string): void {
  for (const [key, value] of Object.entries(node)) {
    const at = `${pointer}/${escapePointer(key)}`;
    if (!ENFORCED.has(key) && !ANNOTATIONS.has(key)) {
      throw new LfmError(
        "SCHEMA_UNSUPPORTED",
        `The JSON schema uses "${key}" at ${at || "/"}, which constrained decoding does not enforce; remove it (or check the value after generation) rather than have it silently ignored.`,
      );
    }
    switch (key) {
      case "type": {
        const types = Array.isArray(value) ? value : [value];
        if (types.length === 0 || !types.every((t) => typeof t === "string" && TYPES.has(t))) {
          throw invalid(at, `"type" must be one of ${[...TYPES].join(", ")} or an array of them (got ${JSON.stringify(value)})`);
        }
        break;
      }
      case "enum":
        if (!Array.isArray(value) || value.length === 0) throw invalid(at, `"enum" must be a non-empty array`);
        break;
      case "required":
        if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw invalid(at, `"required" must be an array of property names`);
        break;
      case "minItems":
      case "maxItems":
      case "minLength":
      case "maxLength":
        if (!Number.isSafeInteger(value) || (value as number) < 0) throw invalid(at, `"${key}" must be a non-negative integer`);
        break;
      case "minimum":
      case "maximum":
      case "exclusiveMinimum":
      case "exclusiveMaximum":
        if (typeof value !== "number" || !Number.isFinite(value)) throw invalid(at, `"${key}" must be a number`);
        break;
      case "pattern":
        if (typeof value !== "string") throw invalid(at, `"pattern" must be a string`);
        try {
          new RegExp(value, "u");
        } catch (e) {
          throw invalid(at, `"pattern" is not a valid regular expression (${(e as Error).message})`);
        }
        // A class that can match '"', '\' or a control character would produce unparseable JSON:
        // the grammar matches the pattern against the raw characters between the quotes.
        if (/(^|[^\\])(\.|\[\^)|\\[sSWDbB]/.test(value.replace(/\\\\/g, ""))) {
          throw new LfmError(
            "SCHEMA_UNSUPPORTED",
            `The "pattern" at ${at} uses ".", a negated class, \\s, \\S, \\W, \\D or a word boundary, which would let the raw string hold quotes or control characters; list the allowed characters explicitly (e.g. [A-Za-z0-9 ]).`,
          );
        }
        break;
      case "$ref":
        if (typeof value !== "string" || !/^#\/(\$defs|definitions)\/[^/]+$/.test(value)) {
          throw new LfmError("SCHEMA_UNSUPPORTED", `"$ref" at ${at} must point into this schema's $defs or definitions ("#/$defs/Name"); got ${JSON.stringify(value)}.`);
        }
        break;
    }
  }
  const types = typeOf(node);
  const has = (k: string) => k in node;
  const numericBounds = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"].filter(has);
  if (numericBounds.length > 0 && !(types?.length === 1 && types[0] === "integer")) {
    throw new LfmError(
      "SCHEMA_UNSUPPORTED",
      `"${numericBounds[0]}" at ${pointer}/${numericBounds[0]} is enforced only with "type": "integer" (xgrammar 0.1.27 gets decimal ranges wrong, e.g. maximum 20 admits 20.5); use an integer range or check the value after generation.`,
    );
  }
  if ((has("minLength") || has("maxLength")) && (has("pattern") || !(types?.length === 1 && types[0] === "string"))) {
    const key = has("minLength") ? "minLength" : "maxLength";
    throw new LfmError("SCHEMA_UNSUPPORTED", `"${key}" at ${pointer}/${key} is enforced only on a "type": "string" without "pattern"; put the length into the pattern instead.`);
  }
  if (isPlainObject(node.additionalProperties) && "properties" in node) {
    throw new LfmError(
      "SCHEMA_UNSUPPORTED",
      `"additionalProperties" at ${pointer}/additionalProperties is a schema beside "properties": the grammar could then repeat a listed key with the other schema's value; use one or the other.`,
    );
  }
  if (Array.isArray(node.required)) {
    const listed = isPlainObject(node.properties) ? node.properties : {};
    const missing = (node.required as string[]).find((name) => !(name in listed));
    if (missing !== undefined) {
      throw new LfmError("SCHEMA_UNSUPPORTED", `"required" at ${pointer}/required names "${missing}", which is not in "properties"; constrained decoding generates only listed properties, so add it there.`);
    }
  }
  if (typeof node.minItems === "number" && typeof node.maxItems === "number" && node.minItems > node.maxItems) {
    throw invalid(`${pointer}/minItems`, `minItems ${node.minItems} exceeds maxItems ${node.maxItems}`);
  }
  if (typeof node.minLength === "number" && typeof node.maxLength === "number" && node.minLength > node.maxLength) {
    throw invalid(`${pointer}/minLength`, `minLength ${node.minLength} exceeds maxLength ${node.maxLength}`);
  }
}

/** Our own rule for a leaf xgrammar gets wrong, or undefined. */
function leafRule(node: { [keyword: string]: unknown }, pointer: string): string | undefined {
  const types = typeOf(node);
  if (types?.length !== 1 || "enum" in node || "const" in node) return undefined;
  if (types[0] === "integer") {
    let lo: bigint | undefined;
    let hi: bigint | undefined;
    const num = (k: string) => node[k] as number | undefined;
    const tighterLo = (v: bigint) => (lo = lo === undefined || v > lo ? v : lo);
    const tighterHi = (v: bigint) => (hi = hi === undefined || v < hi ? v : hi);
    if (num("minimum") !== undefined) tighterLo(BigInt(Math.ceil(num("minimum")!)));
    if (num("exclusiveMinimum") !== undefined) tighterLo(BigInt(Math.floor(num("exclusiveMinimum")!)) + 1n);
    if (num("maximum") !== undefined) tighterHi(BigInt(Math.floor(num("maximum")!)));
    if (num("exclusiveMaximum") !== undefined) tighterHi(BigInt(Math.ceil(num("exclusiveMaximum")!)) - 1n);
    if (lo === undefined && hi === undefined) return BOUNDED_INTEGER_RULE;
    if (lo !== undefined && hi !== undefined && lo > hi) throw invalid(pointer || "/", `no integer lies in the range [${lo}, ${hi}]`);
    return integerRangeRule(lo, hi);
  }
  if (types[0] === "number") return FINITE_NUMBER_RULE;
  if (types[0] === "string" && ("minLength" in node || "maxLength" in node)) {
    return stringLengthRule((node.minLength as number | undefined) ?? 0, node.maxLength as number | undefined);
  }
  return undefined;
}

/**
 * A JSON integer of at most 16 digits. xgrammar's has no bound, and a sampled model can spend
 * every token on one digit run; beyond 16 digits JavaScript numbers are no longer exact anyway.
 */
export const BOUNDED_INTEGER_RULE = `("0" | "-"? [1-9] [0-9]{0,15})`;

/**
 * A JSON number with at most 16 integer digits, 15 fraction digits and a two-digit exponent:
 * xgrammar's own allows any exponent, and "1e999" parses as Infinity, which is no JSON Schema
 * number (and an unbounded digit run lets a sampled model spend every token on one number).
 */
export const FINITE_NUMBER_RULE = `("-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,15})? ([eE] [+-]? [0-9]{1,2})?)`;

/**
 * A JSON string of minLength..maxLength code points: no raw quote, backslash or control
 * character, escapes as JSON has them. `\u` escapes of surrogates are left out so that every
 * escape is exactly one code point (a surrogate pair would count as two here, one for JSON Schema).
 */
export function stringLengthRule(min: number, max: number | undefined): string {
  const char = `([^"\\\\\\0-\\x1f] | "\\\\" ["\\\\/bfnrt] | "\\\\u" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))`;
  const count = max === undefined ? `{${min},}` : `{${min},${max}}`;
  return `("\\"" ${char}${count} "\\"")`;
}

/** JSON integers in [lo, hi] (either end open when undefined), without leading zeros or "-0". */
export function integerRangeRule(lo: bigint | undefined, hi: bigint | undefined): string {
  const alternatives: string[] = [];
  if (hi === undefined || hi >= 0n) {
    const from = lo === undefined || lo < 0n ? 0n : lo;
    alternatives.push(...(hi === undefined ? unsignedFrom(from) : unsignedRange(from, hi)));
  }
  if (lo === undefined || lo < 0n) {
    const from = hi === undefined || hi >= 0n ? 1n : -hi;
    const magnitudes = lo === undefined ? unsignedFrom(from) : unsignedRange(from, -lo);
    // "-" factored out: xgrammar 0.1.27 mismatches a flat alternation of many "-"-prefixed
    // branches (it accepted "10000" and "-1001" for [-1000, 1000]); grouped, it is exact.
    alternatives.push(`"-" (${magnitudes.join(" | ")})`);
  }
  return `(${alternatives.join(" | ")})`;
}

/** Unsigned integers ≥ a. */
function unsignedFrom(a: bigint): string[] {
  const digits = a.toString().length;
  return [...unsignedRange(a, 10n ** BigInt(digits) - 1n), `[1-9] [0-9]{${digits},}`];
}

/** Unsigned integers in [a, b], 0 ≤ a ≤ b, as alternatives grouped by digit count. */
function unsignedRange(a: bigint, b: bigint): string[] {
  const out: string[] = [];
  for (let n = a.toString().length; n <= b.toString().length; n++) {
    const floor = n === 1 ? 0n : 10n ** BigInt(n - 1);
    const lo = a > floor ? a : floor;
    const top = 10n ** BigInt(n) - 1n;
    const hi = b < top ? b : top;
    if (lo <= hi) out.push(sameLength(lo.toString(), hi.toString()));
  }
  return out;
}

/** Digit strings of one length from lo to hi (equal lengths; inner positions may be 0). */
function sameLength(lo: string, hi: string): string {
  if (lo === hi) return `"${lo}"`;
  const n = lo.length;
  if (n === 1) return `[${lo}-${hi}]`;
  if (lo[0] === hi[0]) return `"${lo[0]}" ${sameLength(lo.slice(1), hi.slice(1))}`;
  const parts: string[] = [];
  let first = Number(lo[0]);
  let last = Number(hi[0]);
  const rest = n - 1;
  if (!/^0*$/.test(lo.slice(1))) {
    parts.push(`"${lo[0]}" ${sameLength(lo.slice(1), "9".repeat(rest))}`);
    first++;
  }
  let tail: string | undefined;
  if (!/^9*$/.test(hi.slice(1))) {
    tail = `"${hi[0]}" ${sameLength("0".repeat(rest), hi.slice(1))}`;
    last--;
  }
  if (first <= last) parts.push(`${first === last ? `"${first}"` : `[${first}-${last}]`} [0-9]{${rest}}`);
  if (tail) parts.push(tail);
  return `(${parts.join(" | ")})`;
}

/**
 * `oneOf` is compiled as `anyOf`; that is exact only when no value can match two branches.
 * Accepted: branches with pairwise disjoint `type`s (integer counts as a number), or object
 * branches that each require a property whose `const` values differ.
 */
function checkExclusive(branches: JsonSchema[], pointer: string, root: JsonSchema): void {
  const resolved = branches.map((b) => resolveRef(b, root));
  const typeSets = resolved.map((b) => (typeof b === "object" ? typeOf(b) : undefined));
  if (typeSets.every((t) => t !== undefined)) {
    const seen = new Set<string>();
    let disjoint = true;
    for (const types of typeSets) {
      const widened = new Set(types!.flatMap((t) => (t === "integer" ? ["number"] : [t])));
      for (const t of widened) {
        if (seen.has(t)) disjoint = false;
      }
      for (const t of widened) seen.add(t);
    }
    if (disjoint) return;
  }
  if (resolved.every((b) => typeof b === "object" && isPlainObject(b.properties))) {
    const objects = resolved as { [k: string]: unknown }[];
    const candidates = Object.keys(objects[0].properties as object);
    for (const name of candidates) {
      const values = objects.map((o) => {
        const prop = (o.properties as { [k: string]: unknown })[name];
        const required = Array.isArray(o.required) && o.required.includes(name);
        return required && isPlainObject(prop) && "const" in prop ? JSON.stringify(prop.const) : undefined;
      });
      if (values.every((v) => v !== undefined) && new Set(values).size === values.length) return;
    }
  }
  throw new LfmError(
    "SCHEMA_UNSUPPORTED",
    `The "oneOf" at ${pointer} has branches a value could match twice; constrained decoding enforces oneOf as anyOf, so give the branches distinct types or a required "const" discriminator property, or write anyOf.`,
  );
}

function resolveRef(schema: JsonSchema, root: JsonSchema): JsonSchema {
  let node = schema;
  for (let hops = 0; hops < 16 && typeof node === "object" && typeof node.$ref === "string"; hops++) {
    const [, section, name] = /^#\/(\$defs|definitions)\/(.+)$/.exec(node.$ref) ?? [];
    const defs = typeof root === "object" ? root[section] : undefined;
    const target = isPlainObject(defs) ? defs[unescapePointer(name ?? "")] : undefined;
    if (!isSchema(target)) return node;
    node = target;
  }
  return node;
}

function typeOf(node: { [keyword: string]: unknown }): string[] | undefined {
  if (typeof node.type === "string") return [node.type];
  if (Array.isArray(node.type)) return node.type as string[];
  return undefined;
}

function invalid(pointer: string, problem: string): LfmError {
  return new LfmError("SCHEMA_INVALID", `The JSON schema is not valid at ${pointer || "/"}: ${problem}.`);
}

function isSchema(v: unknown): v is JsonSchema {
  return typeof v === "boolean" || isPlainObject(v);
}

function isPlainObject(v: unknown): v is { [key: string]: unknown } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function escapePointer(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}

function unescapePointer(key: string): string {
  return key.replace(/~1/g, "/").replace(/~0/g, "~");
}

/** Replaces each placeholder's quoted literal in xgrammar's EBNF by its rule. */
export function substituteLeaves(ebnf: string, leaves: ReadonlyMap<string, string>): string {
  let out = ebnf;
  for (const [placeholder, rule] of leaves) {
    const literal = `"\\"${placeholder}\\""`;
    if (!out.includes(literal)) throw new LfmError("RUNTIME_FAILED", `xgrammar's grammar for the schema lost the placeholder ${placeholder}.`);
    out = out.split(literal).join(rule);
  }
  return out;
}
