/**
 * Structured output on the tiny random-weight model (a real-layout byte-level BPE vocabulary):
 * a battery of JSON schemas × 20 temperature-1 seeds whose every output parses and validates with
 * ajv, greedy constrained output = argmax of the masked logits at every step, finish reasons,
 * stop tokens, cancellation, EBNF/regex formats, and the typed errors for bad input.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { argmax } from "../../text-core/sampler.ts";
import { TextModel, type TextGenerateOptions } from "../../text-core/model.ts";
import { type ResponseFormat, compileStructuredOutput } from "../../text-core/structured/response-format.ts";
import { integerRangeRule, stringLengthRule } from "../../text-core/structured/json-schema.ts";
import { loadXGrammar } from "../../text-core/structured/xgrammar.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";
import { join } from "node:path";
import { SCHEMA_BATTERY } from "./structured-schemas.ts";

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const SEEDS = 20;

let model: TextModel;
let prompt: number[];
beforeAll(async () => {
  model = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  prompt = model.encodePrompt("Pump report as JSON:");
});
afterAll(async () => {
  await model?.release();
});

/** The text with every JSON string literal removed (to look at what lies between the tokens). */
const outsideStrings = (json: string) => json.replace(/"(?:[^"\\]|\\.)*"/g, '""');

/** Sampler settings rotated over the battery, so every option runs with a mask. */
const SAMPLERS: TextGenerateOptions[] = [
  { temperature: 1 },
  { temperature: 1, topK: 20 },
  { temperature: 1, topP: 0.9 },
  { temperature: 1, minP: 0.05 },
  { temperature: 1, repetitionPenalty: 1.3 },
  { temperature: 1, topK: 50, topP: 0.95, minP: 0.02, repetitionPenalty: 1.1 },
];

describe("JSON schema battery", () => {
  const distinctOutputs = new Map<string, number>();
  const ajv = new Ajv2020({ strict: true, strictTuples: false, allErrors: true });
  it(`has at least 30 schemas, each a valid JSON Schema`, () => {
    expect(SCHEMA_BATTERY.length).toBeGreaterThanOrEqual(30);
    for (const { schema } of SCHEMA_BATTERY) ajv.compile(schema);
  });

  it.each(SCHEMA_BATTERY.map((entry, i) => [entry.name, entry.schema, i] as const))(
    `%s: ${SEEDS} temperature-1 seeds all finish, parse and validate`,
    async (_name, schema, i) => {
      const validate = ajv.compile(schema);
      const sampler = SAMPLERS[i % SAMPLERS.length];
      const prompts = Array.from({ length: SEEDS }, () => prompt);
      const outs = await model.completeBatch(prompts, { ...sampler, seed: 1000 * i, maxTokens: 96, responseFormat: { type: "json_schema", schema } });
      for (const [seed, out] of outs.entries()) {
        const where = `seed ${1000 * i + seed}: ${JSON.stringify(out.text)}`;
        expect(out.finishReason, where).toBe("stop");
        let value: unknown;
        expect(() => (value = JSON.parse(out.text)), where).not.toThrow();
        expect(validate(value), `${where} ${ajv.errorsText(validate.errors)}`).toBe(true);
        expect(outsideStrings(out.text), `${where}: compact JSON has no whitespace between tokens`).not.toMatch(/\s/);
        expect(out.text, `${where}: the bytes were valid UTF-8`).not.toContain("\uFFFD");
      }
      distinctOutputs.set(_name, new Set(outs.map((o) => o.text)).size);
    },
  );

  it("sampling differs across seeds (the battery does not test one output 20 times)", () => {
    const varied = [...distinctOutputs.values()].filter((n) => n > 1).length;
    expect(varied).toBeGreaterThanOrEqual(SCHEMA_BATTERY.length - 8);
  });
});

describe("greedy constrained decoding", () => {
  const formats: [string, ResponseFormat][] = [
    ["inspection form", { type: "json_schema", schema: SCHEMA_BATTERY.find((s) => s.name === "inspection form")!.schema }],
    ["$ref/$defs", { type: "json_schema", schema: SCHEMA_BATTERY.find((s) => s.name === "$ref/$defs")!.schema }],
    ["regex", { type: "regex", pattern: "[a-z]{3,5}-[0-9]{2}" }],
  ];
  it.each(formats)("%s: every token is the argmax of the masked logits", async (_name, responseFormat) => {
    const out = await model.complete(prompt, { responseFormat, maxTokens: 64 });
    expect(out.finishReason).toBe("stop");

    // Step by step by hand: forward, mask with a fresh matcher, argmax, accept.
    const constraint = (await compileStructuredOutput(model.tokenizer, model.config.vocabSize, { responseFormat }))!;
    const matcher = await constraint.newMatcher(model.stopTokenIds);
    const state = model.runtime.newState(1);
    let logits = (await model.runtime.forward(state, { ids: [prompt] })).output;
    const expected: number[] = [];
    let maskedAway = 0;
    try {
      for (let step = 0; step < 64; step++) {
        const masked = logits.slice();
        await matcher.mask(masked);
        maskedAway += masked.filter((x) => x === -Infinity).length;
        const id = argmax(masked);
        if (model.stopTokenIds.includes(id)) break;
        expect(argmax(logits) === id || masked[argmax(logits)] === -Infinity).toBe(true);
        expected.push(id);
        matcher.accept(id);
        if (await matcher.finished()) break;
        logits = (await model.runtime.forward(state, { ids: [[id]] })).output;
      }
    } finally {
      matcher.dispose();
    }
    expect(out.ids).toEqual(expected);
    expect(maskedAway, "the mask did remove tokens").toBeGreaterThan(0);
  });

  it("compact by default, bounded indentation on request", async () => {
    const schema = SCHEMA_BATTERY.find((s) => s.name === "nested objects")!.schema;
    const compact = await model.complete(prompt, { responseFormat: { type: "json_schema", schema }, maxTokens: 96 });
    const indented = await model.complete(prompt, { responseFormat: { type: "json_schema", schema, indent: 2 }, maxTokens: 160 });
    expect(compact.finishReason).toBe("stop");
    expect(indented.finishReason).toBe("stop");
    expect(outsideStrings(compact.text)).not.toMatch(/\s/);
    expect(indented.text).toMatch(/^\{\n {2}"site": \{\n {4}"id": /);
    expect(JSON.parse(indented.text)).toBeTypeOf("object");
    await expectCode(() => model.complete(prompt, { responseFormat: { type: "json_object", indent: 40 } }), "INVALID_ARGUMENT");
  });
});

describe("finish reasons, stop tokens, streaming and cancellation", () => {
  const schema = SCHEMA_BATTERY.find((s) => s.name === "inspection form")!.schema;

  it('maxTokens before the grammar completes gives finishReason "length"', async () => {
    const out = await model.complete(prompt, { responseFormat: { type: "json_schema", schema }, maxTokens: 3 });
    expect(out.ids).toHaveLength(3);
    expect(out.finishReason).toBe("length");
    expect(() => JSON.parse(out.text)).toThrow();
    const plain = await model.complete(prompt, { maxTokens: 3, stopTokenIds: [] });
    expect(plain.finishReason).toBe("length");
  });

  it('a complete grammar ends generation with "stop" without running past it', async () => {
    const spy = vi.spyOn(model.runtime, "forward");
    try {
      const out = await model.complete(prompt, { responseFormat: { type: "grammar", ebnf: 'root ::= "yes" | "no"' }, temperature: 1, seed: 5, maxTokens: 20 });
      expect(["yes", "no"]).toContain(out.text);
      expect(out.finishReason).toBe("stop");
      expect(spy.mock.calls.length).toBeLessThanOrEqual(out.ids.length); // prefill + at most one per token but the last
    } finally {
      spy.mockRestore();
    }
  });

  it("a grammar that may end or go on stops only on a stop token the grammar allows there", async () => {
    for (let seed = 0; seed < 8; seed++) {
      const out = await model.complete(prompt, { responseFormat: { type: "regex", pattern: "(ab)+" }, temperature: 1, seed, maxTokens: 24 });
      if (out.finishReason === "stop") expect(out.text).toMatch(/^(ab)+$/);
      else expect(out.text).toMatch(/^(ab)*a?$/);
    }
  });

  it("stream yields the same text and returns the finish reason; an early break releases the matcher", async () => {
    const opts: TextGenerateOptions = { responseFormat: { type: "json_schema", schema }, temperature: 1, seed: 11, maxTokens: 96 };
    const whole = await model.complete(prompt, opts);
    const tokens = model.stream(prompt, opts);
    let text = "";
    let step = await tokens.next();
    while (!step.done) {
      text += step.value.text;
      step = await tokens.next();
    }
    expect(text).toBe(whole.text);
    expect(step.value).toBe("stop");
    for await (const t of model.stream(prompt, opts)) {
      expect(t.id).toBe(whole.ids[0]);
      break;
    }
  });

  it("cancellation: an aborted signal stops constrained generation with ABORTED", async () => {
    const controller = new AbortController();
    let seen = 0;
    await expectCode(async () => {
      for await (const _ of model.stream(prompt, { responseFormat: { type: "json_schema", schema }, signal: controller.signal, maxTokens: 96 })) {
        if (++seen === 2) controller.abort();
      }
    }, "ABORTED");
    expect(seen).toBe(2);
  });

  it("completeBatch: one matcher per row, each row equal to its single run", async () => {
    const prompts = [prompt, model.encodePrompt("Valve status"), model.encodePrompt("x")];
    const opts: TextGenerateOptions = { responseFormat: { type: "json_schema", schema }, temperature: 1, seed: 77, maxTokens: 96 };
    const batch = await model.completeBatch(prompts, opts);
    for (let i = 0; i < prompts.length; i++) {
      const single = await model.complete(prompts[i], { ...opts, seed: 77 + i });
      expect(batch[i].ids, `row ${i}`).toEqual(single.ids);
      expect(batch[i].finishReason).toBe("stop");
    }
  });
});

describe("jump-forward", () => {
  it("gives the step-by-step tokens with fewer forward calls (8 schemas × 5 seeds, greedy and sampled)", async () => {
    const names = ["inspection form", "nested objects", "$ref/$defs", "array of objects", "oneOf discriminated objects", "deep mixed", "string lengths in object", "const object"];
    let stepCalls = 0;
    let jumpCalls = 0;
    const spy = vi.spyOn(model.runtime, "forward");
    try {
      for (const name of names) {
        const schema = SCHEMA_BATTERY.find((s) => s.name === name)!.schema;
        for (let seed = 0; seed < 5; seed++) {
          const opts: TextGenerateOptions = { responseFormat: { type: "json_schema", schema }, temperature: seed === 0 ? 0 : 1, topP: 0.95, seed, maxTokens: 96 };
          spy.mockClear();
          const stepwise = await model.complete(prompt, { ...opts, jumpForward: false });
          stepCalls += spy.mock.calls.length;
          spy.mockClear();
          const jumped = await model.complete(prompt, opts);
          jumpCalls += spy.mock.calls.length;
          expect(jumped.ids, `${name}, seed ${seed}`).toEqual(stepwise.ids);
          expect(jumped.finishReason).toBe(stepwise.finishReason);
        }
      }
    } finally {
      spy.mockRestore();
    }
    expect(jumpCalls).toBeLessThan(stepCalls * 0.8);
  });
});

describe("EBNF and regex formats", () => {
  it("an EBNF grammar is followed for every seed", async () => {
    const ebnf = 'root ::= "valve " id " is " state\nid ::= [1-9] [0-9]?\nstate ::= "open" | "closed"';
    const outs = await model.completeBatch(Array.from({ length: SEEDS }, () => prompt), { responseFormat: { type: "grammar", ebnf }, temperature: 1, seed: 3, maxTokens: 32 });
    for (const out of outs) {
      expect(out.finishReason).toBe("stop");
      expect(out.text).toMatch(/^valve [1-9][0-9]? is (open|closed)$/);
    }
  });

  it("a regex is followed for every seed", async () => {
    const outs = await model.completeBatch(Array.from({ length: SEEDS }, () => prompt), { responseFormat: { type: "regex", pattern: "[A-Z]{2}-[0-9]{3}( ok| fail)?" }, temperature: 1, seed: 9, maxTokens: 32 });
    for (const out of outs) {
      expect(out.finishReason).toBe("stop");
      expect(out.text).toMatch(/^[A-Z]{2}-[0-9]{3}( ok| fail)?$/);
    }
  });

  it("additionalProperties as a schema: every finished object validates (keys are free strings, so some run out of tokens)", async () => {
    const schema = { type: "object", additionalProperties: { enum: [1, 2, 3] } };
    const validate = new Ajv2020({ strict: true }).compile(schema);
    const outs = await model.completeBatch(Array.from({ length: SEEDS }, () => prompt), { responseFormat: { type: "json_schema", schema }, temperature: 1, seed: 31, maxTokens: 96 });
    const finished = outs.filter((o) => o.finishReason === "stop");
    expect(finished.length).toBeGreaterThanOrEqual(3);
    for (const out of finished) expect(validate(JSON.parse(out.text)), out.text).toBe(true);
  });

  it("json_object: any JSON object", async () => {
    const outs = await model.completeBatch(Array.from({ length: 8 }, () => prompt), { responseFormat: { type: "json_object" }, temperature: 1, seed: 21, maxTokens: 48 });
    for (const out of outs) {
      // Unbounded strings may run out of tokens; whatever finished is an object.
      if (out.finishReason === "stop") expect(JSON.parse(out.text)).toBeTypeOf("object");
      else expect(out.text.startsWith("{")).toBe(true);
    }
  });
});

describe("bad input fails before any token", () => {
  const unsupported: [string, unknown, RegExp][] = [
    ["format", { type: "string", format: "email" }, /"format" at \/format/],
    ["uniqueItems", { type: "array", items: { type: "integer" }, uniqueItems: true }, /"uniqueItems" at \/uniqueItems/],
    ["not", { not: { type: "string" } }, /"not" at \/not/],
    ["allOf", { allOf: [{ type: "object" }] }, /"allOf" at \/allOf/],
    ["multipleOf", { type: "integer", multipleOf: 3 }, /"multipleOf"/],
    ["nested patternProperties", { type: "object", properties: { a: { type: "object", patternProperties: { "^x": {} } } } }, /\/properties\/a\/patternProperties/],
    ["decimal range", { type: "number", minimum: 0, maximum: 1.5 }, /"minimum" at \/minimum/],
    ["overlapping oneOf", { oneOf: [{ type: "integer" }, { type: "number" }] }, /"oneOf" at \/oneOf/],
    ["pattern with length", { type: "string", pattern: "^[a-z]+$", maxLength: 3 }, /"maxLength" at \/maxLength/],
    ["pattern with dot", { type: "string", pattern: "^a.c$" }, /"pattern" at \/pattern/],
    ["remote $ref", { $ref: "https://example.com/s.json" }, /"\$ref" at \/\$ref/],
    ["additionalProperties schema beside properties", { type: "object", properties: { a: { type: "string" } }, additionalProperties: { type: "integer" } }, /\/additionalProperties/],
    ["required but not listed", { type: "object", properties: { a: { type: "string" } }, required: ["a", "b"] }, /"b"/],
  ];
  it.each(unsupported)("SCHEMA_UNSUPPORTED: %s", async (_name, schema, message) => {
    const spy = vi.spyOn(model.runtime, "forward");
    try {
      await expectCode(() => model.complete(prompt, { responseFormat: { type: "json_schema", schema }, maxTokens: 4 }), "SCHEMA_UNSUPPORTED", message);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  const invalid: [string, unknown, RegExp][] = [
    ["unknown type", { type: "strin" }, /at \/type/],
    ["properties not an object", { type: "object", properties: 3 }, /at \/properties/],
    ["bad required", { type: "object", required: "a" }, /at \/required/],
    ["negative maxItems", { type: "array", maxItems: -1 }, /at \/maxItems/],
    ["empty integer range", { type: "integer", minimum: 5, maximum: 4 }, /no integer/],
    ["bad pattern", { type: "string", pattern: "([a-z]" }, /at \/pattern/],
    ["not a schema", [1, 2], /at \//],
    ["nested bad schema", { type: "object", properties: { a: { type: "array", items: 7 } } }, /at \/properties\/a\/items/],
  ];
  it.each(invalid)("SCHEMA_INVALID: %s", async (_name, schema, message) => {
    await expectCode(() => model.complete(prompt, { responseFormat: { type: "json_schema", schema }, maxTokens: 4 }), "SCHEMA_INVALID", message);
  });

  it("EBNF and regex syntax errors name the position", async () => {
    await expectCode(() => model.complete(prompt, { responseFormat: { type: "grammar", ebnf: 'root ::= "a" | ' } }), "GRAMMAR_INVALID", /line 1, column 16/);
    await expectCode(() => model.complete(prompt, { responseFormat: { type: "grammar", ebnf: "root ::= undefined_rule" } }), "GRAMMAR_INVALID", /line 1, column \d+: Rule "undefined_rule" is not defined/);
    await expectCode(() => model.complete(prompt, { responseFormat: { type: "regex", pattern: "a(b" } }), "REGEX_INVALID", /position 4/);
    // xgrammar is still usable after reporting an error
    const out = await model.complete(prompt, { responseFormat: { type: "regex", pattern: "ok" }, maxTokens: 8 });
    expect(out.text).toBe("ok");
  });

  it("an unknown responseFormat type and responseFormat with toolChoice are INVALID_ARGUMENT", async () => {
    await expectCode(() => model.complete(prompt, { responseFormat: { type: "yaml" } as unknown as ResponseFormat }), "INVALID_ARGUMENT");
    await expectCode(
      () => model.complete(prompt, { responseFormat: { type: "json_object" }, tools: [{ name: "f", parameters: { type: "object", properties: {} } }], toolChoice: "required" }),
      "INVALID_ARGUMENT",
    );
  });
});

describe("our rules for the leaves xgrammar gets wrong", () => {
  it("integer ranges accept exactly the integers in range (checked for every value in -1200..1200)", async () => {
    const xg = await loadXGrammar();
    const ranges: [bigint | undefined, bigint | undefined][] = [[7n, 123n], [-5n, undefined], [undefined, -7n], [-100n, -3n], [0n, 0n], [-1000n, 1000n], [90n, 1100n], [undefined, 10n], [1n, undefined]];
    for (const [lo, hi] of ranges) {
      const grammar = await xg.Grammar.fromEBNF(`root ::= ${integerRangeRule(lo, hi)}`);
      const wrong: string[] = [];
      for (let n = -1200; n <= 1200; n++) {
        const want = (lo === undefined || BigInt(n) >= lo) && (hi === undefined || BigInt(n) <= hi);
        if ((await xg.Testings.isGrammarAcceptString(grammar, String(n))) !== want) wrong.push(String(n));
      }
      for (const junk of ["-", "-0", "01", "+1", ""]) if (await xg.Testings.isGrammarAcceptString(grammar, junk)) wrong.push(junk);
      grammar.dispose();
      expect(wrong, `[${lo}, ${hi}]`).toEqual([]);
    }
  });

  it("length-bounded strings count characters and never hold raw control characters", async () => {
    const xg = await loadXGrammar();
    const grammar = await xg.Grammar.fromEBNF(`root ::= ${stringLengthRule(2, 4)}`);
    const accepts = (s: string) => xg.Testings.isGrammarAcceptString(grammar, s);
    for (const ok of ['"ab"', '"日本語"', '"a\\nb"', '"\\u00e9xy"', '"🚰✓"']) expect(await accepts(ok), ok).toBe(true);
    for (const bad of ['"a"', '"abcde"', '"a\tb"', '"a"b"', '"\\ud83d\\udeb0"']) expect(await accepts(bad), bad).toBe(false);
    grammar.dispose();
  });
});
