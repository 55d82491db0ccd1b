/**
 * Exact late-interaction score (ColBERT MaxSim): for every query vector, the best dot product
 * with any document vector, summed over the query vectors —
 *
 *   s(q, d) = Σ_i max_j ⟨q_i, d_j⟩        range [−rows(q), rows(q)] for unit vectors
 *
 * Only real document vectors take part (no zero-padded rows that would turn an all-negative
 * maximum into 0, as PyLate's `rank.rerank` does). Post-processing over a few thousand dot
 * products, so plain JavaScript: the document is walked once per query row, in float64.
 */
import { LfmError } from "../text-core/errors.ts";
import type { TokenEmbeddings } from "./colbert.ts";

export function maxSim(query: TokenEmbeddings, document: TokenEmbeddings): number {
  const { dim } = query;
  if (document.dim !== dim) {
    throw new LfmError("INVALID_ARGUMENT", `query vectors have ${dim} dimensions but document vectors ${document.dim}; they come from different models.`);
  }
  if (document.rows === 0) throw new LfmError("INVALID_ARGUMENT", "the document has no token vectors to match.");
  const q = query.data;
  const d = document.data;
  let score = 0;
  for (let i = 0; i < query.rows; i++) {
    const qi = i * dim;
    let best = -Infinity;
    for (let j = 0, dj = 0; j < document.rows; j++, dj += dim) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += q[qi + k] * d[dj + k];
      if (dot > best) best = dot;
    }
    score += best;
  }
  return score;
}

/** `scores[i][j]` = MaxSim of query i against document j. */
export function maxSimMatrix(queries: readonly TokenEmbeddings[], documents: readonly TokenEmbeddings[]): number[][] {
  return queries.map((q) => documents.map((d) => maxSim(q, d)));
}
