/**
 * Metadata filters of a search: which passages may be ranked at all (applied before ranking, so a
 * filter never shortens the result list below what matches). Per key, a passage matches
 *  - a value: its metadata value equals it (a string also matches a number or boolean written
 *    the same way);
 *  - `{ prefix }`: its value is a string starting with `prefix` (e.g. `source` under a folder);
 *  - `{ after, before }` (one or both): its value is a date (see parseDate) on or after `after`
 *    and strictly before `before`, so `{ after: "2024-01-01", before: "2025-01-01" }` is the year
 *    2024 (UTC); a passage without a date under that key does not match;
 *  - a list of these: any of them.
 * Every key must match. The key `source` is the passage's source path; ingest also sets
 * `modified`, the file's modification time (UTC, ISO 8601) when its current content was indexed.
 */
import { LfmError } from "../../text-core/errors.ts";
import type { MetadataValue, StoredDocument } from "./format.ts";

/** A condition other than equality on one metadata value (see the file comment). */
export type MetadataCondition = { prefix: string } | { after?: string; before?: string };

export type MetadataFilter = Record<string, MetadataValue | MetadataCondition | Array<MetadataValue | MetadataCondition>>;

type Test = (actual: MetadataValue) => boolean;

/**
 * The filter as one test per passage; INVALID_ARGUMENT (naming the key) for a condition that is
 * not one of the forms above or a date that does not parse.
 */
export function compileFilter(filter: MetadataFilter | undefined): (doc: StoredDocument) => boolean {
  const tests: Array<[string, Test]> = [];
  for (const [key, wanted] of Object.entries(filter ?? {})) {
    const alternatives = (Array.isArray(wanted) ? wanted : [wanted]).map((w) => testOf(key, w));
    if (alternatives.length === 0) throw new LfmError("INVALID_ARGUMENT", `filter.${key}: an empty list matches nothing; give at least one value.`);
    tests.push([key, alternatives.length === 1 ? alternatives[0] : (actual) => alternatives.some((t) => t(actual))]);
  }
  return (doc) =>
    tests.every(([key, test]) => {
      const actual = key === "source" ? doc.source : Object.hasOwn(doc.metadata, key) ? doc.metadata[key] : undefined;
      return actual !== undefined && test(actual);
    });
}

function testOf(key: string, wanted: MetadataValue | MetadataCondition): Test {
  if (wanted === null || typeof wanted !== "object") return (actual) => actual === wanted || (typeof wanted === "string" && actual !== null && String(actual) === wanted);
  const fields = Object.keys(wanted);
  const bad = (why: string) => new LfmError("INVALID_ARGUMENT", `filter.${key}: ${why}`);
  if ("prefix" in wanted) {
    if (fields.length !== 1) throw bad('takes { "prefix": "…" } alone, or { "after", "before" }, not both.');
    const { prefix } = wanted;
    if (typeof prefix !== "string" || prefix === "") throw bad("prefix must be a non-empty string.");
    return (actual) => typeof actual === "string" && actual.startsWith(prefix);
  }
  const unknown = fields.filter((f) => f !== "after" && f !== "before");
  if (unknown.length > 0 || fields.length === 0) throw bad(`must be a value, a list of values, { "prefix": "…" } or { "after": DATE, "before": DATE }${unknown.length > 0 ? ` (unknown field ${JSON.stringify(unknown[0])})` : ""}.`);
  const bound = (name: "after" | "before"): number | null => {
    const raw = wanted[name];
    if (raw === undefined) return null;
    const t = typeof raw === "string" ? parseDate(raw) : null;
    if (t === null) throw bad(`${name} must be a date such as 2024-01-31 or 2024-01-31T12:00:00Z, got ${JSON.stringify(raw)}.`);
    return t;
  };
  const after = bound("after");
  const before = bound("before");
  if (after !== null && before !== null && before <= after) throw bad(`matches nothing: before (${wanted.before}) is not later than after (${wanted.after}).`);
  return (actual) => {
    const t = typeof actual === "string" ? parseDate(actual) : null;
    return t !== null && (after === null || t >= after) && (before === null || t < before);
  };
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * Milliseconds since the epoch of an ISO 8601 date (`2024-01-31`, midnight UTC) or date-time
 * (`2024-01-31T12:00`, `…:30.5Z`, `…+02:00`; without an offset: UTC); null if it is not one or
 * names a day that does not exist (2024-02-30).
 */
export function parseDate(text: string): number | null {
  const m = DATE.exec(text.trim());
  if (!m) return null;
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0));
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return null;
  const t = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  if (new Date(t).getUTCDate() !== day) return null; // 2024-02-30 rolled over into March
  const zone = m[8];
  if (!zone || zone === "Z") return t;
  const sign = zone[0] === "-" ? -1 : 1;
  const digits = zone.slice(1).replace(":", "");
  const offsetHours = Number(digits.slice(0, 2));
  const offsetMinutes = Number(digits.slice(2));
  if (offsetHours > 23 || offsetMinutes > 59) return null;
  return t - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
}
