/** The agent's tool plumbing without a model: loading and checking tools, validating arguments, running calls, yes/no. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { describe, expect, it } from "vitest";
import { type AgentTool, MAX_TOOL_RESULT_CHARS, checkTools, loadToolsModule, runToolCall, validateArguments } from "../../pipelines/agent-tools.ts";
import { confirmQuestion, isYes } from "../../pipelines/agent.ts";
import type { JsonValue } from "../../text-core/tool-calls.ts";
import { expectCode } from "../helpers/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "lfm-agent-tools-"));
function moduleFile(name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

const torque: AgentTool = {
  name: "get_torque",
  description: "Torque for a part",
  parameters: { type: "object", properties: { part: { type: "string" }, unit: { enum: ["nm", "ftlb"] } }, required: ["part"] },
  run: async (args) => ({ part: args.part, torque: 85 }),
};

describe("checkTools", () => {
  it("accepts plain tool objects and refuses wrong shapes with TOOLS_INVALID naming the tool", () => {
    expect(checkTools([torque])).toEqual([torque]);
    expectCode(() => checkTools([]), "TOOLS_INVALID", "non-empty array");
    expectCode(() => checkTools({ tools: [] }), "TOOLS_INVALID", "an object");
    expectCode(() => checkTools([{ name: "x" }]), "TOOLS_INVALID", 'tool "x"', '"run"');
    expectCode(() => checkTools([torque, { ...torque }]), "TOOLS_INVALID", 'tool "get_torque" is defined twice');
    expectCode(() => checkTools([{ ...torque, confirm: "yes" }]), "TOOLS_INVALID", '"confirm"');
    expectCode(() => checkTools([7]), "TOOLS_INVALID", "tool 0");
  });

  it("refuses a schema the call grammar cannot enforce, naming the tool and the keyword", () => {
    const pattern = { ...torque, name: "lookup", parameters: { type: "object", properties: { part: { type: "string", pattern: "^P-" } } } };
    expectCode(() => checkTools([pattern]), "SCHEMA_UNSUPPORTED", 'tool "lookup"', "pattern");
    const array = { ...torque, name: "lookup", parameters: { type: "array" } };
    expectCode(() => checkTools([array]), "SCHEMA_INVALID", 'tool "lookup"', "object schema");
    const badName = { ...torque, name: "log-pump" };
    expectCode(() => checkTools([badName]), "SCHEMA_UNSUPPORTED", 'tool "log-pump"', "identifier");
    const missingRequired = { ...torque, name: "lookup", parameters: { type: "object", properties: {}, required: ["part"] } };
    expectCode(() => checkTools([missingRequired]), "SCHEMA_INVALID", 'tool "lookup"', '"part"');
  });
});

describe("loadToolsModule", () => {
  it("loads the default export", async () => {
    const path = moduleFile("ok.mjs", `export default [{ name: "ping", parameters: { type: "object", properties: {} }, run: async () => "pong" }];`);
    const tools = await loadToolsModule(path);
    expect(tools.map((t) => t.name)).toEqual(["ping"]);
    expect(await tools[0].run({}, { signal: new AbortController().signal })).toBe("pong");
  });

  it("a module that cannot be imported is TOOLS_INVALID with the reason", async () => {
    await expectCode(loadToolsModule(join(dir, "missing.mjs")), "TOOLS_INVALID", "missing.mjs", "not found");
    await expectCode(loadToolsModule(moduleFile("syntax.mjs", "export default [ {;")), "TOOLS_INVALID", "syntax.mjs", /SyntaxError|syntax/); // vitest imports through vite, whose words differ from node's
    await expectCode(loadToolsModule(moduleFile("throws.mjs", `throw new Error("no database");`)), "TOOLS_INVALID", "throws.mjs", "no database");
    await expectCode(loadToolsModule(moduleFile("nodefault.mjs", "export const tools = [];")), "TOOLS_INVALID", "no default export");
    const badSchema = moduleFile("schema.mjs", `export default [{ name: "find", parameters: { type: "object", properties: { q: { type: "string", format: "email" } } }, run: () => 1 }];`);
    await expectCode(loadToolsModule(badSchema), "SCHEMA_UNSUPPORTED", 'tool "find"', "format");
  });
});

describe("validateArguments", () => {
  const schema = {
    type: "object",
    properties: {
      part: { type: "string", minLength: 2, maxLength: 5 },
      count: { type: "integer", minimum: 1, maximum: 10 },
      ratio: { type: "number", exclusiveMaximum: 1 },
      mode: { enum: ["on", "off"] },
      tags: { type: "array", items: { type: "string" }, maxItems: 2 },
      when: { anyOf: [{ type: "string" }, { type: "null" }] },
      nested: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false },
    },
    required: ["part"],
    additionalProperties: false,
  };
  const ajv = new Ajv2020({ strict: false }).compile(schema);
  const cases: Record<string, JsonValue>[] = [
    { part: "P7" },
    { part: "P" },
    { part: "P-7-flange" },
    { part: "日本語語" },
    { part: "P7", count: 0 },
    { part: "P7", count: 2.5 },
    { part: "P7", count: 10 },
    { part: "P7", ratio: 1 },
    { part: "P7", ratio: 0.5 },
    { part: "P7", mode: "auto" },
    { part: "P7", tags: ["a", "b", "c"] },
    { part: "P7", tags: ["a", 1] },
    { part: "P7", when: null },
    { part: "P7", when: 3 },
    { part: "P7", nested: { ok: true } },
    { part: "P7", nested: {} },
    { part: "P7", nested: { ok: true, extra: 1 } },
    { count: 3 },
    { part: "P7", colour: "red" },
  ];
  for (const args of cases) {
    it(`agrees with ajv on ${JSON.stringify(args)}`, () => {
      const error = validateArguments(schema, args);
      expect(error === null, error ?? "valid").toBe(ajv(args));
    });
  }

  it("names where the arguments break the schema", () => {
    expect(validateArguments(schema, { part: "P7", count: 0 })).toMatch(/arguments\.count must be ≥ 1/);
    expect(validateArguments(schema, { count: 3 })).toMatch(/arguments\.part is required/);
  });
});

describe("runToolCall", () => {
  const signal = () => new AbortController().signal;
  it("runs a valid call with its arguments and returns the result's JSON", async () => {
    let seen: unknown;
    const tool: AgentTool = { ...torque, run: async (args) => ((seen = args), { torque: 85 }) };
    const outcome = await runToolCall([tool], { name: "get_torque", arguments: { part: "P7" } });
    expect(outcome).toMatchObject({ ok: true, content: '{"torque":85}', truncated: false });
    expect(seen).toEqual({ part: "P7" });
  });

  it("an unknown tool, bad arguments, a throw and a timeout are error contents, not throws", async () => {
    let ran = false;
    const tool: AgentTool = { ...torque, run: () => (ran = true) };
    expect((await runToolCall([tool], { name: "nope", arguments: {} })).content).toMatch(/no tool named nope/);
    const bad = await runToolCall([tool], { name: "get_torque", arguments: { part: 7 } });
    expect(bad.ok).toBe(false);
    expect(JSON.parse(bad.content).error).toMatch(/arguments\.part must be string/);
    expect(ran).toBe(false);
    const boom = await runToolCall([{ ...torque, run: () => Promise.reject(new Error("valve jammed")) }], { name: "get_torque", arguments: { part: "P7" } });
    expect(boom).toMatchObject({ ok: false });
    expect(JSON.parse(boom.content).error).toMatch(/valve jammed/);
    let aborted = false;
    const slow: AgentTool = {
      ...torque,
      run: (_args, { signal: s }) =>
        new Promise((resolve) => {
          const timer = setTimeout(resolve, 30_000);
          s.addEventListener("abort", () => ((aborted = true), clearTimeout(timer), resolve("late")));
        }),
    };
    const started = Date.now();
    const late = await runToolCall([slow], { name: "get_torque", arguments: { part: "P7" } }, { timeoutMs: 100, signal: signal() });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(late.ok).toBe(false);
    expect(JSON.parse(late.content).error).toMatch(/did not finish within 0.1 s/);
    expect(aborted).toBe(true);
  });

  it("cuts a large result with a note", async () => {
    const big: AgentTool = { ...torque, run: () => ({ rows: "x".repeat(10 * 1024 * 1024) }) };
    const outcome = await runToolCall([big], { name: "get_torque", arguments: { part: "P7" } });
    expect(outcome.ok).toBe(true);
    expect(outcome.truncated).toBe(true);
    expect(outcome.content.length).toBeLessThan(MAX_TOOL_RESULT_CHARS + 200);
    expect(outcome.content).toMatch(/result cut: 10485771 characters/);
  });

  it("a result that is not JSON (a cycle, a BigInt) is an error content", async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const outcome = await runToolCall([{ ...torque, run: () => cyclic }], { name: "get_torque", arguments: { part: "P7" } });
    expect(outcome.ok).toBe(false);
    expect(JSON.parse(outcome.content).error).toMatch(/not JSON/);
  });
});

describe("confirmation words", () => {
  it("a clear yes in a few languages is yes; anything else is no", () => {
    for (const yes of ["Yes.", "yes please", "Yeah, go ahead", "OK", "ja", "Oui!", "sí", "go ahead", "do it", "はい"]) expect(isYes(yes), yes).toBe(true);
    for (const no of ["No.", "no, wait", "yes, no", "nein", "non merci", "", "maybe", "what was the torque?", "cancel that", "yesterday"]) expect(isYes(no), no).toBe(false);
  });

  it("the question names the tool and its arguments", () => {
    expect(confirmQuestion({ name: "log_fault", arguments: { pump: 7, status: "leaking" } })).toBe("Run log_fault with pump 7, status leaking? Say yes or no.");
    expect(confirmQuestion({ name: "reset", arguments: {} })).toBe("Run reset? Say yes or no.");
  });
});
