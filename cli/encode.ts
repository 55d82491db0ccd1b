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
import { MAX_INPUT_BYTES, textFromFlags } from "./input-source.ts";


const HELP = `lfm encode --model DIR (--query TEXT | --document TEXT | --query-file F | --document-file F) [--precision q4|q8|fp32] [--json]
  Encodes one text with an LFM2-ColBERT checkpoint (PyLate folder: modules.json, 1_Dense/,
  config_sentence_transformers.json) into one L2-normalised vector per kept token.
  --query-file F, --document-file F   The text from a file ("-": standard input): a regular UTF-8
  file of at most ${MAX_INPUT_BYTES / 2 ** 20} MiB; its final line break is dropped.
  Queries: BOS, the query prefix token, the text, expansion tokens up to query_length (all kept).
  Documents: BOS, the document prefix token, the text (punctuation skiplist tokens dropped).
  --json prints {"embeddings": [[...], ...]}; otherwise a short summary.
  --precision fp32 reproduces PyLate's float32 vectors; q8 (default) is the fastest, q4 the smallest.
  Also: --threads N, --cache-dir DIR, --no-cache.`;

const ENCODE_OPTIONS = {
  ...COMMON,
  query: { type: "string" },
  document: { type: "string" },
  "query-file": { type: "string" },
  "document-file": { type: "string" },
} as const;

export const encodeCommand: CliCommand = {
  name: "encode",
  summary: "ColBERT token embeddings of a query or a document (LFM2-ColBERT).",
  help: HELP,
  options: ENCODE_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, ENCODE_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": give the text with --query or --document (quote it).`);
    const load = loadFlags(v);
    const given = await textFromFlags(v, [
      { text: "query", file: "query-file" },
      { text: "document", file: "document-file" },
    ]);
    if (given === undefined) throw new LfmError("INVALID_ARGUMENT", "give exactly one of --query TEXT, --document TEXT, --query-file F or --document-file F.");
    const model = modelOrBundled(v, "colbert");
    const encoder = await ColbertEncoder.load(model, load);
    try {
      const isQuery = given.flag.startsWith("query");
      const text = given.text;
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
