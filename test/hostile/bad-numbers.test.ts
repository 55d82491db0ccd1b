/** Numbers a clumsy user gives: thread counts, token ids outside the vocabulary, weights that are NaN. */
import { copyFileSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeSafetensors } from "../../bench/safetensors-writer.ts";
import { isLfmError } from "../../text-core/errors.ts";
import { TextModel } from "../../text-core/model.ts";
import { SafetensorsFile } from "../../text-core/safetensors.ts";
import { runLfm } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const TINY = join(FIXTURES, "text/tiny-lfm2");

describe("numbers out of range", () => {
  it("--threads 1000 (and 0, -1, 2.5) is INVALID_ARGUMENT at once, before any graph is built", () => {
    const cache = mkdtempSync(join(tmpdir(), "threads-cache-"));
    for (const threads of ["1000", "0", "-1", "2.5"]) {
      const r = runLfm(["generate", "--prompt", "pump", "--max-tokens", "1", `--threads=${threads}`], { env: { LFM_CACHE_DIR: cache } });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: .*--threads/m);
    }
    expect(readdirSync(cache)).toEqual([]);
  });

  it("lfm tokenize --decode with an id beyond the vocabulary is INVALID_ARGUMENT naming it", () => {
    const r = runLfm(["tokenize", "--decode", "1,5000,6"]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --decode: 5000 is not a token id/m);
    expect(r.stdout).toBe("");
  });
});

describe("weights that are all NaN", () => {
  const dir = mkdtempSync(join(tmpdir(), "nan-weights-"));
  for (const f of readdirSync(TINY)) if (f !== "model.safetensors") copyFileSync(join(TINY, f), join(dir, f));
  const source = SafetensorsFile.open(join(TINY, "model.safetensors"));
  writeSafetensors(
    join(dir, "model.safetensors"),
    source.names().map((name) => {
      const { shape } = source.info(name);
      return { name, dtype: "F32" as const, shape, data: new Uint8Array(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(Number.NaN).buffer) };
    }),
  );
  source.close();

  it("generation is NON_FINITE_LOGITS, not token 0 forever", async () => {
    const model = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision: "fp32", threads: 1 });
    try {
      let error: unknown;
      try {
        await model.complete(model.encodePrompt("pump"), { maxTokens: 8 });
      } catch (e) {
        error = e;
      }
      expect(isLfmError(error, "NON_FINITE_LOGITS")).toBe(true);
      await expect(model.complete(model.encodePrompt("pump"), { maxTokens: 8, temperature: 1, seed: 3 })).rejects.toMatchObject({ code: "NON_FINITE_LOGITS" });
    } finally {
      await model.release();
    }
    const r = runLfm(["generate", "--model", dir, "--prompt", "pump", "--max-tokens", "8"]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^error \[NON_FINITE_LOGITS\]/m);
  });
});
