import { describe, expect, test } from "vitest";
import {
  formatPythonFloat,
  formatToolCalls,
  parseToolCalls,
  readToolCalls,
  ToolCallParseError,
  type ToolCall,
} from "../../text-core/tool-calls.ts";
import { expectCode } from "../helpers/errors.ts";

const wrap = (body: string) => `<|tool_call_start|>${body}<|tool_call_end|>`;

function parseError(text: string): ToolCallParseError {
  const e = expectCode(() => parseToolCalls(text), "TOOL_CALL_PARSE_FAILED");
  expect(e).toBeInstanceOf(ToolCallParseError);
  return e as ToolCallParseError;
}

describe("parseToolCalls reads LFM2's Pythonic call lists", () => {
  test("one call with a string argument", () => {
    expect(parseToolCalls(wrap('[get_weather(city="Paris")]'))).toEqual({
      content: "",
      toolCalls: [{ name: "get_weather", arguments: { city: "Paris" } }],
    });
  });

  test("the fixture's history call [get_status(pump_id=7)] gives an integer argument", () => {
    expect(parseToolCalls(wrap("[get_status(pump_id=7)]")).toolCalls).toEqual([{ name: "get_status", arguments: { pump_id: 7 } }]);
  });

  test("two calls with ints, booleans, floats, lists and a dict with None", () => {
    const text = wrap(`[get_weather(city="Paris"), set_valve(id=7, open=True, ratio=0.5, tags=['a', "b"], cfg={"k": None})]`);
    expect(parseToolCalls(text).toolCalls).toEqual([
      { name: "get_weather", arguments: { city: "Paris" } },
      { name: "set_valve", arguments: { id: 7, open: true, ratio: 0.5, tags: ["a", "b"], cfg: { k: null } } },
    ]);
  });

  test("numbers: negative, exponent, leading dot, False, tuples as lists", () => {
    const { toolCalls } = parseToolCalls(wrap("[f(a=-3, b=-2.5e-3, c=1E3, d=.5, e=False, t=(1, 'x'), one=(2,), empty=(), p=(4))]"));
    expect(toolCalls[0].arguments).toEqual({ a: -3, b: -0.0025, c: 1000, d: 0.5, e: false, t: [1, "x"], one: [2], empty: [], p: 4 });
  });

  test("string escapes and quotes are decoded as Python does", () => {
    const { toolCalls } = parseToolCalls(wrap(String.raw`[say(a='it\'s', b="say \"hi\"\n", c='\x41\u00e9\U0001F642', d='tab\tend', e=r'C:\path', f='\q')]`));
    expect(toolCalls[0].arguments).toEqual({ a: "it's", b: 'say "hi"\n', c: "Aé🙂", d: "tab\tend", e: "C:\\path", f: "\\q" });
  });

  test("non-ASCII text, triple quotes, nested containers and a call without arguments", () => {
    const { toolCalls } = parseToolCalls(wrap(`[note(text="温度は二十三度 🙂", body="""two\nlines""", deep=[{"a": [1, {"b": []}]}]), ping()]`));
    expect(toolCalls).toEqual([
      { name: "note", arguments: { text: "温度は二十三度 🙂", body: "two\nlines", deep: [{ a: [1, { b: [] }] }] } },
      { name: "ping", arguments: {} },
    ]);
  });

  test("whitespace, newlines and trailing commas between elements are accepted", () => {
    expect(parseToolCalls(wrap("[\n  f(\n    a=1,\n  ),\n]")).toolCalls).toEqual([{ name: "f", arguments: { a: 1 } }]);
  });

  test("dotted function names are kept whole", () => {
    expect(parseToolCalls(wrap("[pumps.get_status(pump_id=7)]")).toolCalls[0].name).toBe("pumps.get_status");
  });

  test("text before and after the span stays in content, without the span", () => {
    const text = `Checking the pump. ${wrap("[get_status(pump_id=7)]")}One moment.`;
    expect(parseToolCalls(text)).toEqual({
      content: "Checking the pump. One moment.",
      toolCalls: [{ name: "get_status", arguments: { pump_id: 7 } }],
    });
  });

  test("several spans are all parsed, in order", () => {
    const text = `a${wrap("[f(x=1)]")}b${wrap("[g(y=2), h()]")}c`;
    const { content, toolCalls } = parseToolCalls(text);
    expect(content).toBe("abc");
    expect(toolCalls.map((c) => c.name)).toEqual(["f", "g", "h"]);
  });

  test("text without markers has no tool calls and is returned unchanged", () => {
    expect(parseToolCalls("Just [an] answer(x=1).")).toEqual({ content: "Just [an] answer(x=1).", toolCalls: [] });
  });

  test("a span whose end marker never came is parsed to the end of the text", () => {
    expect(parseToolCalls('Sure. <|tool_call_start|>[get_weather(city="Oslo")]')).toEqual({
      content: "Sure. ",
      toolCalls: [{ name: "get_weather", arguments: { city: "Oslo" } }],
    });
  });
});

describe("parseToolCalls reads JSON call lists", () => {
  test("a JSON list of {name, arguments} objects", () => {
    const text = wrap('[{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "metric": true, "extra": null}}, {"name": "ping", "arguments": {}}]');
    expect(parseToolCalls(text).toolCalls).toEqual([
      { name: "get_weather", arguments: { city: "Paris", days: 3, metric: true, extra: null } },
      { name: "ping", arguments: {} },
    ]);
  });

  test("a single JSON object and arguments given as a JSON string", () => {
    expect(parseToolCalls(wrap('{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}')).toolCalls).toEqual([{ name: "f", arguments: { a: [1, 2] } }]);
  });

  test("JSON escapes including \\/ and \\u decode", () => {
    expect(parseToolCalls(wrap('[{"name": "open", "arguments": {"url": "http:\\/\\/x.io\\/\\u00e9"}}]')).toolCalls[0].arguments).toEqual({
      url: "http://x.io/é",
    });
  });
});

describe("parseToolCalls rejects malformed calls with TOOL_CALL_PARSE_FAILED and a position", () => {
  test("an unterminated string points at its opening quote", () => {
    const text = wrap('[get_weather(city="Paris)]');
    const err = parseError(text);
    expect(err.offset).toBe(text.indexOf('"'));
    expect(err.message).toMatch(/unterminated string/);
    expect(err.message).toMatch(/line 1, column \d+/);
  });

  test("a missing closing parenthesis is reported where the list closes", () => {
    const text = wrap('[get_weather(city="Paris"]');
    const err = parseError(text);
    expect(err.offset).toBe(text.indexOf("]"));
    expect(err.message).toContain('expected "," or ")"');
  });

  test("a nested call in an argument is refused, not evaluated", () => {
    expect(parseError(wrap('[f(x=os.system("rm"))]')).message).toContain("unknown name os");
    const nested = wrap("[f(y=g(1))]");
    expect(parseError(nested).message).toContain("nested call g(...)");
    expect(parseError(nested).offset).toBe(nested.indexOf("g("));
  });

  test("positional arguments are refused", () => {
    expect(parseError(wrap('[f("Paris")]')).message).toContain("positional arguments are not supported");
  });

  test("a repeated keyword argument is refused", () => {
    expect(parseError(wrap("[f(a=1, a=2)]")).message).toContain("repeated");
  });

  test("line and column count from the start of the whole text", () => {
    const err = parseError(`line one\nline two ${wrap("[f(a=1 b=2)]")}`);
    expect(err.line).toBe(2);
    expect(err.column).toBe("line two <|tool_call_start|>[f(a=1 ".length + 1);
  });

  test("garbage after the list, a missing name and a JSON object without name all fail", () => {
    parseError(wrap("[f()] extra"));
    parseError(wrap("[(a=1)]"));
    parseError(wrap('[{"arguments": {}}]'));
    parseError(wrap("[f(a=1"));
  });
});

describe("readToolCalls keeps a reply whose calls do not all parse", () => {
  test("a malformed span is reported beside the good ones, with its raw text and the parse error", () => {
    const bad = wrap("[f(a=1 b=2)]");
    const text = `Checking. ${wrap("[get_status(pump_id=7)]")} then ${bad} done.`;
    const read = readToolCalls(text);
    expect(read.toolCalls).toEqual([{ name: "get_status", arguments: { pump_id: 7 } }]);
    expect(read.content).toBe("Checking.  then  done.");
    expect(read.malformed).toHaveLength(1);
    const [m] = read.malformed;
    expect(m.raw).toBe(bad);
    expect(m.unterminated).toBe(false);
    expect(m.error).toBeInstanceOf(ToolCallParseError);
    expect(m.error.code).toBe("TOOL_CALL_PARSE_FAILED");
    // The same error parseToolCalls throws, positioned in the whole text.
    expect(m.error.message).toBe(parseError(text).message);
    expect(m.error.offset).toBe(text.indexOf("b=2"));
  });

  test("junk after the start marker, and a span without an end marker, are malformed, not thrown", () => {
    const read = readToolCalls("<|tool_call_start|>ĊĊ the pump }{ 7 <|tool_call_end|>ok <|tool_call_start|>[f(a=");
    expect(read.toolCalls).toEqual([]);
    expect(read.content).toBe("ok ");
    expect(read.malformed.map((m) => [m.raw, m.unterminated])).toEqual([
      ["<|tool_call_start|>ĊĊ the pump }{ 7 <|tool_call_end|>", false],
      ["<|tool_call_start|>[f(a=", true],
    ]);
  });

  test("well-formed output reads as parseToolCalls does, with nothing malformed", () => {
    for (const text of ["Just [an] answer(x=1).", `Sure. ${wrap('[a(x="1"), b()]')} and ${wrap('[{"name": "c", "arguments": {}}]')}`, '<|tool_call_start|>[g(city="Oslo")]']) {
      expect(readToolCalls(text)).toEqual({ ...parseToolCalls(text), malformed: [] });
    }
  });
});

describe("formatToolCalls writes the Pythonic form back", () => {
  test("the fixture's history call round-trips exactly", () => {
    expect(formatToolCalls([{ name: "get_status", arguments: { pump_id: 7 } }])).toBe("<|tool_call_start|>[get_status(pump_id=7)]<|tool_call_end|>");
  });

  test("without markers it is the bare list with Python literals", () => {
    const calls: ToolCall[] = [
      { name: "get_weather", arguments: { city: "Paris" } },
      { name: "set_valve", arguments: { id: 7, open: true, ratio: 0.5, tags: ["a", "b"], cfg: { k: null } } },
    ];
    expect(formatToolCalls(calls, { markers: false })).toBe(
      '[get_weather(city="Paris"), set_valve(id=7, open=True, ratio=0.5, tags=["a", "b"], cfg={"k": None})]',
    );
  });

  test("parse(format(calls)) gives the calls back, escapes and non-ASCII included", () => {
    const calls: ToolCall[] = [
      { name: "note", arguments: { text: 'quote " backslash \\ newline \n tab \t bell \x07 温度 🙂', n: -1.5e-7, big: 1e300, list: [], obj: {} } },
      { name: "ping", arguments: {} },
    ];
    expect(parseToolCalls(formatToolCalls(calls)).toolCalls).toEqual(calls);
  });

  test("a name that is not a Python identifier is INVALID_ARGUMENT", () => {
    expect(() => formatToolCalls([{ name: "get-weather", arguments: {} }])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("formatPythonFloat prints repr(float)", () => {
  test.each([
    [1, "1.0"],
    [1234.5, "1234.5"],
    [0.0001, "0.0001"],
    [0.00001, "1e-05"],
    [1e16, "1e+16"],
    [1e15, "1000000000000000.0"],
    [-2.5e-7, "-2.5e-07"],
    [0.1 + 0.2, "0.30000000000000004"],
    [-0, "-0.0"],
  ])("%s → %s", (x, expected) => {
    expect(formatPythonFloat(x)).toBe(expected);
  });
});
