import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatTemplate, renderChatIds, type ChatMessage, type ToolDefinition } from "../../text-core/chat.ts";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { expectCode } from "../helpers/errors.ts";

const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");
const TINY = join(FIXTURES, "text", "tiny-lfm2");

interface ChatCase {
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  add_generation_prompt: boolean;
  rendered: string;
  ids: number[];
}
const reference = JSON.parse(readFileSync(join(FIXTURES, "text", "reference.json"), "utf8")) as { chat: ChatCase[] };
const caseName = (c: ChatCase) =>
  [c.messages.map((m) => m.role).join("+"), c.tools ? "tools" : "", typeof c.messages[0].content === "string" ? "" : "content parts", c.add_generation_prompt ? "generation prompt" : ""]
    .filter(Boolean)
    .join(", ");
const cases = reference.chat.map((c) => [caseName(c), c] as const);
const renderOpts = (c: ChatCase) => ({ tools: c.tools, addGenerationPrompt: c.add_generation_prompt });

const SPECIALS = { bosToken: "<|startoftext|>", eosToken: "<|im_end|>" };
const renderWith = (source: string, vars: Record<string, unknown>) =>
  // The message list is the only required input; `vars` ride along as extra message fields.
  new ChatTemplate(source, SPECIALS).render([{ role: "user", content: "", ...vars }]);

let tok: Lfm2Tokenizer;
let template: ChatTemplate;
beforeAll(async () => {
  tok = await Lfm2Tokenizer.fromDir(TINY);
  template = ChatTemplate.fromTokenizer(tok);
});

describe("ChatTemplate renders the LFM2 template like apply_chat_template", () => {
  test.each(cases)("%s: rendered text matches", (_, c) => {
    expect(template.render(c.messages, renderOpts(c))).toBe(c.rendered);
  });

  test.each(cases)("%s: ids match (no second BOS)", (_, c) => {
    expect(renderChatIds(tok, template, c.messages, renderOpts(c))).toEqual(c.ids);
  });

  test("addGenerationPrompt defaults to false", () => {
    expect(template.render([{ role: "user", content: "Hi" }])).toBe("<|startoftext|><|im_start|>user\nHi<|im_end|>\n");
  });

  test("a tool given as a string is inserted verbatim", () => {
    const rendered = template.render([{ role: "user", content: "x" }], { tools: ['{"name":"f","default":1.0}'] });
    expect(rendered).toContain('List of tools: <|tool_list_start|>[{"name":"f","default":1.0}]<|tool_list_end|>');
  });
});

describe("chat template sources", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lfm2-chat-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a template in tokenizer_config.json's chat_template renders the same as chat_template.jinja", async () => {
    const config = JSON.parse(await readFile(join(TINY, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    config.chat_template = await readFile(join(TINY, "chat_template.jinja"), "utf8");
    await copyFile(join(TINY, "tokenizer.json"), join(dir, "tokenizer.json"));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    const fromConfig = ChatTemplate.fromTokenizer(await Lfm2Tokenizer.fromDir(dir));
    for (const c of reference.chat) expect(fromConfig.render(c.messages, renderOpts(c))).toBe(c.rendered);
  });

  test("a tokenizer without any chat template is CHAT_TEMPLATE_MISSING", async () => {
    const bare = await mkdtemp(join(dir, "bare-"));
    await copyFile(join(TINY, "tokenizer.json"), join(bare, "tokenizer.json"));
    await copyFile(join(TINY, "tokenizer_config.json"), join(bare, "tokenizer_config.json"));
    const noTemplate = await Lfm2Tokenizer.fromDir(bare);
    expect(noTemplate.chatTemplate).toBeUndefined();
    expect(() => ChatTemplate.fromTokenizer(noTemplate)).toThrow(expect.objectContaining({ code: "CHAT_TEMPLATE_MISSING" }));
  });
});

describe("ChatTemplate errors", () => {
  test("a template that does not parse is CHAT_TEMPLATE_INVALID", () => {
    expect(() => new ChatTemplate("{% if messages %}unclosed", SPECIALS)).toThrow(expect.objectContaining({ code: "CHAT_TEMPLATE_INVALID" }));
  });

  test("an empty message list is INVALID_ARGUMENT", () => {
    expectCode(() => template.render([]), "INVALID_ARGUMENT");
  });

  test("raise_exception in the template is INVALID_ARGUMENT carrying its message", () => {
    const strict = new ChatTemplate("{{ raise_exception('roles must alternate') }}", SPECIALS);
    expect(() => strict.render([{ role: "user", content: "x" }])).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringContaining("roles must alternate") }),
    );
  });

  test("a failure while rendering is CHAT_TEMPLATE_INVALID", () => {
    const broken = new ChatTemplate("{{ messages | no_such_filter }}", SPECIALS);
    expect(() => broken.render([{ role: "user", content: "x" }])).toThrow(expect.objectContaining({ code: "CHAT_TEMPLATE_INVALID" }));
  });
});

// Expected strings below are Python's json.dumps output (CPython 3), the function transformers' tojson calls.
describe("tojson behaves like transformers' filter (Python json.dumps)", () => {
  const value = {
    name: "set_valve",
    café: "é 🙂",
    n: [1, 2.5, 1234.5, 1e-7, 1.5e-5, 1.5e16, -0.0001, null, true],
    ctl: 'a\nb\t\u0001"\\',
    empty: {},
    list: [],
  };

  test("default: ', ' and ': ' separators, non-ASCII kept, key order kept, Python float text", () => {
    expect(renderWith("{{ messages[0].x | tojson }}", { x: value })).toBe(
      '{"name": "set_valve", "café": "é 🙂", "n": [1, 2.5, 1234.5, 1e-07, 1.5e-05, 1.5e+16, -0.0001, null, true], "ctl": "a\\nb\\t\\u0001\\"\\\\", "empty": {}, "list": []}',
    );
  });

  test("ensure_ascii=True escapes non-ASCII as \\uXXXX with surrogate pairs", () => {
    expect(renderWith("{{ messages[0].x | tojson(ensure_ascii=True) }}", { x: value })).toBe(
      '{"name": "set_valve", "caf\\u00e9": "\\u00e9 \\ud83d\\ude42", "n": [1, 2.5, 1234.5, 1e-07, 1.5e-05, 1.5e+16, -0.0001, null, true], "ctl": "a\\nb\\t\\u0001\\"\\\\", "empty": {}, "list": []}',
    );
  });

  test("indent=2 breaks lines with ',' and keeps empty containers inline", () => {
    expect(renderWith("{{ messages[0].x | tojson(indent=2) }}", { x: { b: 1, a: [1, { c: 2 }], e: [] } })).toBe(
      '{\n  "b": 1,\n  "a": [\n    1,\n    {\n      "c": 2\n    }\n  ],\n  "e": []\n}',
    );
  });

  test("indent=0 still breaks lines, as in Python", () => {
    expect(renderWith("{{ messages[0].x | tojson(indent=0) }}", { x: { b: 1, a: [1, { c: 2 }] } })).toBe(
      '{\n"b": 1,\n"a": [\n1,\n{\n"c": 2\n}\n]\n}',
    );
  });

  test("sort_keys and separators follow json.dumps", () => {
    expect(renderWith("{{ messages[0].x | tojson(sort_keys=True, separators=(',', ':')) }}", { x: { b: 1, a: [1, { c: 2 }], Z: 3 } })).toBe(
      '{"Z":3,"a":[1,{"c":2}],"b":1}',
    );
  });

  test("floats made inside the template keep their type: 3.0 stays 3.0", () => {
    expect(renderWith("{{ 3.0 | tojson }} {{ (2.5 * 2) | tojson }} {{ (1 / 3) | tojson }}", {})).toBe("3.0 5.0 0.3333333333333333");
  });

  test("known limit: a JS number has no int/float distinction, so 1.0 from JavaScript prints as 1", () => {
    expect(renderWith("{{ messages[0].x | tojson }}", { x: { default: 1.0, big: 1e300 } })).toBe('{"default": 1, "big": 1e+300}');
  });

  test("a tojson result can be filtered further", () => {
    expect(renderWith("{{ messages[0].x | tojson | length }}", { x: [1] })).toBe("3");
  });
});
