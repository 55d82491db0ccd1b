/**
 * Merging the per-page extractions of one document into one result.
 *
 * The rule, applied recursively from the top-level object down:
 *   - objects: merged key by key (a key missing from a page counts as null there);
 *   - arrays: the arrays of every page that has one, concatenated in page order;
 *   - anything else (string, number, boolean, or values of differing kinds): the first page's
 *     non-null value; null only when every page has null.
 * Keys keep the order of the pages' objects: a key first seen on a later page goes right after
 * the key it follows on that page, so pages generated in the schema's property order merge in it.
 *
 * Each scalar of the result keeps the page it came from and its confidence there, re-keyed to
 * its pointer in the merged value (array items move when arrays are concatenated).
 */
import { pointerToken } from "./json-spans.ts";

/** Where a value was found: its page (1-based) and, on a text page, its characters in the page text. */
export interface Provenance {
  page: number;
  /** [start, end) in the page's text, when the value's text occurs there. */
  span?: [number, number];
}

/** One page's extraction: the parsed JSON and, for each scalar's JSON pointer, its confidence and where it came from. */
export interface PageExtraction {
  page: number;
  data: unknown;
  confidence: Record<string, number>;
  provenance: Record<string, Provenance>;
}

export interface MergedExtraction {
  data: unknown;
  confidence: Record<string, number>;
  provenance: Record<string, Provenance>;
}

interface Source {
  page: PageExtraction;
  pointer: string;
  value: unknown;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The pages' data merged by the rule above (pages in document order). */
export function mergePages(pages: readonly PageExtraction[]): MergedExtraction {
  const out: MergedExtraction = { data: null, confidence: {}, provenance: {} };
  if (pages.length === 0) return out;
  out.data = merge(
    pages.map((page) => ({ page, pointer: "", value: page.data })),
    "",
    out,
  );
  return out;
}

function merge(sources: readonly Source[], pointer: string, out: MergedExtraction): unknown {
  const present = sources.filter((s) => s.value !== null && s.value !== undefined);
  if (present.length === 0) {
    const first = sources[0];
    copyLeaf(first, pointer, out);
    return null;
  }
  if (present.every((s) => Array.isArray(s.value))) {
    const items: unknown[] = [];
    for (const s of present) {
      (s.value as unknown[]).forEach((item, i) => {
        items.push(merge([{ page: s.page, pointer: `${s.pointer}/${i}`, value: item }], `${pointer}/${items.length}`, out));
      });
    }
    return items;
  }
  if (present.every((s) => isPlainObject(s.value))) {
    const keys = mergedKeyOrder(present.map((s) => Object.keys(s.value as object)));
    const result: Record<string, unknown> = {};
    for (const key of keys) {
      const t = pointerToken(key);
      const withKey = present.filter((s) => Object.hasOwn(s.value as object, key)).map((s) => ({ page: s.page, pointer: `${s.pointer}/${t}`, value: (s.value as Record<string, unknown>)[key] }));
      result[key] = merge(withKey, `${pointer}/${t}`, out);
    }
    return result;
  }
  const first = present[0];
  if (Array.isArray(first.value) || isPlainObject(first.value)) return merge([first], pointer, out);
  copyLeaf(first, pointer, out);
  return first.value;
}

function copyLeaf(source: Source, pointer: string, out: MergedExtraction): void {
  const confidence = source.page.confidence[source.pointer];
  if (confidence !== undefined) out.confidence[pointer] = confidence;
  out.provenance[pointer] = source.page.provenance[source.pointer] ?? { page: source.page.page };
}

/**
 * The union of the pages' key lists: a new key goes right after the key before it on its own page;
 * one that leads its page goes before the first of its page's later keys already placed, else last.
 */
export function mergedKeyOrder(lists: readonly (readonly string[])[]): string[] {
  const order: string[] = [];
  for (const list of lists) {
    let after = -1; // index in `order` of the previous key of this list, -1 before the first
    list.forEach((key, i) => {
      const found = order.indexOf(key);
      if (found >= 0) {
        after = found;
        return;
      }
      let at = after + 1;
      if (after < 0) {
        const next = list.slice(i + 1).map((k) => order.indexOf(k)).find((j) => j >= 0);
        at = next ?? order.length;
      }
      order.splice(at, 0, key);
      after = at;
    });
  }
  return order;
}
