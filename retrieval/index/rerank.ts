/**
 * Exact MaxSim of a query against stored document rows: the similarity matrix Q·Dᵀ is one
 * onnxruntime Gemm over the rows as stored (float16 cast in the graph; int8 cast, then scaled per
 * row), and each document's score is Σ over query rows of the max over *its own* rows only — no
 * padding, so a query row whose similarities are all negative contributes its true (negative)
 * maximum, as Stanford ColBERT and fast-plaid score (PyLate's zero-padded rerank does not).
 */
import * as ort from "onnxruntime-node";
import { LfmError } from "../../text-core/errors.ts";
import { ElemType, GraphBuilder } from "../../text-core/graph/builder.ts";
import { createSession } from "../../text-core/runtime.ts";
import type { StoredRows, VectorStorage } from "./vector-codec.ts";

/** A query's token vectors, row-major (the encoder's `TokenEmbeddings`). */
export interface QueryRows {
  rows: number;
  dim: number;
  data: Float32Array;
}

/** Where one document's rows lie in a gathered row block. */
export interface RowRange {
  start: number;
  count: number;
}

function similarityGraph(storage: VectorStorage, dim: number): Uint8Array {
  const g = new GraphBuilder(`maxsim_similarity_${storage}`);
  const query = g.input("query", ElemType.FLOAT, ["query_rows", dim]);
  const elem = storage === "float16" ? ElemType.FLOAT16 : storage === "int8" ? ElemType.INT8 : ElemType.FLOAT;
  const rows = g.input("doc_rows", elem, ["doc_rows_count", dim]);
  const rowsF32 = storage === "float32" ? rows : g.op("Cast", [rows], "doc_rows.float", { to: ElemType.FLOAT });
  let sim = g.op("Gemm", [query, rowsF32], "similarity.raw", { transB: 1 }); // [q, t]
  if (storage === "int8") {
    const scales = g.input("doc_scales", ElemType.FLOAT, ["doc_rows_count"]);
    sim = g.op("Mul", [sim, scales], "similarity.scaled"); // scale column t by its row's scale
  }
  g.output(sim, "similarity", ElemType.FLOAT, ["query_rows", "doc_rows_count"]);
  return g.toBytes();
}

/** Scores documents exactly from their stored rows (one per reader; concurrent calls are fine). */
export class MaxSimScorer {
  private constructor(
    readonly storage: VectorStorage,
    readonly dim: number,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(storage: VectorStorage, dim: number, threads?: number): Promise<MaxSimScorer> {
    const session = await createSession(similarityGraph(storage, dim), { threads });
    return new MaxSimScorer(storage, dim, session);
  }

  /** Q·Dᵀ, [query.rows × rows.rows] row-major. */
  async similarities(query: QueryRows, rows: StoredRows): Promise<Float32Array> {
    if (query.dim !== this.dim || rows.dim !== this.dim) {
      throw new LfmError("INVALID_ARGUMENT", `query vectors are ${query.dim}-d but the index stores ${this.dim}-d vectors; use the model that built the index.`);
    }
    if (rows.rows === 0 || query.rows === 0) return new Float32Array(0);
    const feeds: Record<string, ort.Tensor> = {
      query: new ort.Tensor("float32", query.data.subarray(0, query.rows * query.dim), [query.rows, query.dim]),
      doc_rows: new ort.Tensor(rows.storage, rows.codes, [rows.rows, rows.dim]),
    };
    if (rows.storage === "int8") feeds.doc_scales = new ort.Tensor("float32", rows.scales, [rows.rows]);
    try {
      const out = await this.session.run(feeds);
      return out.similarity.data as Float32Array;
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while scoring: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Exact MaxSim of `query` against each document, whose rows are `ranges` of `rows`. */
  async score(query: QueryRows, rows: StoredRows, ranges: RowRange[]): Promise<Float64Array> {
    const sim = await this.similarities(query, rows);
    return maxSimFromSimilarities(sim, query.rows, rows.rows, ranges);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Σ_q max_{t ∈ range} sim[q, t] per range; an empty range scores −∞ (it can match nothing). */
export function maxSimFromSimilarities(sim: Float32Array, queryRows: number, totalRows: number, ranges: RowRange[]): Float64Array {
  const scores = new Float64Array(ranges.length);
  for (let d = 0; d < ranges.length; d++) {
    const { start, count } = ranges[d];
    if (count === 0) {
      scores[d] = -Infinity;
      continue;
    }
    let total = 0;
    for (let q = 0; q < queryRows; q++) {
      const base = q * totalRows + start;
      let best = sim[base];
      for (let t = 1; t < count; t++) if (sim[base + t] > best) best = sim[base + t];
      total += best;
    }
    scores[d] = total;
  }
  return scores;
}
