/**
 * `lfm encode`: one text through an LFM2-ColBERT checkpoint, as PyLate would encode it. With
 * --json it prints `{"embeddings": [[...], ...]}`, one row per kept token — a scriptable contract
 * kept stable.
 */
import { join } from "node:path";
import { LfmError } from "../text-core/errors.ts";
import { ColbertEncoder } from "../retrieval/colbert.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, loadFlags, parse } from "./cli-kit.ts";


const HELP = `lfm encode --model DIR (--query TEXT | --document TEXT) [--precision q4|q8|fp32] [--json]
  Encodes one text with an LFM2-ColBERT checkpoint (PyLate folder: modules.json, 1_Dense/,
  config_sentence_transformers.json) into one L2-normalised vector per kept token.
  Queries: BOS, the query prefix token, the text, expansion tokens up to query_length (all kept).
  Documents: BOS, the document prefix token, the text (punctuation skiplist tokens dropped).
  --json prints {"embeddings": [[...], ...]}; otherwise a short summary.
  --precision fp32 reproduces PyLate's float32 vectors; q8 (default) is the fastest, q4 the smallest.
  Also: --threads N, --cache-dir DIR, --no-cache.`;

export const encodeCommand: CliCommand = {
  name: "encode",
  summary: "ColBERT token embeddings of a query or a document (LFM2-ColBERT).",
  help: HELP,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, { ...COMMON, query: { type: "string" }, document: { type: "string" } });
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": give the text with --query or --document (quote it).`);
    const query = v.query as string | undefined;
    const document = v.document as string | undefined;
    if ((query === undefined) === (document === undefined)) throw new LfmError("INVALID_ARGUMENT", "give exactly one of --query TEXT or --document TEXT.");
    const model = modelOrBundled(v, "colbert");
    const encoder = await ColbertEncoder.load(model, {
      ...loadFlags(v),
    });
    try {
      const isQuery = query !== undefined;
      const text = (query ?? document) as string;
      const [e] = isQuery ? await encoder.encodeQueries([text], { signal }) : await encoder.encodeDocuments([text], { signal });
      const rows = Array.from({ length: e.rows }, (_, r) => Array.from(e.data.subarray(r * e.dim, (r + 1) * e.dim)));
      if (v.json) {
        process.stdout.write(`${JSON.stringify({ embeddings: rows })}\n`);
        return 0;
      }
      const input = isQuery ? encoder.tokenizer.query(text) : encoder.tokenizer.document(text);
      const preview = (row: number[]) => `[${row.slice(0, 4).map((x) => x.toFixed(4)).join(", ")}, …]`;
      console.log(`${isQuery ? "query" : "document"}: ${input.ids.length} tokens → ${e.rows} vectors × ${e.dim} dims (L2-normalised)`);
      if (input.expansion > 0) console.log(`  padded to query_length ${input.ids.length} with ${input.expansion} expansion tokens (all kept)`);
      if (!isQuery) console.log(`  ${input.ids.length - e.rows} skiplist tokens dropped`);
      console.log(`  first: ${preview(rows[0])}`);
      if (rows.length > 1) console.log(`  last:  ${preview(rows[rows.length - 1])}`);
      return 0;
    } finally {
      await encoder.release();
    }
  },
};
