/**
 * The `bench:ask` corpus: bench/synthetic-colbert.ts's passages (token vectors written straight
 * into the index, as bench/retrieval.ts does: encoding 10k passages at the 350M shape would take
 * hours and does not change what `ask` then costs), each with a text made of one pseudo-word per
 * token vector (the same term, the same word), so the prompt holds passages of the length the
 * vectors say. Questions are texts; `ask` encodes them with the real encoder.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { readIndexManifest } from "../retrieval/index/reader.ts";
import type { VectorStorage } from "../retrieval/index/vector-codec.ts";
import { IndexWriter } from "../retrieval/index/writer.ts";
import { SyntheticCorpus, rng } from "./synthetic-colbert.ts";

const CONSONANTS = "bdfgklmnprstvz";
const VOWELS = "aeiou";

/** A pronounceable pseudo-word for a term id (2–4 syllables; distinct ids, distinct words). */
export function termWord(id: number): string {
  let n = id + 1;
  let word = "";
  do {
    word += CONSONANTS[n % CONSONANTS.length] + VOWELS[Math.floor(n / CONSONANTS.length) % VOWELS.length];
    n = Math.floor(n / (CONSONANTS.length * VOWELS.length));
  } while (n > 0 || word.length < 4);
  return word;
}

/** Passage `i`'s text: its terms' words, in sentences of about ten words. */
export function passageText(corpus: SyntheticCorpus, i: number): string {
  const words = corpus.documentTerms(i).map(termWord);
  const sentences: string[] = [];
  for (let at = 0; at < words.length; at += 10) {
    const s = words.slice(at, at + 10).join(" ");
    sentences.push(`${s[0].toUpperCase()}${s.slice(1)}.`);
  }
  return sentences.join(" ");
}

/** Question `q`: about passage `target`, with some of its words (as a user would ask about a passage's subject). */
export function questionText(corpus: SyntheticCorpus, q: number, target: number): string {
  const next = rng(7919 * (q + 1));
  const words = corpus.documentTerms(target).map(termWord);
  const picked = Array.from({ length: 6 }, () => words[Math.floor(next() * words.length)]);
  return `What does the manual say about ${picked.join(" ")}?`;
}

/**
 * The index of `docs` synthetic passages in `dir`, built once and reused while its manifest says
 * it holds them (a build interrupted before its commit leaves no manifest: built again).
 */
export async function syntheticAskIndex(dir: string, docs: number, dim: number, storage: VectorStorage, log: (s: string) => void): Promise<void> {
  const manifest = existsSync(dir) ? readIndexManifest(dir) : null;
  if (manifest && manifest.generation > 0 && manifest.segments.reduce((n, s) => n + s.docs, 0) === docs && manifest.storage === storage && manifest.dim === dim) return;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const corpus = new SyntheticCorpus({ dim });
  log(`building a ${docs}-passage index in ${dir} (once)…`);
  const writer = await IndexWriter.open(dir, { create: { dim: corpus.dim, storage } });
  try {
    for (let i = 0; i < docs; i++) {
      writer.upsert({ id: `doc-${i}`, embeddings: corpus.document(i), text: passageText(corpus, i), source: `manual-${Math.floor(i / 20)}.txt`, metadata: {} });
    }
    await writer.commit();
  } finally {
    await writer.close();
  }
}

export const askIndexDir = (cacheDir: string, docs: number, dim: number, storage: VectorStorage): string => join(cacheDir, "bench-indexes", `ask-${docs}x${dim}-${storage}`);
