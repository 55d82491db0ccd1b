/**
 * The CLI's structured-output flags on the bundled tiny random-weight models: the scriptable
 * contract of `lfm generate --json-schema … --json`, finish reasons, OUTPUT_INCOMPLETE when
 * --max-tokens cuts a constrained reply short, the typed errors of bad flag combinations, forced
 * tool calls on `chat --tools`, and `describe --json-object`.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "text/tiny-lfm2");
const VL_MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");
const IMAGE = join(FIXTURES, "vision/images/photo_320x240.jpg");
const FAST = ["--precision", "fp32", "--threads", "2"];

const SCHEMA = {
  type: "object",
  properties: {
    pump_id: { type: "integer", minimum: 1, maximum: 500 },
    status: { enum: ["ok", "leaking", "offline"] },
    pressure_ok: { type: "boolean" },
    notes: { type: "string", maxLength: 16 },
  },
  required: ["pump_id", "status", "pressure_ok"],
  additionalProperties: false,
};
const TOOLS = [
  { name: "set_valve", description: "Open or close a valve", parameters: { type: "object", properties: { id: { type: "integer", minimum: 1, maximum: 99 }, open: { type: "boolean" } }, required: ["id", "open"] } },
  { name: "get_pressure", parameters: { type: "object", properties: { pump: { type: "integer", minimum: 1, maximum: 9 } }, required: ["pump"] } },
];

const dir = mkdtempSync(join(tmpdir(), "lfm-structured-cli-"));
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};
const schemaFile = file("pump.schema.json", JSON.stringify(SCHEMA));
const toolsFile = file("tools.json", JSON.stringify(TOOLS));

interface GenerateJson {
  prompt_ids: number[];
  ids: number[];
  text: string;
  finish_reason: string;
  tool_calls?: Array<{ name: string; arguments: Record<string, unknown> }>;
}

const isObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);

describe("lfm structured output flags", () => {
  it("generate --json-schema --json: the contract holds for 5 temperature-1 seeds, and the output validates", () => {
    const validate = new Ajv2020({ strict: true }).compile(SCHEMA);
    const texts = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5]) {
      const out = runLfmJson<GenerateJson>([
        "generate", "--model", MODEL, "--prompt", "Pump 7 inspection:", "--json-schema", schemaFile,
        "--temperature", "1", "--seed", String(seed), "--max-tokens", "120", "--json", ...FAST,
      ]);
      expect(Object.keys(out)).toEqual(["prompt_ids", "ids", "text", "finish_reason", "usage", "timings"]);
      expect(out.finish_reason, out.text).toBe("stop");
      const value: unknown = JSON.parse(out.text);
      expect(validate(value), `seed ${seed}: ${out.text} ${JSON.stringify(validate.errors)}`).toBe(true);
      texts.add(out.text);
    }
    // The seed reaches the sampler: five seeds do not all give the same form.
    expect(texts.size).toBeGreaterThan(1);
  });

  it("finish_reason is in every --json output, unconstrained too", () => {
    const out = runLfmJson<GenerateJson>(["generate", "--model", MODEL, "--prompt", "The pump", "--max-tokens", "3", "--temperature", "0", "--json", ...FAST]);
    expect(["stop", "length"]).toContain(out.finish_reason);
    expect(out.ids.length === 3 ? "length" : "stop").toBe(out.finish_reason);
  });

  it("a --max-tokens too small for the format: the JSON is printed, then exit 2 with OUTPUT_INCOMPLETE", () => {
    const r = runLfm(["generate", "--model", MODEL, "--prompt", "Pump 7:", "--json-schema", schemaFile, "--temperature", "1", "--seed", "1", "--max-tokens", "3", "--json", ...FAST]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain("[OUTPUT_INCOMPLETE]");
    expect(r.stderr).toContain("--max-tokens");
    const out = JSON.parse(r.stdout) as GenerateJson;
    expect(out.finish_reason).toBe("length");
    expect(out.ids).toHaveLength(3);
    // A forced tool call cut short: printed with tool_calls null (it cannot parse), then the same error.
    const call = runLfm(["chat", "--model", MODEL, "--message", "Open valve 3.", "--tools", toolsFile, "--tool-choice", "set_valve", "--max-tokens", "6", "--json", ...FAST]);
    expect(call.status, call.stderr).toBe(2);
    expect(call.stderr).toContain("[OUTPUT_INCOMPLETE]");
    expect(JSON.parse(call.stdout)).toMatchObject({ finish_reason: "length", tool_calls: null });
    // Streamed text as well: printed, then the same error.
    const streamed = runLfm(["generate", "--model", MODEL, "--prompt", "Pump 7:", "--json-object", "--max-tokens", "2", ...FAST]);
    expect(streamed.status).toBe(2);
    expect(streamed.stderr).toContain("[OUTPUT_INCOMPLETE]");
    expect(streamed.stdout.startsWith("Pump 7:{")).toBe(true);
  });

  it("--regex and --grammar constrain the text", () => {
    const regex = runLfmJson<GenerateJson>(["generate", "--model", MODEL, "--prompt", "Code:", "--regex", "[A-Z]{2}-[0-9]{3}", "--temperature", "1", "--seed", "3", "--json", ...FAST]);
    expect(regex.text).toMatch(/^[A-Z]{2}-[0-9]{3}$/);
    expect(regex.finish_reason).toBe("stop");
    const ebnf = file("status.ebnf", 'root ::= "status: " ("ok" | "leaking" | "offline")\n');
    const grammar = runLfmJson<GenerateJson>(["generate", "--model", MODEL, "--prompt", "Pump 7", "--grammar", ebnf, "--temperature", "1", "--seed", "4", "--json", ...FAST]);
    expect(grammar.text).toMatch(/^status: (ok|leaking|offline)$/);
  });

  it("chat --tools --tool-choice required gives a parsed tool call; NAME forces that tool", () => {
    const args = ["chat", "--model", MODEL, "--message", "Open valve 3.", "--tools", toolsFile, "--temperature", "1", "--max-tokens", "256", "--json", ...FAST];
    for (const seed of ["1", "2"]) {
      const out = runLfmJson<GenerateJson>([...args, "--tool-choice", "required", "--seed", seed]);
      expect(out.finish_reason).toBe("stop");
      expect(out.tool_calls?.length, out.text).toBeGreaterThan(0);
      for (const call of out.tool_calls ?? []) expect(["set_valve", "get_pressure"]).toContain(call.name);
    }
    const named = runLfmJson<GenerateJson>([...args, "--tool-choice", "get_pressure", "--seed", "3"]);
    expect(named.tool_calls?.length, named.text).toBeGreaterThan(0);
    for (const call of named.tool_calls ?? []) {
      expect(call.name).toBe("get_pressure");
      expect(Number.isInteger(call.arguments.pump)).toBe(true);
    }
  });

  it("chat --json-schema constrains the reply; chat --json has finish_reason beside tool_calls", () => {
    const out = runLfmJson<GenerateJson>(["chat", "--model", MODEL, "--message", "Pump 7 form.", "--json-schema", schemaFile, "--temperature", "1", "--seed", "6", "--max-tokens", "120", "--json", ...FAST]);
    expect(Object.keys(out)).toEqual(["prompt_ids", "ids", "text", "tool_calls", "tool_call_errors", "finish_reason", "usage", "timings"]);
    expect(new Ajv2020({ strict: true }).validate(SCHEMA, JSON.parse(out.text))).toBe(true);
  });

  it("describe --json-object gives a JSON object", () => {
    // Random weights at temperature 1 write long strings; this seed's object closes well within 120 tokens.
    const out = runLfmJson<GenerateJson>(["describe", "--model", VL_MODEL, IMAGE, "--json-object", "--temperature", "1", "--seed", "1", "--max-tokens", "120", "--json", ...FAST]);
    expect(out.finish_reason).toBe("stop");
    expect(isObject(JSON.parse(out.text)), out.text).toBe(true);
  });

  it("bad flags and files exit 2 with a typed error, before any token", () => {
    const notJson = file("broken.json", "{ pump_id: ");
    const unsupported = file("unsupported.json", JSON.stringify({ type: "string", format: "email" }));
    const badEbnf = file("bad.ebnf", "root ::= (\n");
    const gen = ["generate", "--model", MODEL, "--prompt", "hi", "--max-tokens", "4", ...FAST];
    const chat = ["chat", "--model", MODEL, "--message", "hi", "--max-tokens", "4", ...FAST];
    const cases: Array<[string[], string, RegExp?]> = [
      [[...gen, "--json-schema", schemaFile, "--regex", "a+"], "INVALID_ARGUMENT", /--json-schema and --regex/],
      [[...gen, "--json-object", "--grammar", badEbnf], "INVALID_ARGUMENT", /--json-object and --grammar/],
      [[...gen, "--json-schema", join(dir, "missing.json")], "FILE_NOT_FOUND", /missing\.json/],
      [[...gen, "--json-schema", notJson], "INVALID_ARGUMENT", /broken\.json/],
      [[...gen, "--grammar", join(dir, "missing.ebnf")], "FILE_NOT_FOUND", /missing\.ebnf/],
      [[...gen, "--json-schema", unsupported], "SCHEMA_UNSUPPORTED", /format/],
      [[...gen, "--grammar", badEbnf], "GRAMMAR_INVALID"],
      [[...gen, "--regex", "(ab"], "REGEX_INVALID"],
      [[...gen, "--tool-choice", "required"], "INVALID_ARGUMENT"], // generate has no such flag
      [[...chat, "--tool-choice", "required"], "INVALID_ARGUMENT", /--tools/],
      [[...chat, "--tools", toolsFile, "--tool-choice", "open_door"], "INVALID_ARGUMENT", /set_valve, get_pressure/],
      [[...chat, "--tools", toolsFile, "--tool-choice", "required", "--json-object"], "INVALID_ARGUMENT", /pick one/],
      [[...chat, "--json-object", "--regex", "a"], "INVALID_ARGUMENT"],
      [["describe", "--model", VL_MODEL, IMAGE, "--json-object", "--regex", "a", ...FAST], "INVALID_ARGUMENT"],
      [["describe", "--model", VL_MODEL, IMAGE, "--json-schema", join(dir, "missing.json"), ...FAST], "FILE_NOT_FOUND"],
      [["chat", "--model", VL_MODEL, "--image", IMAGE, "--message", "hi", "--tool-choice", "auto", ...FAST], "INVALID_ARGUMENT"],
    ];
    for (const [args, code, message] of cases) {
      const r = runLfm([...args, "--json"]);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(" ")).toContain(`[${code}]`);
      if (message) expect(r.stderr).toMatch(message);
      expect(r.stdout, args.join(" ")).toBe("");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("--help of each command lists the flags", () => {
    for (const command of ["generate", "chat", "describe"]) {
      const help = runLfm([command, "--help"]).stdout;
      for (const flag of ["--json-schema", "--json-object", "--grammar", "--regex", "finish_reason"]) expect(help, `${command} ${flag}`).toContain(flag);
    }
    expect(runLfm(["chat", "--help"]).stdout).toContain("--tool-choice");
  });
});
