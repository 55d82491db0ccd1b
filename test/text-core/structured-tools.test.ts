/**
 * Constrained tool calls on the tiny random-weight model: with toolChoice "required" or { name },
 * every reply of 10 tool sets × 20 temperature-1 seeds is LFM2's call syntax, parses with
 * parseToolCalls and has arguments that validate against the tool's schema; "auto" leaves text
 * free and constrains a call once `<|tool_call_start|>` appears.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ToolDefinition } from "../../text-core/chat.ts";
import { TextModel } from "../../text-core/model.ts";
import { Rng } from "../../text-core/sampler.ts";
import { compileStructuredOutput } from "../../text-core/structured/response-format.ts";
import { TOOL_CALL_END, TOOL_CALL_START, parseToolCalls } from "../../text-core/tool-calls.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const MODEL_DIR = join(FIXTURES, "text/tiny-lfm2");
const SEEDS = 20;

type Tool = { name: string; description?: string; parameters: Record<string, unknown> };
const obj = (properties: Record<string, unknown>, required: string[] = Object.keys(properties)) => ({ type: "object", properties, required });

const TOOL_SETS: { name: string; tools: Tool[]; choice: "required" | { name: string } }[] = [
  { name: "one valve", choice: "required", tools: [{ name: "set_valve", parameters: obj({ id: { type: "integer", minimum: 1, maximum: 99 }, open: { type: "boolean" } }) }] },
  {
    name: "weather + time",
    choice: "required",
    tools: [
      { name: "get_weather", description: "Weather for a city", parameters: obj({ city: { type: "string", minLength: 1, maxLength: 8 }, days: { type: "integer", minimum: 1, maximum: 7 } }, ["city"]) },
      { name: "get_time", parameters: obj({ zone: { enum: ["UTC", "CET", "PST"] } }) },
    ],
  },
  { name: "no arguments", choice: "required", tools: [{ name: "ping", parameters: { type: "object", properties: {} } }, { name: "reset", parameters: { type: "object", properties: {} } }] },
  {
    name: "optional only",
    choice: "required",
    tools: [{ name: "list_alarms", parameters: obj({ site: { type: "integer", minimum: 0, maximum: 20 }, active: { type: "boolean" }, level: { enum: ["low", "high"] } }, []) }],
  },
  {
    name: "numbers and null",
    choice: "required",
    tools: [{ name: "log_reading", parameters: obj({ value: { type: "number" }, unit: { enum: ["bar", "psi"] }, note: { type: "null" } }, ["value", "unit"]) }],
  },
  {
    name: "arrays",
    choice: "required",
    tools: [{ name: "tag_assets", parameters: obj({ ids: { type: "array", items: { type: "integer", minimum: 0, maximum: 999 }, minItems: 1, maxItems: 3 }, tags: { type: "array", items: { enum: ["hot", "wet"] }, maxItems: 2 } }) }],
  },
  {
    name: "nested object",
    choice: "required",
    tools: [
      {
        name: "move_arm",
        parameters: obj({ target: obj({ x: { type: "integer", minimum: -50, maximum: 50 }, y: { type: "integer", minimum: -50, maximum: 50 } }), speed: { enum: [1, 2, 3] } }, ["target"]),
      },
    ],
  },
  {
    name: "anyOf and type lists",
    choice: "required",
    tools: [{ name: "set_limit", parameters: obj({ limit: { anyOf: [{ type: "integer", minimum: 0, maximum: 100 }, { const: "none" }] }, strict: { type: ["boolean", "null"] } }) }],
  },
  {
    name: "forced by name among three",
    choice: { name: "send_alert" },
    tools: [
      { name: "get_weather", parameters: obj({ city: { type: "string", maxLength: 6 } }) },
      { name: "send_alert", parameters: obj({ level: { enum: ["info", "warn", "crit"] }, code: { type: "string", minLength: 2, maxLength: 4 } }) },
      { name: "ping", parameters: { type: "object", properties: {} } },
    ],
  },
  {
    name: "OpenAI-style definitions, unicode enum",
    choice: "required",
    tools: [
      { type: "function", function: { name: "greet", parameters: obj({ lang: { enum: ["français", "日本語", "español"] }, loud: { type: "boolean" } }) } } as unknown as Tool,
      { type: "function", function: { name: "wave", parameters: obj({ times: { type: "integer", minimum: 1, maximum: 3 } }) } } as unknown as Tool,
    ],
  },
];

/** A tool's name and parameter schema, whichever form it was given in. */
function signature(tool: Tool): { name: string; parameters: Record<string, unknown> } {
  const def = (tool as unknown as { function?: Tool }).function ?? tool;
  return { name: def.name, parameters: def.parameters };
}

let model: TextModel;
let prompt: number[];
beforeAll(async () => {
  model = await TextModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
  prompt = model.encodePrompt("Call a tool:");
});
afterAll(async () => {
  await model?.release();
});

describe("constrained tool calls", () => {
  const ajv = new Ajv2020({ strict: true, allErrors: true });

  it("covers 10 tool sets", () => expect(TOOL_SETS).toHaveLength(10));

  it.each(TOOL_SETS.map((set, i) => [set.name, set, i] as const))(`%s: ${SEEDS} seeds, every call parses and validates`, async (_name, set, i) => {
    const signatures = set.tools.map(signature);
    const allowed = typeof set.choice === "object" ? [set.choice.name] : signatures.map((s) => s.name);
    const validators = new Map(signatures.map((s) => [s.name, ajv.compile(s.parameters)]));
    const outs = await model.completeBatch(
      Array.from({ length: SEEDS }, () => prompt),
      { tools: set.tools as ToolDefinition[], toolChoice: set.choice, temperature: 1, seed: 500 * i, maxTokens: 256 },
    );
    for (const [row, out] of outs.entries()) {
      const raw = model.tokenizer.decode(out.ids); // the markers are special tokens: keep them
      const where = `seed ${500 * i + row}: ${JSON.stringify(raw)}`;
      expect(out.finishReason, where).toBe("stop");
      expect(raw.startsWith(TOOL_CALL_START), where).toBe(true);
      const { content, toolCalls } = parseToolCalls(raw);
      expect(content, where).toBe("");
      expect(toolCalls.length, where).toBeGreaterThanOrEqual(1);
      for (const call of toolCalls) {
        expect(allowed, where).toContain(call.name);
        const validate = validators.get(call.name)!;
        expect(validate(call.arguments), `${where}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      }
    }
  });

  it('"auto": free text until the trigger, then only a well-formed call (random walks over the masks)', async () => {
    const set = TOOL_SETS[1];
    const constraint = (await compileStructuredOutput(model.tokenizer, model.config.vocabSize, { tools: set.tools as ToolDefinition[], toolChoice: "auto" }))!;
    const start = model.tokenizer.tokenToId(TOOL_CALL_START)!;
    const stop = model.stopTokenIds;
    const validators = new Map(set.tools.map(signature).map((s) => [s.name, ajv.compile(s.parameters)]));
    let freeTextTokens = 0;
    let closedCalls = 0;
    for (let seed = 0; seed < SEEDS; seed++) {
      const rng = new Rng(seed);
      const matcher = await constraint.newMatcher(stop);
      const ids: number[] = [];
      let finished = false;
      try {
        // A few free tokens: before the trigger the mask allows (nearly) everything.
        for (let k = 0; k < 3; k++) {
          const allowed = allowedIds(await matcher.allowed()).filter((id) => !stop.includes(id) && id !== start);
          if (k === 0) expect(allowed.length).toBeGreaterThan(300); // of 512 non-special tokens (the rest start mid-character)
          const id = allowed[Math.floor(rng.next() * allowed.length)];
          matcher.accept(id);
          ids.push(id);
          freeTextTokens++;
        }
        matcher.accept(start);
        ids.push(start);
        for (let step = 0; step < 200; step++) {
          const allowed = allowedIds(await matcher.allowed());
          const id = allowed[Math.floor(rng.next() * allowed.length)];
          if (stop.includes(id)) break;
          matcher.accept(id);
          ids.push(id);
          const text = model.tokenizer.decode(ids);
          // (the free text itself may hold an end marker: only one after the call's start counts)
          if (text.slice(text.lastIndexOf(TOOL_CALL_START)).includes(TOOL_CALL_END)) {
            finished = true;
            break;
          }
        }
      } finally {
        matcher.dispose();
      }
      const text = model.tokenizer.decode(ids);
      if (!finished) continue; // a random walk may wander inside a long string; the parse check needs a closed call
      const { toolCalls } = parseToolCalls(text);
      closedCalls++;
      expect(toolCalls.length, text).toBeGreaterThanOrEqual(1);
      for (const call of toolCalls) expect(validators.get(call.name)?.(call.arguments), `${text}`).toBe(true);
    }
    expect(freeTextTokens).toBe(3 * SEEDS);
    expect(closedCalls).toBeGreaterThanOrEqual(SEEDS / 2);
  });

  it('"auto" on the model: free text holds no special token but the call markers, and a finished call parses', async () => {
    const outs = await model.completeBatch(Array.from({ length: SEEDS }, () => prompt), {
      tools: TOOL_SETS[0].tools as ToolDefinition[],
      toolChoice: "auto",
      temperature: 1,
      seed: 4,
      maxTokens: 24,
    });
    const markers = new Set([model.tokenizer.tokenToId(TOOL_CALL_START), model.tokenizer.tokenToId(TOOL_CALL_END)]);
    const free = await model.complete(prompt, { temperature: 1, seed: 4, maxTokens: 24 });
    expect(free.ids.some((id) => model.tokenizer.specialTokenIds.has(id)), "the unconstrained run does emit special tokens").toBe(true);
    for (const out of outs) {
      expect(out.ids.length).toBeGreaterThan(0);
      expect(out.ids.filter((id) => model.tokenizer.specialTokenIds.has(id) && !markers.has(id))).toEqual([]);
      const raw = model.tokenizer.decode(out.ids);
      if (out.finishReason === "stop" && raw.includes(TOOL_CALL_START)) expect(() => parseToolCalls(raw)).not.toThrow();
    }
  });

  it("chat() renders the tools and constrains the reply", async () => {
    const set = TOOL_SETS[0];
    let text = "";
    const tokens = model.chat([{ role: "user", content: "Open valve 3" }], { tools: set.tools as ToolDefinition[], toolChoice: "required", temperature: 1, seed: 1, maxTokens: 256 });
    const ids: number[] = [];
    let step = await tokens.next();
    while (!step.done) {
      text += step.value.text;
      if (step.value.id >= 0) ids.push(step.value.id);
      step = await tokens.next();
    }
    expect(step.value).toBe("stop");
    const { toolCalls } = parseToolCalls(model.tokenizer.decode(ids));
    expect(toolCalls[0].name).toBe("set_valve");
    expect(text).toMatch(/^\[set_valve\(/); // streamed text skips the special marker tokens
  });

  it("bad tool input is refused before any token", async () => {
    const tools = TOOL_SETS[0].tools as ToolDefinition[];
    await expectCode(() => model.complete(prompt, { tools, toolChoice: { name: "nope" } }), "INVALID_ARGUMENT", /"nope"/);
    await expectCode(() => model.complete(prompt, { toolChoice: "required" }), "INVALID_ARGUMENT");
    await expectCode(
      () => model.complete(prompt, { tools: [{ name: "f", parameters: { type: "object", properties: { s: { type: "string", format: "date" } } } }], toolChoice: "required" }),
      "SCHEMA_UNSUPPORTED",
      /tools\[0\]\.parameters\/properties\/s\/format/,
    );
    await expectCode(
      () => model.complete(prompt, { tools: [{ name: "f", parameters: { type: "object", properties: { "not-an-identifier": { type: "integer" } } } }], toolChoice: "required" }),
      "SCHEMA_UNSUPPORTED",
      /Python identifiers/,
    );
    await expectCode(() => model.complete(prompt, { tools: [{ name: "bad name", parameters: {} }], toolChoice: "required" }), "SCHEMA_UNSUPPORTED");
    await expectCode(
      () => model.complete(prompt, { tools: [{ name: "f", parameters: { type: "object", properties: { a: { type: "integer" } }, minProperties: 1 } }], toolChoice: "required" }),
      "SCHEMA_UNSUPPORTED",
      /tools\[0\]\.parameters\/minProperties/,
    );
    await expectCode(() => model.complete(prompt, { tools: [{ name: "f", parameters: { type: "object", properties: {}, required: ["x"] } }], toolChoice: "required" }), "SCHEMA_INVALID", /"x"/);
  });

  it('toolChoice "none" leaves generation unconstrained', async () => {
    const tools = TOOL_SETS[0].tools as ToolDefinition[];
    const opts = { temperature: 1, seed: 8, maxTokens: 12, stopTokenIds: [] };
    const free = await model.complete(prompt, opts);
    const none = await model.complete(prompt, { ...opts, tools, toolChoice: "none" });
    expect(none.ids).toEqual(free.ids);
  });
});

function allowedIds(bits: Int32Array): number[] {
  const ids: number[] = [];
  for (let w = 0; w < bits.length; w++) for (let b = 0; b < 32; b++) if ((bits[w] >>> b) & 1) ids.push(w * 32 + b);
  return ids;
}
