/**
 * A text query against an index: the query encoded with the index's encoder, then the reader's
 * search. What `lfm search` and `ask` both run, so both rank passages the same way.
 */
import type { TokenEmbeddings } from "../colbert.ts";
import type { IndexReader, SearchHit, SearchOptions } from "./reader.ts";

/** What a search needs of an encoder (a `ColbertEncoder`). */
export interface QueryEncoder {
  encodeQueries(texts: string[], opts?: { signal?: AbortSignal }): Promise<TokenEmbeddings[]>;
}

export interface TextSearchResult {
  hits: SearchHit[];
  /** Vectors the query was encoded to (`query_length` with query expansion): a MaxSim score is a sum of that many similarities. */
  queryVectors: number;
}

export async function searchText(reader: IndexReader, encoder: QueryEncoder, query: string, opts: SearchOptions & { signal?: AbortSignal } = {}): Promise<TextSearchResult> {
  const [result] = await searchTexts(reader, encoder, [query], opts);
  return result;
}

/**
 * Several queries: encoded in one call (a query's vectors do not depend on what it is batched
 * with, see colbert.ts), each searched as `searchText` searches it.
 */
export async function searchTexts(reader: IndexReader, encoder: QueryEncoder, queries: string[], opts: SearchOptions & { signal?: AbortSignal } = {}): Promise<TextSearchResult[]> {
  const { signal, ...search } = opts;
  const encoded = await encoder.encodeQueries(queries, { signal });
  const out: TextSearchResult[] = [];
  for (const vectors of encoded) out.push({ hits: await reader.search(vectors, search), queryVectors: vectors.rows });
  return out;
}

/**
 * The score abstention compares with its threshold: the best hit's MaxSim divided by the query's
 * vector count, i.e. the mean over query vectors of each one's best cosine similarity in the
 * passage (−1..1); null when nothing was retrieved. With query expansion (LFM2-ColBERT) every
 * query has `query_length` vectors, expansion vectors included, as PyLate scores them, so this
 * is a constant rescaling of the raw score; without expansion the count follows the question's
 * length and the raw sum grows with it, while the mean stays on one scale: one threshold means
 * the same for a three-word question and a long one.
 */
export function bestScorePerVector(result: TextSearchResult): number | null {
  return result.hits.length > 0 ? result.hits[0].score / result.queryVectors : null;
}
