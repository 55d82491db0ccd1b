/**
 * The agent loop on the bundled tiny random models: a recording becomes a transcript, the text
 * model's (constrained) calls run with validated arguments, their results reach the next round's
 * prompt as tool messages, failures become error messages, confirm tools wait for yes or no, and
 * the reply is spoken. The models are random: the tests pin the plumbing, not the words.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { resample } from "../../audio/resample.ts";
import type { AudioClip } from "../../audio/wav.ts";
import { Agent, type AgentEvent, NOTHING_HEARD } from "../../pipelines/agent.ts";
import { type AgentTool, validateArguments } from "../../pipelines/agent-tools.ts";
import type { JsonValue } from "../../text-core/tool-calls.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const runs: Record<string, Record<string, JsonValue>[]> = { log_reading: [], explode: [], dawdle: [], set_valve: [] };
let dawdleAborted = false;

const readingSchema: { [key: string]: JsonValue } = {
  type: "object",
  properties: { pump: { type: "integer", minimum: 1, maximum: 99 }, status: { enum: ["ok", "leaking"] } },
  required: ["pump", "status"],
};

const TOOLS: AgentTool[] = [
  { name: "log_reading", description: "Log a pump's status", parameters: readingSchema, run: async (args) => (runs.log_reading.push(args), { logged: true, pump: args.pump }) },
  {
    name: "explode",
    description: "Always fails",
    parameters: { type: "object", properties: { why: { type: "string", maxLength: 8 } }, required: ["why"] },
    run: async (args) => {
      runs.explode.push(args);
      throw new Error("valve jammed");
    },
  },
  {
    name: "dawdle",
    description: "Takes too long",
    parameters: { type: "object", properties: { n: { type: "integer", minimum: 0, maximum: 9 } }, required: ["n"] },
    run: (args, { signal }) => {
      runs.dawdle.push(args);
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, 60_000);
        signal.addEventListener("abort", () => ((dawdleAborted = true), clearTimeout(timer), resolve("late")));
      });
    },
  },
  {
    name: "set_valve",
    description: "Opens or closes a valve",
    parameters: { type: "object", properties: { open: { type: "boolean" } }, required: ["open"] },
    confirm: true,
    run: async (args) => (runs.set_valve.push(args), "done"),
  },
];

let agent: Agent;
let clip: AudioClip;

beforeAll(async () => {
  clip = await readAudioFile(join(FIXTURES, "audio", "clips", "speech_en_16k.wav"));
  agent = await Agent.load(
    join(FIXTURES, "audio", "tiny-lfm2-audio"),
    join(FIXTURES, "text", "tiny-lfm2"),
    // One forced round, then the answer: the random model cannot wander into other tools.
    { tools: TOOLS, maxToolRounds: 1, toolTimeoutMs: 300, generation: { maxTokens: 96, temperature: 0 }, speech: { maxFrames: 6, seed: 1 } },
    { mimi: join(FIXTURES, "audio", "tiny-mimi"), cacheDir: TEST_CACHE },
  );
}, 300_000);

afterAll(async () => {
  await agent?.release();
});

async function collect(events: AsyncGenerator<AgentEvent>): Promise<AgentEvent[]> {
  const out: AgentEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

const ofType = <T extends AgentEvent["type"]>(events: AgentEvent[], type: T) => events.filter((e): e is Extract<AgentEvent, { type: T }> => e.type === type);

describe("Agent", () => {
  it("a spoken turn: transcript, a validated call, its result in the next round's prompt, a spoken reply", async () => {
    agent.reset();
    runs.log_reading.length = 0;
    const prompts: string[] = [];
    const events = await collect(agent.turn(clip, { toolChoice: { name: "log_reading" }, onPrompt: (p, round) => (prompts[round] = p) }));
    const types = events.map((e) => e.type);
    expect(types[0]).toBe("transcript");
    const firstReply = types.indexOf("reply_text");
    expect(types.slice(1, firstReply).every((t) => t === "tool_call" || t === "tool_result")).toBe(true);
    expect(types.slice(firstReply + 1, -1).every((t) => t === "audio")).toBe(true);
    expect(types.at(-1)).toBe("timings");

    const calls = ofType(events, "tool_call");
    const results = ofType(events, "tool_result");
    expect(calls.length).toBeGreaterThan(0);
    expect(results.map((r) => r.name)).toEqual(calls.map((c) => c.name));
    // Each call ran once, with arguments that satisfy the schema, exactly as the model wrote them.
    expect(runs.log_reading).toEqual(calls.map((c) => c.arguments));
    for (const args of runs.log_reading) expect(validateArguments(readingSchema, args)).toBeNull();
    expect(results.every((r) => r.ok)).toBe(true);

    // Round 1's prompt holds each result as a tool message, after the assistant's call.
    expect(prompts).toHaveLength(2);
    for (const r of results) expect(prompts[1]).toContain(`<|im_start|>tool\n<|tool_response_start|>${r.content}<|tool_response_end|><|im_end|>`);
    expect(prompts[0]).not.toContain("<|tool_response_start|>");
    expect(prompts[1]).toContain("<|tool_call_start|>[log_reading(");
    expect(agent.messages.filter((m) => m.role === "tool").map((m) => m.content)).toEqual(results.map((r) => r.content));

    const transcript = ofType(events, "transcript")[0];
    expect(agent.messages[1]).toEqual({ role: "user", content: transcript.text });
    const audio = ofType(events, "audio");
    // The tiny model's greedy reply is some text (random words), so it is spoken: maxFrames frames.
    expect(ofType(events, "reply_text")[0].text.trim()).not.toBe("");
    expect(audio.map((a) => a.frame)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(audio[0].sampleRateHz).toBe(24000);
    expect(audio[0].samples.length).toBe(1920);
    const timings = ofType(events, "timings")[0];
    expect(timings.transcribeMs).toBeGreaterThan(0);
    expect(timings.firstReplyTokenMs).toBeGreaterThan(timings.transcribeMs!);
    expect(timings.totalMs).toBeGreaterThanOrEqual(timings.firstReplyTokenMs!);
  }, 120_000);

  it("a throwing tool and a slow one become error messages; the agent keeps going", async () => {
    agent.reset();
    const boom = await collect(agent.turnText("break it", { toolChoice: { name: "explode" } }));
    const boomResults = ofType(boom, "tool_result");
    expect(boomResults.length).toBeGreaterThan(0);
    for (const r of boomResults) expect(r).toMatchObject({ ok: false, name: "explode" });
    expect(JSON.parse(boomResults[0].content).error).toMatch(/valve jammed/);
    expect(boom.at(-1)?.type).toBe("timings");

    const started = Date.now();
    const slow = await collect(agent.turnText("take your time", { toolChoice: { name: "dawdle" } }));
    const slowResults = ofType(slow, "tool_result");
    expect(slowResults.length).toBeGreaterThan(0);
    expect(JSON.parse(slowResults[0].content).error).toMatch(/did not finish within 0.3 s/);
    expect(dawdleAborted).toBe(true);
    expect(Date.now() - started).toBeLessThan(60_000);
    // The conversation went on: both turns' messages are there, with the errors as tool messages.
    expect(agent.messages.filter((m) => m.role === "user").map((m) => m.content)).toEqual(["break it", "take your time"]);
    expect(agent.messages.filter((m) => m.role === "tool").every((m) => typeof m.content === "string" && m.content.startsWith('{"error":'))).toBe(true);
  }, 120_000);

  it("a confirm tool asks first: no leaves it unrun, yes runs it", async () => {
    agent.reset();
    runs.set_valve.length = 0;
    const asked = await collect(agent.turnText("open the valve", { toolChoice: { name: "set_valve" } }));
    const confirm = ofType(asked, "confirm")[0];
    expect(confirm.question).toMatch(/^Run set_valve with open (true|false)\? Say yes or no\.$/);
    expect(ofType(asked, "reply_text")[0].text).toBe(confirm.question);
    expect(ofType(asked, "tool_result")).toEqual([]);
    expect(agent.awaitingConfirmation).toEqual({ name: "set_valve", arguments: confirm.arguments });
    expect(runs.set_valve).toEqual([]);

    const declined = await collect(agent.turnText("no, leave it"));
    expect(ofType(declined, "confirmation")[0]).toMatchObject({ name: "set_valve", confirmed: false });
    expect(runs.set_valve).toEqual([]);
    expect(JSON.parse(ofType(declined, "tool_result")[0].content).error).toMatch(/declined/);
    // The answer is not a user message: the model sees the call and its (declined) result.
    expect(agent.messages.filter((m) => m.role === "user").map((m) => m.content)).toEqual(["open the valve"]);

    agent.reset();
    const again = await collect(agent.turnText("open the valve", { toolChoice: { name: "set_valve" } }));
    const question = ofType(again, "confirm")[0];
    const accepted = await collect(agent.turnText("Yes please."));
    expect(ofType(accepted, "confirmation")[0]).toMatchObject({ confirmed: true });
    expect(runs.set_valve[0]).toEqual(question.arguments);
    expect(ofType(accepted, "tool_result")[0]).toMatchObject({ name: "set_valve", ok: true, content: "done" });
  }, 120_000);

  it("8 kHz telephone audio and a clipped recording are turns like any other", async () => {
    agent.reset();
    const phone = { samples: resample(clip.samples, clip.sampleRateHz, 8000), sampleRateHz: 8000 };
    const loud = { samples: clip.samples.map((x) => Math.max(-1, Math.min(1, x * 20))), sampleRateHz: clip.sampleRateHz };
    for (const input of [phone, loud]) {
      const events = await collect(agent.turn(input));
      expect(events[0].type).toBe("transcript");
      expect(events.at(-1)?.type).toBe("timings");
    }
    expect(agent.messages.filter((m) => m.role === "user")).toHaveLength(2);
  }, 60_000);

  it("a cancelled turn leaves the conversation as it was", async () => {
    agent.reset();
    await collect(agent.turnText("first question"));
    const before = agent.messages.map((m) => ({ ...m }));
    const controller = new AbortController();
    controller.abort();
    await expect(collect(agent.turnText("second question", { signal: controller.signal }))).rejects.toMatchObject({ code: "ABORTED" });
    expect(agent.messages).toEqual(before);
  }, 60_000);

  it("an empty transcript gets a spoken 'did not catch that' without calling the model", async () => {
    agent.reset();
    const prompts: string[] = [];
    const events = await collect(agent.turnText("  ", { onPrompt: (p) => prompts.push(p) }));
    expect(ofType(events, "reply_text")[0].text).toBe(NOTHING_HEARD);
    expect(prompts).toEqual([]);
    expect(ofType(events, "audio").length).toBeGreaterThan(0);
  }, 60_000);
});
