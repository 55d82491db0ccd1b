/**
 * A malformed tool call used to lose the whole reply: given the fixture's tool conversation
 * (reference.json chat[2]), the bundled model writes `<|tool_call_start|>` and then junk, and
 * `lfm chat --messages M --tools T --json` exited 2 with TOOL_CALL_PARSE_FAILED, the text gone.
 * Now the reply is kept, the raw call and its parse error sit beside `tool_calls`, and it exits 0.
 *
 * At fp32 the model starts the call at its 12th token and never ends it; `--stop 2` (its
 * <|endoftext|>, 23 tokens later) ends the reply with finish "stop" inside that junk, the case that
 * failed. Without it the reply runs to --max-tokens: a call cut short, `tool_calls` null as before,
 * and now its error listed too.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { TOOL_CALL_START, readToolCalls } from "../../text-core/tool-calls.ts";
import { runLfm } from "../helpers/cli.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";

interface ChatCase {
  messages: unknown[];
  tools: unknown[];
}
interface ChatJson {
  ids: number[];
  text: string;
  tool_calls: unknown[] | null;
  tool_call_errors: Array<{ raw: string; code: string; message: string }>;
  finish_reason: string;
}

const conversation = readJson<{ chat: ChatCase[] }>("text/reference.json").chat[2];
const dir = mkdtempSync(join(tmpdir(), "lfm-malformed-call-"));
const messages = join(dir, "messages.json");
const tools = join(dir, "tools.json");
writeFileSync(messages, JSON.stringify(conversation.messages));
writeFileSync(tools, JSON.stringify(conversation.tools));
// The bundled model (no --model), greedy by its generation_config.json.
const ARGS = ["chat", "--messages", messages, "--tools", tools, "--precision", "fp32", "--threads", "2"];

describe("a reply whose tool call does not parse", () => {
  let tokenizer: Lfm2Tokenizer;
  beforeAll(async () => {
    tokenizer = await Lfm2Tokenizer.fromDir(join(FIXTURES, "text/tiny-lfm2"));
  });

  function chatJson(args: string[]): ChatJson {
    const r = runLfm([...ARGS, ...args, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/^warning|finish: /m); // with --json, everything is in the JSON
    return JSON.parse(r.stdout) as ChatJson;
  }

  it("lfm chat --json exits 0 with the text, the calls that parse, and the raw call with its error", () => {
    const out = chatJson(["--stop", "2"]);
    expect(out.finish_reason).toBe("stop");
    const raw = tokenizer.decode(out.ids);
    expect(raw).toContain(TOOL_CALL_START); // the case still reproduces: a call was started
    expect(out.text).toBe(tokenizer.decode(out.ids, { skipSpecialTokens: true }));
    expect(out.text.trim().length).toBeGreaterThan(0);
    expect(out.tool_call_errors.length).toBeGreaterThan(0);
    for (const e of out.tool_call_errors) {
      expect(e.code).toBe("TOOL_CALL_PARSE_FAILED");
      expect(e.raw.startsWith(TOOL_CALL_START)).toBe(true);
      expect(raw).toContain(e.raw);
      expect(e.message).toMatch(/^Malformed tool call at line \d+, column \d+/);
    }
    // The library's reading of the same reply, error for error.
    const read = readToolCalls(raw);
    expect(out.tool_call_errors).toEqual(read.malformed.map((m) => ({ raw: m.raw, code: m.error.code, message: m.error.message })));
    expect(out.tool_calls).toEqual(read.toolCalls);
    expect(out.tool_calls).toEqual([]);
  });

  it("a reply that --max-tokens ends inside the call: tool_calls null, the unfinished call in tool_call_errors", () => {
    const out = chatJson(["--max-tokens", "40"]);
    expect(out.finish_reason).toBe("length");
    expect(out.tool_calls).toBeNull();
    expect(out.tool_call_errors).toHaveLength(1);
    expect(out.tool_call_errors[0].raw).toBe(tokenizer.decode(out.ids).slice(tokenizer.decode(out.ids).indexOf(TOOL_CALL_START)));
  });

  it("streamed: the reply on stdout, a warning line on stderr, exit 0", () => {
    const r = runLfm([...ARGS, "--stop", "2"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
    const warnings = r.stderr.split("\n").filter((l) => l.startsWith("warning [TOOL_CALL_PARSE_FAILED]: Malformed tool call"));
    expect(warnings, r.stderr).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^error /m);
  });
});
