/**
 * `ask` with `strictCitations` on the bundled tiny random-weight models: constrained decoding
 * guarantees the shape whatever the weights, so the produced answers themselves are checked —
 * split into sentences independently of the grammar, every complete sentence ends with citations
 * of given passages, nothing else is bracketed, and only an answer cut by maxTokens ends unfinished.
 *
 * Known limitation (the second test): web-xgrammar 0.1.27 enforces character classes over
 * non-ASCII characters loosely — a negated class admits every non-ASCII character (upstream
 * xgrammar issue #848), and wide positive ranges admit characters outside them — so a CJK full
 * stop (。！？) can appear inside a sentence without a citation; the tiny model does produce one
 * (a token "。温度"). Sentences are therefore split after ASCII ends and after cited CJK ends.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { ask } from "../../pipelines/ask.ts";
import { strictCitationGrammar } from "../../pipelines/citations.ts";
import { compileStructuredOutput } from "../../text-core/structured/response-format.ts";
import { TextModel } from "../../text-core/model.ts";
import { runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const root = mkdtempSync(join(tmpdir(), "lfm-ask-strict-"));
const CORPUS: Record<string, string> = {
  "pump.txt": "The centrifugal pump P-7 must be primed before start-up. If the pump cavitates, reduce the suction lift.",
  "pompe.txt": "La pompe centrifuge P-7 doit être amorcée avant le démarrage. Vidanger l'huile toutes les 500 heures.",
  "ポンプ.txt": "遠心ポンプP-7は起動前に呼び水が必要です。",
  "valve.txt": "Valve V-12 needs new gland packing every two years; tighten the gland nuts to 2.5 Nm.",
};

let model: TextModel;
let encoder: ColbertEncoder;
let reader: IndexReader;

beforeAll(async () => {
  const docs = join(root, "docs");
  mkdirSync(docs, { recursive: true });
  for (const [name, text] of Object.entries(CORPUS)) writeFileSync(join(docs, name), text);
  const index = join(root, "index");
  runLfmJson(["index", "add", "--index", index, "--precision", "fp32", "--json", docs]);
  [model, encoder, reader] = await Promise.all([
    TextModel.load(join(FIXTURES, "text/tiny-lfm2"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 }),
    ColbertEncoder.load(join(FIXTURES, "retrieval/tiny-lfm2-colbert"), { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 }),
    IndexReader.open(index),
  ]);
});
afterAll(async () => {
  await model?.release();
  await encoder?.release();
  await reader?.close();
  rmSync(root, { recursive: true, force: true });
});

/**
 * Sentences: split after each ASCII sentence end that is not a decimal point ("2.5") and after
 * each CJK one that follows a citation (see the file comment); the last piece may be unfinished.
 */
function sentences(answer: string): { complete: string[]; rest: string } {
  const pieces = answer.split(/(?<=[!?]|\.(?![0-9])|\][。！？])/u);
  const last = pieces.at(-1) ?? "";
  const finished = /[.!?。！？]$/u.test(last);
  return { complete: finished ? pieces : pieces.slice(0, -1), rest: finished ? "" : last };
}

describe("ask with strictCitations on the tiny model", () => {
  it("every sentence of the answer ends with citations of given passages", { timeout: 240_000 }, async () => {
    // Random weights put little probability on "[" (a thousand ids are allowed at each step), so
    // sentences finish rarely: long answers, seed after seed, until a few finished sentences were checked.
    let completeSentences = 0;
    for (let seed = 1; seed <= 12 && completeSentences < 3; seed++) {
      const r = await ask("How is pump P-7 primed?", { index: reader, model, retriever: encoder, k: 3, minScore: -1, strictCitations: true, temperature: 1, seed, maxTokens: 600 });
      const given = r.passages.length;
      expect(given).toBeGreaterThan(0);
      expect(r.unsupportedCitations).toEqual([]);
      const { complete, rest } = sentences(r.answer);
      for (const s of complete) {
        const m = /^([^[\]]*?) ?((?:\[\d+\])+)([.!?。！？])$/u.exec(s.trim());
        expect(m, `sentence without a closing citation: ${JSON.stringify(s)} (seed ${seed})`).not.toBeNull();
        const cited = [...(m as RegExpExecArray)[2].matchAll(/\[(\d+)\]/g)].map((x) => Number(x[1]));
        for (const n of cited) {
          expect(n).toBeGreaterThanOrEqual(1);
          expect(n).toBeLessThanOrEqual(given);
          expect(r.citations.map((c) => c.n)).toContain(n);
        }
      }
      completeSentences += complete.length;
      // Only an answer cut short by maxTokens may end inside a sentence.
      if (r.finishReason === "stop") expect(rest, `unfinished sentence at a stop (seed ${seed})`).toBe("");
      else expect(r.finishReason).toBe("length");
      for (const c of r.citations) expect(c.id).toBe(r.passages[c.n - 1].id);
    }
    // Not vacuous: the runs produced finished sentences to check.
    expect(completeSentences).toBeGreaterThan(0);
  });

  // Fails while web-xgrammar admits 。 in `[^…。…]` (see the file comment); when a fixed version
  // passes it, this test fails: drop .fails and split sentences at every CJK end above.
  it.fails("a CJK full stop ends a sentence only after a citation (web-xgrammar 0.1.27 admits it inside one)", async () => {
    const constraint = await compileStructuredOutput(model.tokenizer, model.config.vocabSize, { responseFormat: { type: "grammar", ebnf: strictCitationGrammar(2) } });
    const matcher = await constraint?.newMatcher([model.tokenizer.tokenToId("<|im_end|>") as number]);
    if (!matcher) throw new Error("no matcher");
    try {
      let rejected = false;
      for (const id of model.tokenizer.encode("ポンプ。次", { addSpecialTokens: false })) {
        const bits = await matcher.allowed();
        if (((bits[id >> 5] >>> (id & 31)) & 1) === 0) {
          rejected = true;
          break;
        }
        matcher.accept(id);
      }
      expect(rejected).toBe(true);
    } finally {
      matcher.dispose();
    }
  });
});
