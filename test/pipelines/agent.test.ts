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
import { type AgentTool, toolDefinition, validateArguments } from "../../pipelines/agent-tools.ts";
import { VoiceActivityDetector } from "../../pipelines/vad.ts";
import type { JsonValue } from "../../text-core/tool-calls.ts";
import { FIXTURES, TEST_CACHE, expectClose } from "../helpers/reference.ts";

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

describe("Agent: a scripted stream with synthesised speech", () => {
  it("silence, an espeak-ng sentence, silence: the voice detector cuts one turn, which runs end to end with a validated call", async () => {
    // test/fixtures/README.md says how the clip was made (CI has no espeak-ng).
    const spoken = await readAudioFile(join(import.meta.dirname, "..", "fixtures", "speech", "log-pump-7-espeak.wav"));
    const speech = resample(spoken.samples, spoken.sampleRateHz, 16000);
    const silence = (seconds: number) => new Float32Array(Math.round(seconds * 16000));
    const parts = [silence(0.6), speech, silence(1.2)];
    const stream = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (stream.set(p, at), at + p.length), 0);

    const vad = new VoiceActivityDetector(16000);
    const turns: Float32Array[] = [];
    for (let at = 0; at < stream.length; at += 480) turns.push(...vad.push(stream.subarray(at, at + 480))); // 30 ms blocks, as a microphone delivers
    const rest = vad.flush();
    if (rest) turns.push(rest);
    expect(turns).toHaveLength(1);
    // The turn: the sentence, the pre-roll before it and the pause that ended it (300 ms, 700 ms), give or take a frame.
    const seconds = turns[0].length / 16000;
    expect(seconds).toBeGreaterThan(speech.length / 16000);
    expect(seconds).toBeLessThan(speech.length / 16000 + 0.3 + 0.7 + 0.1);

    agent.reset();
    runs.log_reading.length = 0;
    const events = await collect(agent.turn({ samples: turns[0], sampleRateHz: 16000 }, { toolChoice: { name: "log_reading" } }));
    const types = events.map((e) => e.type);
    expect(types[0]).toBe("transcript");
    expect(types.at(-1)).toBe("timings");
    const calls = ofType(events, "tool_call");
    expect(calls.length).toBeGreaterThan(0);
    expect(runs.log_reading).toEqual(calls.map((c) => c.arguments));
    for (const args of runs.log_reading) expect(validateArguments(readingSchema, args)).toBeNull();
    expect(ofType(events, "tool_result").every((r) => r.ok)).toBe(true);
    expect(types.indexOf("reply_text")).toBeGreaterThan(types.lastIndexOf("tool_result"));
    expect(ofType(events, "audio").length).toBe(6);
  }, 120_000);
});

describe("Agent: the text model's decode state carries over turns", () => {
  // fp32, the path DESIGN.md's tolerances are for: q4's MatMulNBits quantises activations to int8
  // per block, so two computations of one logit that differ in the last bit can round apart there.
  let fp: Agent;
  beforeAll(async () => {
    fp = await Agent.load(
      join(FIXTURES, "audio", "tiny-lfm2-audio"),
      join(FIXTURES, "text", "tiny-lfm2"),
      { tools: TOOLS, maxToolRounds: 1, toolTimeoutMs: 300, generation: { maxTokens: 96, temperature: 0 }, speech: { maxFrames: 6, seed: 1 } },
      { mimi: join(FIXTURES, "audio", "tiny-mimi"), cacheDir: TEST_CACHE, precision: "fp32" },
    );
  }, 300_000);
  afterAll(async () => {
    await fp?.release();
  });
  const definitions = TOOLS.map(toolDefinition);
  const tokens = (prompt: string) => fp.textModel.tokenizer.encode(prompt, { addSpecialTokens: false }).length;

  /**
   * The next round's prompt (the conversation so far and a new user message) run two ways: from
   * the agent's kept state (only the new tokens) and as one full prefill. Same logits (DESIGN.md
   * tolerances); the times go to the log (no speed assert: the tiny model's prompts are short).
   */
  async function expectReuseMatchesFullPrefill(label: string, next: string): Promise<void> {
    const ids = fp.textModel.chatIds([...fp.messages, { role: "user", content: next }], { tools: definitions });
    const kept = fp.stateCache!.lookup(ids);
    expect(kept, `${label}: a kept state that the next prompt starts with`).toBeDefined();
    const rt = fp.textModel.runtime;
    const rest = ids.slice(kept!.ids.length);
    let t0 = performance.now();
    const reused = (await rt.forward(kept!.state.clone(), { ids: [rest] })).output;
    const reuseMs = performance.now() - t0;
    t0 = performance.now();
    const full = (await rt.forward(rt.newState(1), { ids: [ids] })).output;
    const fullMs = performance.now() - t0;
    expectClose(reused, full, `${label}: kept state + ${rest.length} new tokens vs full prefill of ${ids.length}`);
    console.log(
      `[agent state reuse] ${label}: prompt ${ids.length} tokens, ${kept!.ids.length} reused; prefill ${reuseMs.toFixed(1)} ms vs ${fullMs.toFixed(1)} ms in full (saves ${(fullMs - reuseMs).toFixed(1)} ms)`,
    );
  }

  it("each turn runs only what it adds, with the logits of a full prefill of the conversation", async () => {
    fp.reset();
    const prompts: string[] = [];
    const first = await collect(fp.turnText("what is the torque for the flange bolts", { onPrompt: (p) => prompts.push(p) }));
    const t1 = ofType(first, "timings")[0];
    expect(t1.reusedTokens).toBe(0); // a new conversation: nothing kept yet
    expect(t1.promptTokens).toBe(tokens(prompts[0]));
    const second = await collect(fp.turn(clip));
    const t2 = ofType(second, "timings")[0];
    // Turn 2 continues at least from turn 1's prompt (up to the assistant header): the template
    // renders history as it rendered the prompt, token for token.
    expect(t2.reusedTokens).toBeGreaterThanOrEqual(tokens(prompts.at(-1)!));
    expect(t2.reusedTokens).toBeLessThan(t2.promptTokens);
    await expectReuseMatchesFullPrefill("after 2 turns", "and the next one");
  }, 120_000);

  it("barge-in during the spoken reply, then the next turn: the kept state matches the recorded conversation", async () => {
    fp.reset();
    await collect(fp.turnText("first question"));
    const controller = new AbortController();
    const heard: AgentEvent[] = [];
    await expect(
      (async () => {
        for await (const e of fp.turn(clip, { signal: controller.signal })) {
          heard.push(e);
          if (e.type === "audio") controller.abort(); // speech started while the agent talked
        }
      })(),
    ).rejects.toMatchObject({ code: "ABORTED" });
    // The reply's text was whole before it was spoken: the conversation records it.
    const reply = ofType(heard, "reply_text")[0].text;
    expect(fp.messages.at(-1)).toEqual({ role: "assistant", content: reply });
    await expectReuseMatchesFullPrefill("after a barge-in in speech", "sorry, go on");
    const next = await collect(fp.turnText("sorry, go on"));
    expect(ofType(next, "timings")[0].reusedTokens).toBeGreaterThan(0);
  }, 120_000);

  it("a turn abandoned before its answer rolls the kept states back with the messages", async () => {
    fp.reset();
    runs.log_reading.length = 0;
    await collect(fp.turnText("first question"));
    const messages = fp.messages.map((m) => ({ ...m }));
    const states = fp.stateCache!.snapshot();
    // Stopped at the call, before it runs: round 0 was generated (and its states kept) by then.
    let called = false;
    for await (const e of fp.turnText("log pump 7 as leaking", { toolChoice: { name: "log_reading" } })) {
      if (e.type === "tool_call") {
        called = true;
        expect(fp.stateCache!.snapshot().some((e) => !states.includes(e))).toBe(true);
        break;
      }
    }
    expect(called).toBe(true);
    expect(runs.log_reading).toEqual([]);
    expect(fp.messages).toEqual(messages);
    expect(fp.stateCache!.snapshot()).toEqual(states);
    await expectReuseMatchesFullPrefill("after an abandoned turn", "second question");
    const next = await collect(fp.turnText("second question"));
    expect(ofType(next, "timings")[0].reusedTokens).toBeGreaterThan(0);
  }, 120_000);

  it("reuseState: false prefills every round in full, with the same replies", async () => {
    const load = (reuseState: boolean) =>
      Agent.load(
        join(FIXTURES, "audio", "tiny-lfm2-audio"),
        join(FIXTURES, "text", "tiny-lfm2"),
        { tools: TOOLS, maxToolRounds: 1, generation: { maxTokens: 24, temperature: 0 }, reuseState },
        { speak: false, cacheDir: TEST_CACHE, precision: "fp32" },
      );
    const replies: Record<string, string[]> = {};
    for (const reuse of [false, true]) {
      const a = await load(reuse);
      try {
        expect(a.stateCache === undefined).toBe(!reuse);
        replies[String(reuse)] = [];
        for (const [i, text] of ["first question", "second question", "third question"].entries()) {
          const events = await collect(a.turnText(text));
          const timings = ofType(events, "timings")[0];
          if (!reuse || i === 0) expect(timings.reusedTokens).toBe(0);
          else expect(timings.reusedTokens).toBeGreaterThan(0);
          replies[String(reuse)].push(ofType(events, "reply_text")[0].text);
        }
      } finally {
        await a.release();
      }
    }
    expect(replies.true).toEqual(replies.false);
  }, 300_000);
});
