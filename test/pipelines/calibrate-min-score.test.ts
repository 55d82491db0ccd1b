/**
 * Calibrating `ask`'s abstention threshold on the index (calibrateMinScore, `lfm index
 * calibrate`) with the bundled tiny ColBERT model: the threshold is stored beside the index
 * without changing it, `ask` uses it unless given `minScore`, an index without one works as
 * before, and an index with too few passages or a damaged calibration fails with typed errors.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ColbertEncoder } from "../../retrieval/colbert.ts";
import { CALIBRATION_FILE, readCalibration, writeCalibration } from "../../retrieval/index/calibration.ts";
import { IndexReader } from "../../retrieval/index/reader.ts";
import { type AskOptions, DEFAULT_MIN_SCORE, ask } from "../../pipelines/ask.ts";
import { calibrateMinScore, chooseThreshold } from "../../pipelines/calibrate-min-score.ts";
import { TextModel } from "../../text-core/model.ts";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const TEXT_MODEL = join(FIXTURES, "text/tiny-lfm2");
const COLBERT = join(FIXTURES, "retrieval/tiny-lfm2-colbert");

const root = mkdtempSync(join(tmpdir(), "lfm-calibrate-"));
const docs = join(root, "docs");
const index = join(root, "index");
const CORPUS: Record<string, string> = {
  "pump.txt": "The centrifugal pump P-7 must be primed before start-up. If the pump cavitates, reduce the suction lift.",
  "valve.txt": "Valve V-12 needs new gland packing every two years. Tighten the gland nuts evenly.",
  "pompe.txt": "La pompe centrifuge P-7 doit être amorcée avant le démarrage. Vidanger l'huile toutes les 500 heures.",
  "motor.md": "# Motor\n\nThe motor bearings are greased every 2,000 hours with lithium grease.",
  "ポンプ.txt": "遠心ポンプP-7は起動前に呼び水が必要です。",
  "насос.txt": "Центробежный насос P-7 нужно заполнить перед пуском.",
};

let model: TextModel;
let encoder: ColbertEncoder;

beforeAll(async () => {
  mkdirSync(docs, { recursive: true });
  for (const [name, text] of Object.entries(CORPUS)) writeFileSync(join(docs, name), text);
  runLfmJson(["index", "add", "--index", index, "--precision", "fp32", "--json", docs]);
  [model, encoder] = await Promise.all([
    TextModel.load(TEXT_MODEL, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 }),
    ColbertEncoder.load(COLBERT, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 }),
  ]);
});
afterAll(async () => {
  await model?.release();
  await encoder?.release();
  rmSync(root, { recursive: true, force: true });
});

const askOpts = (reader: IndexReader): AskOptions => ({ index: reader, model, retriever: encoder, maxTokens: 4, temperature: 0 });

describe("chooseThreshold", () => {
  it("keeps the required share of answerable scores and rejects the most unanswerable ones, halfway into the gap", () => {
    const answerable = [0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.44, 0.43, 0.42, 0.2];
    // Keep 90%: the 9 best, down to 0.42; the best unanswerable score below it is 0.3.
    expect(chooseThreshold(answerable, [0.1, 0.3, 0.5], 0.9)).toBeCloseTo(0.36, 10);
    // Keep all: down to 0.2; nothing unanswerable below it, so the threshold is 0.2 itself.
    expect(chooseThreshold(answerable, [0.3, 0.5], 1)).toBe(0.2);
    // Keep 50%: down to 0.5 (an unanswerable 0.5 ties and is answered: a threshold keeps scores ≥ it).
    expect(chooseThreshold(answerable, [0.5, 0.48], 0.5)).toBeCloseTo(0.49, 10);
  });
});

describe("calibrateMinScore", () => {
  it("stores a threshold beside the index without changing the index; the same seed gives the same threshold", async () => {
    const manifestBefore = readFileSync(join(index, "manifest.json"));
    const result = await calibrateMinScore(index, { retriever: encoder, probes: 40, seed: 7 });
    expect(result.written).toBe(true);
    expect(Number.isFinite(result.threshold)).toBe(true);
    expect(result.probes).toEqual({ answerable: 40, unanswerable: 40 });
    expect(result.answerableKept).toBeGreaterThanOrEqual(0.95);
    expect(result.scores.answerable.min).toBeLessThanOrEqual(result.scores.answerable.max);
    const live = await IndexReader.open(index);
    expect(result.documents).toBe(live.stats().documents);
    await live.close();
    // Answerable probes are phrases of passages; unanswerable ones are corpus words from several passages.
    for (const p of result.examples.answerable) expect(Object.values(CORPUS).some((t) => t.includes(p))).toBe(true);
    for (const p of result.examples.unanswerable) expect(Object.values(CORPUS).some((t) => t.includes(p))).toBe(false);

    expect(readFileSync(join(index, "manifest.json")).equals(manifestBefore)).toBe(true);
    const stored = readCalibration(index);
    expect(stored?.threshold).toBe(result.threshold);
    expect(stored?.generation).toBe(JSON.parse(manifestBefore.toString()).body.generation);

    const again = await calibrateMinScore(index, { retriever: encoder, probes: 40, seed: 7, write: false });
    expect(again.threshold).toBe(result.threshold);
    expect(again.written).toBe(false);
  });

  it("ask uses the stored threshold unless given minScore; the index's generation is reported", async () => {
    const reader = await IndexReader.open(index);
    const saved = readCalibration(index);
    try {
      if (!saved) throw new Error("the previous test stores a calibration");
      // A stored threshold above every possible score: ask abstains without minScore, answers with it.
      writeCalibration(index, { ...saved, threshold: 1.5 });
      const high = await ask("pump priming", askOpts(reader));
      expect(high).toMatchObject({ abstained: true, minScore: { value: 1.5, source: "calibration", calibratedAtGeneration: reader.generation } });
      const overridden = await ask("pump priming", { ...askOpts(reader), minScore: -1 });
      expect(overridden).toMatchObject({ abstained: false, minScore: { value: -1, source: "option" } });
      writeCalibration(index, { ...saved, threshold: -1 });
      expect(await ask("pump priming", askOpts(reader))).toMatchObject({ abstained: false, minScore: { value: -1, source: "calibration" } });

      // A calibration made with another model's encoder is not this encoder's threshold: the default applies.
      writeCalibration(index, { ...saved, threshold: 1.5, model: { ...saved.model, fingerprint: "0".repeat(32) } });
      expect((await ask("pump priming", askOpts(reader))).minScore).toEqual({ value: DEFAULT_MIN_SCORE, source: "default" });
    } finally {
      if (saved) writeCalibration(index, saved);
      await reader.close();
    }
  });

  it("an index without a calibration (as every older index) works with the default threshold", async () => {
    const old = join(root, "old-index");
    runLfmJson(["index", "add", "--index", old, "--precision", "fp32", "--json", docs]);
    expect(readCalibration(old)).toBeNull();
    const reader = await IndexReader.open(old);
    try {
      const r = await ask("pump priming", askOpts(reader));
      expect(r.minScore).toEqual({ value: DEFAULT_MIN_SCORE, source: "default" });
      expect(r.abstained).toBe((r.bestScore as number) < DEFAULT_MIN_SCORE);
    } finally {
      await reader.close();
    }
  });

  it("an empty index, a one-passage index, bad settings and a damaged calibration file are typed errors", async () => {
    const emptyDocs = join(root, "one-doc");
    mkdirSync(emptyDocs);
    writeFileSync(join(emptyDocs, "a.txt"), "Valve V-12 gland packing.");
    const one = join(root, "one-index");
    runLfmJson(["index", "add", "--index", one, "--precision", "fp32", "--json", emptyDocs]);
    await expectCode(calibrateMinScore(one, { retriever: encoder, probes: 20 }), "INDEX_EMPTY", "one passage");
    runLfmJson(["index", "rm", "--index", one, "--json", emptyDocs]);
    await expectCode(calibrateMinScore(one, { retriever: encoder, probes: 20 }), "INDEX_EMPTY", "no passages");
    expect(readCalibration(one)).toBeNull();

    await expectCode(calibrateMinScore(index, { retriever: encoder, probes: 5 }), "INVALID_ARGUMENT", "probes");
    await expectCode(calibrateMinScore(index, { retriever: encoder, keepAnswerable: 0.2 }), "INVALID_ARGUMENT", "keepAnswerable");

    const damaged = join(root, "damaged-index");
    runLfmJson(["index", "add", "--index", damaged, "--precision", "fp32", "--json", docs]);
    const reader = await IndexReader.open(damaged);
    try {
      await calibrateMinScore(reader, { retriever: encoder, probes: 20 });
      const file = join(damaged, CALIBRATION_FILE);
      writeFileSync(file, readFileSync(file, "utf8").replace(/"threshold":-?[0-9.e-]+/, '"threshold":0.123'));
      await expectCode(ask("pump", askOpts(reader)), "INDEX_CORRUPT", "lfm index calibrate");
      // Given a threshold, ask does not need the calibration; search never reads it.
      expect((await ask("pump", { ...askOpts(reader), minScore: -1 })).abstained).toBe(false);
    } finally {
      await reader.close();
    }
  });
});

describe("lfm index calibrate", () => {
  it("stores the threshold; lfm ask --json reports it and --min-score overrides it; later adds keep the index and the file", () => {
    const dir = join(root, "cli-index");
    runLfmJson(["index", "add", "--index", dir, "--precision", "fp32", "--json", docs]);
    const cal = runLfmJson<{ threshold: number; generation: number; written: boolean }>(["index", "calibrate", "--index", dir, "--probes", "20", "--json"]);
    expect(cal.written).toBe(true);
    const text = runLfm(["index", "calibrate", "--index", dir, "--probes", "20"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^threshold -?\d+\.\d{4} stored in .*calibration\.json \(index generation \d+, \d+ passages\)\n {2}answerable probes kept: /);

    const asked = runLfmJson<{ minScore: unknown; abstained: boolean; bestScore: number }>(["ask", "--index", dir, "--model", TEXT_MODEL, "--max-tokens", "4", "--json", "pump priming"]);
    expect(asked.minScore).toEqual({ value: cal.threshold, source: "calibration", calibratedAtGeneration: cal.generation });
    expect(asked.abstained).toBe(asked.bestScore < cal.threshold);
    const overridden = runLfmJson<{ minScore: unknown }>(["ask", "--index", dir, "--model", TEXT_MODEL, "--max-tokens", "4", "--min-score", "1", "--json", "pump priming"]);
    expect(overridden.minScore).toEqual({ value: 1, source: "option" });

    const more = join(root, "more-docs");
    mkdirSync(more);
    writeFileSync(join(more, "fan.txt"), "The cooling fan runs at 1,450 rpm.");
    runLfmJson(["index", "add", "--index", dir, "--json", more]);
    runLfmJson(["index", "compact", "--index", dir, "--json"]);
    expect(readCalibration(dir)?.threshold).toBe(cal.threshold);
    const after = runLfmJson<{ minScore: { source: string; calibratedAtGeneration: number } }>(["ask", "--index", dir, "--model", TEXT_MODEL, "--max-tokens", "4", "--json", "fan"]);
    expect(after.minScore).toMatchObject({ source: "calibration", calibratedAtGeneration: cal.generation });

    const bad = runLfm(["index", "calibrate", "--index", dir, "--probes", "3"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("error [INVALID_ARGUMENT]");
    const missing = runLfm(["index", "calibrate", "--index", join(root, "nothing")]);
    expect(missing.stderr).toContain("error [INDEX_NOT_FOUND]");
  });
});
