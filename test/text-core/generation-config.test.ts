/**
 * `generation_config.json` sampling defaults: parsed strictly (a malformed file is CONFIG_INVALID
 * naming the file and the field), applied by the library (TextModel, VlModel) to every option a
 * call leaves out, and the same in the CLI.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate } from "../../text-core/generate.ts";
import { GREEDY, parseGenerationDefaults, readGenerationDefaults, withGenerationDefaults } from "../../text-core/generation-config.ts";
import { TextModel } from "../../text-core/model.ts";
import { VlModel } from "../../vision/vl-model.ts";
import { runLfm } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const TEXT_MODEL = join(FIXTURES, "text/tiny-lfm2");
const VL_MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");
const PROMPT = readJson<{ greedy: { prompt_ids: number[] } }>("text/reference.json").greedy.prompt_ids;
const SAMPLING = { do_sample: true, temperature: 1.7, top_k: 40, top_p: 0.9, min_p: 0.02, repetition_penalty: 1.1 };

const root = mkdtempSync(join(tmpdir(), "lfm-generation-config-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let count = 0;
/** A copy of `fixture` whose generation_config.json is `content` (a string as is, else JSON; undefined = no file). */
function withGenerationConfig(fixture: string, content: unknown): string {
  const dir = join(root, String(count++));
  cpSync(fixture, dir, { recursive: true });
  const file = join(dir, "generation_config.json");
  rmSync(file, { force: true });
  if (content !== undefined) writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return dir;
}

describe("reading generation_config.json", () => {
  it("is greedy without the file or with do_sample off, and HF's sampling fields with it on", () => {
    expect(readGenerationDefaults(withGenerationConfig(TEXT_MODEL, undefined))).toEqual(GREEDY);
    expect(readGenerationDefaults(TEXT_MODEL)).toEqual({ temperature: 0 });
    expect(parseGenerationDefaults({ do_sample: false, temperature: 0.6, top_k: 20 })).toEqual({ temperature: 0 });
    expect(parseGenerationDefaults(SAMPLING)).toEqual({ temperature: 1.7, topK: 40, topP: 0.9, minP: 0.02, repetitionPenalty: 1.1 });
    // HF's default temperature is 1; null is an unset field.
    expect(parseGenerationDefaults({ do_sample: true, top_k: null, temperature: null })).toEqual({ temperature: 1 });
  });

  it("a malformed file is CONFIG_INVALID naming the file and the field", () => {
    const notJson = withGenerationConfig(TEXT_MODEL, "{ do_sample: true");
    expect(expectCode(() => readGenerationDefaults(notJson), "CONFIG_INVALID").message).toContain(join(notJson, "generation_config.json"));
    const list = withGenerationConfig(TEXT_MODEL, [SAMPLING]);
    expect(expectCode(() => readGenerationDefaults(list), "CONFIG_INVALID").message).toMatch(/generation_config\.json is not a JSON object/);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ do_sample: true, temperature: "hot" }, "temperature"],
      [{ do_sample: true, top_k: -1 }, "top_k"],
      [{ do_sample: true, top_k: 2.5 }, "top_k"],
      [{ do_sample: true, top_p: 0 }, "top_p"],
      [{ do_sample: true, min_p: 1.5 }, "min_p"],
      [{ do_sample: true, repetition_penalty: 0 }, "repetition_penalty"],
      [{ do_sample: "yes" }, "do_sample"],
      // Malformed is malformed even when sampling is off.
      [{ do_sample: false, temperature: -1 }, "temperature"],
    ];
    for (const [raw, field] of cases) {
      const dir = withGenerationConfig(TEXT_MODEL, raw);
      const { message } = expectCode(() => readGenerationDefaults(dir), "CONFIG_INVALID");
      expect(message, JSON.stringify(raw)).toContain(join(dir, "generation_config.json"));
      expect(message, JSON.stringify(raw)).toContain(`"${field}"`);
    }
  });

  it("the caller's options win field by field", () => {
    const defaults = parseGenerationDefaults(SAMPLING);
    expect(withGenerationDefaults(defaults, { topK: 5, temperature: undefined, maxTokens: 3 })).toEqual({
      temperature: 1.7, topK: 5, topP: 0.9, minP: 0.02, repetitionPenalty: 1.1, maxTokens: 3,
    });
    expect(withGenerationDefaults(GREEDY, { seed: 4 })).toEqual({ temperature: 0, seed: 4 });
  });
});

describe("the library applies the checkpoint's sampling", () => {
  const dir = withGenerationConfig(TEXT_MODEL, SAMPLING);
  let model: TextModel;
  beforeAll(async () => {
    model = await TextModel.load(dir, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  });
  afterAll(async () => {
    await model?.release();
  });

  async function ids(opts: Parameters<typeof generate>[2]): Promise<number[]> {
    const out: number[] = [];
    for await (const t of generate(model.runtime, PROMPT, { maxTokens: 12, stopTokenIds: [], ...opts })) out.push(t.id);
    return out;
  }

  it("exposes the defaults and samples with them when the call gives none", async () => {
    expect(model.generationDefaults).toEqual({ temperature: 1.7, topK: 40, topP: 0.9, minP: 0.02, repetitionPenalty: 1.1 });
    const explicit = await ids({ seed: 11, temperature: 1.7, topK: 40, topP: 0.9, minP: 0.02, repetitionPenalty: 1.1 });
    const greedy = await ids({});
    expect(explicit).not.toEqual(greedy); // else this test could not tell sampling from greedy
    expect((await model.complete(PROMPT, { maxTokens: 12, stopTokenIds: [], seed: 11 })).ids).toEqual(explicit);
    const streamed: number[] = [];
    for await (const t of model.stream(PROMPT, { maxTokens: 12, stopTokenIds: [], seed: 11 })) if (t.id >= 0) streamed.push(t.id);
    expect(streamed).toEqual(explicit);
    // An explicit option wins over its default only: temperature 0 is greedy whatever the rest.
    expect((await model.complete(PROMPT, { maxTokens: 12, stopTokenIds: [], seed: 11, temperature: 0 })).ids).toEqual(greedy);
    expect((await model.complete(PROMPT, { maxTokens: 12, stopTokenIds: [], seed: 11, topK: 1 })).ids).toEqual(await ids({ seed: 11, temperature: 1.7, topK: 1, topP: 0.9, minP: 0.02, repetitionPenalty: 1.1 }));
  });

  it("the CLI samples the same as the library", async () => {
    const r = runLfm(["generate", "--model", dir, "--prompt-ids", PROMPT.join(","), "--max-tokens", "12", "--seed", "11", "--precision", "fp32", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const library = await model.complete(PROMPT, { maxTokens: 12, seed: 11 });
    expect(JSON.parse(r.stdout).ids).toEqual(library.ids);
  });
});

describe("a malformed generation_config.json fails the load", () => {
  it("TextModel and VlModel: CONFIG_INVALID before any graph is built", async () => {
    const cache = join(root, "untouched-cache");
    mkdirSync(cache);
    for (const [fixture, load] of [
      [TEXT_MODEL, (d: string) => TextModel.load(d, { cacheDir: cache })],
      [VL_MODEL, (d: string) => VlModel.load(d, { cacheDir: cache })],
    ] as const) {
      const dir = withGenerationConfig(fixture, { do_sample: true, temperature: "hot" });
      await expect(load(dir)).rejects.toMatchObject({ code: "CONFIG_INVALID", message: expect.stringContaining('"temperature"') });
    }
    expect(readdirSync(cache)).toEqual([]);
  });

  it("the CLI reports it as a typed error (it used to fall back to greedy silently)", () => {
    const dir = withGenerationConfig(TEXT_MODEL, { do_sample: true, top_k: -3 });
    const r = runLfm(["generate", "--model", dir, "--prompt-ids", "1,2", "--max-tokens", "2"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("[CONFIG_INVALID]");
    expect(r.stderr).toContain('"top_k"');
  });
});
