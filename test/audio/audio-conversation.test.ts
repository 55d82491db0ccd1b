/**
 * Multi-turn audio chat with the decode state kept between turns (AudioConversation, tiny random
 * LFM2-Audio): the kept state plus the next turn's positions gives the logits of a full prefill of
 * the whole history (user audio rows, the replies' text tokens and audio frames as fed back, the
 * turn markers) at DESIGN.md tolerances; a barge-in keeps the reply up to where it stopped, in the
 * history and the state alike; reusing the state changes no reply.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { Modality } from "../../audio/audio-config.ts";
import type { AudioClip } from "../../audio/wav.ts";
import { AudioChat, type AudioChatEvent, type AudioChatOptions, type AudioConversation } from "../../pipelines/audio-chat.ts";
import { FIXTURES, TEST_CACHE, expectClose } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
// Greedy text and frames: the replies depend on the logits alone.
const OPTS: AudioChatOptions = { maxSteps: 24, audio: { temperature: 0 }, seed: 3 };

let chat: AudioChat;
let clip: AudioClip;
beforeAll(async () => {
  // fp32, the path DESIGN.md's tolerances are for (q4 quantises activations to int8 per block:
  // two computations of one logit that differ in the last bit can round apart).
  chat = await AudioChat.load(MODEL, { cacheDir: TEST_CACHE, threads: 2, precision: "fp32" });
  clip = await readAudioFile(join(FIXTURES, "audio/clips/speech_en_16k.wav"));
}, 120_000);
afterAll(async () => chat?.release());

async function steps(events: AsyncIterable<AudioChatEvent>): Promise<string[]> {
  const out: string[] = [];
  for await (const e of events) {
    if (e.kind === "text" && e.id !== null) out.push(`t${e.id}`);
    else if (e.kind === "audio") out.push(`a${e.codes.join(",")}`);
  }
  return out;
}

/**
 * A next user turn appended to a copy of the history's pieces, run from a copy of the kept state
 * and as one full prefill: the same last logits. Returns the positions each ran.
 */
async function expectKeptStateMatchesFullPrefill(conversation: AudioConversation, label: string): Promise<{ kept: number; total: number }> {
  const history = conversation.history;
  const mark = history.pieceCount;
  const audio = await chat.model.embedAudio({ samples: clip.samples.subarray(0, 16000), sampleRateHz: clip.sampleRateHz });
  history.newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant");
  try {
    const lm = chat.model.lm;
    const kept = conversation.keptPositions;
    expect(kept, `${label}: a kept state`).toBeGreaterThan(0);
    const state = conversation["state"]!.clone();
    const rest = history.build(kept);
    const full = history.build();
    // The history has every modality in it: text, user audio and the replies' frames.
    for (const m of [Modality.TEXT, Modality.AUDIO_IN, Modality.AUDIO_OUT]) expect(full.modality.slice(0, kept), `${label}: modality ${m} among the kept positions`).toContain(m);
    let t0 = performance.now();
    const reused = (await lm.forward(state, { ids: [rest.ids], overrides: rest.overrides })).output;
    const reuseMs = performance.now() - t0;
    t0 = performance.now();
    const whole = (await lm.forward(lm.newState(1), { ids: [full.ids], overrides: full.overrides })).output;
    const fullMs = performance.now() - t0;
    console.log(`[audio conversation] ${label}: next turn's prefill ${reuseMs.toFixed(1)} ms from the kept state (${rest.ids.length} positions) vs ${fullMs.toFixed(1)} ms in full (${full.ids.length})`);
    expectClose(reused, whole, `${label}: kept state (${kept}) + ${rest.ids.length} positions vs full prefill of ${full.ids.length}`);
    return { kept, total: full.ids.length };
  } finally {
    history.truncate(mark);
  }
}

describe("AudioConversation", () => {
  it("turn by turn, the kept state continued with the next turn gives a full prefill's logits; no reply changes", async () => {
    const reusing = chat.conversation();
    const plain = chat.conversation(undefined, { reuseState: false });
    for (let turn = 1; turn <= 3; turn++) {
      const before = reusing.keptPositions;
      const t0 = performance.now();
      const a = await steps(reusing.turn(clip, OPTS));
      const reuseMs = performance.now() - t0;
      const t1 = performance.now();
      const b = await steps(plain.turn(clip, OPTS));
      const fullMs = performance.now() - t1;
      expect(a, `turn ${turn}`).toEqual(b);
      expect(a.length).toBe(OPTS.maxSteps);
      expect(plain.keptPositions).toBe(0);
      // The state holds all but the reply's last step (chosen, never run).
      expect(reusing.keptPositions).toBe(reusing.history.length - 2 - 1);
      console.log(`[audio conversation] turn ${turn}: ${before} positions reused of ${plain.history.build().ids.length - a.length - 2}; turn ${reuseMs.toFixed(0)} ms vs ${fullMs.toFixed(0)} ms re-running the history`);
    }
    expect(reusing.history.build().ids).toEqual(plain.history.build().ids);
    await expectKeptStateMatchesFullPrefill(reusing, "after 3 turns");
  }, 300_000);

  it("barge-in mid-reply: the reply up to the stop is in the history and the state; the next turn goes on from there", async () => {
    const conversation = chat.conversation();
    await steps(conversation.turn(clip, OPTS));
    const controller = new AbortController();
    const heard: AudioChatEvent[] = [];
    await expect(
      (async () => {
        for await (const e of conversation.turn(clip, { ...OPTS, signal: controller.signal })) {
          heard.push(e);
          if (heard.filter((h) => h.kind === "audio").length === 3) controller.abort();
        }
      })(),
    ).rejects.toMatchObject({ code: "ABORTED" });
    const generated = heard.filter((e) => e.kind === "audio" || (e.kind === "text" && e.id !== null)).length;
    expect(generated).toBeLessThan(OPTS.maxSteps!);
    const built = conversation.history.build();
    // The history ends with the stopped reply's steps, then <|im_end|>\n.
    const tail = built.modality.slice(-2 - generated, -2);
    expect(tail.filter((m) => m === Modality.AUDIO_OUT)).toHaveLength(3);
    await expectKeptStateMatchesFullPrefill(conversation, "after a barge-in");
    const next = await steps(conversation.turn(clip, OPTS));
    expect(next).toHaveLength(OPTS.maxSteps!);
    await expectKeptStateMatchesFullPrefill(conversation, "the turn after the barge-in");
  }, 300_000);

  it("a turn that fails (a bad option) leaves the history and the kept state as they were", async () => {
    const conversation = chat.conversation();
    await steps(conversation.turn(clip, OPTS));
    const length = conversation.history.length;
    const kept = conversation.keptPositions;
    await expect(steps(conversation.turn(clip, { ...OPTS, maxSteps: -1 }))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(conversation.history.length).toBe(length);
    expect(conversation.keptPositions).toBe(kept);
    await expectKeptStateMatchesFullPrefill(conversation, "after a failed turn");
  }, 120_000);
});
