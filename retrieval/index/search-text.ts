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
  const { signal, ...search } = opts;
  const [vectors] = await encoder.encodeQueries([query], { signal });
  return { hits: await reader.search(vectors, search), queryVectors: vectors.rows };
}
