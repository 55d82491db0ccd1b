import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadLfm2AudioConfig } from "../../audio/audio-config.ts";
import { Lfm2AudioModel } from "../../audio/lfm2-audio-model.ts";
import { SYSTEM_PROMPTS } from "../../audio/prompt.ts";
import { readAudioFile } from "../../audio/audio-file.ts";
import { AudioHead } from "../../audio/audio-head.ts";
import { END_OF_AUDIO, ModeSwitch, type SpeechGenerationOptions, type SpeechPrompt, type SpeechStep, generateSpeech, isSoundFrame, modalityPicker } from "../../audio/speech-generation.ts";
import { buildRuntime } from "../../text-core/model.ts";
import type { Lfm2Runtime } from "../../text-core/runtime.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, readJson } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const DIR = join(FIXTURES, "audio/tiny-lfm2-audio");

interface AudioReference {
  greedy_sequential: number[][];
  greedy_interleaved: number[][];
}

const asRows = (steps: SpeechStep[]) => steps.map((s) => (s.kind === "text" ? [s.id] : s.codes));

describe("speech generation matches liquid-audio generate_sequential / generate_interleaved", () => {
  const config = loadLfm2AudioConfig(DIR);
  const json = readJson<AudioReference>("audio/reference.json");
  const ref = new ReferenceTensors("audio/reference.safetensors");
  let lm: Lfm2Runtime;
  let head: AudioHead;
  /** The reference chat's prefill rows (text, 57 audio-in rows, text), fed as overrides. */
  let prefill: SpeechPrompt;
  const run = async (opts: SpeechGenerationOptions, prompt = prefill) => {
    const steps: SpeechStep[] = [];
    for await (const s of generateSpeech(lm, head, prompt, opts)) steps.push(s);
    return steps;
  };

  beforeAll(async () => {
    lm = await buildRuntime(DIR, config.lfm, { precision: "fp32", head: "logits", exposeHidden: true }, { cacheDir: TEST_CACHE, threads: 2 });
    head = await AudioHead.load(DIR, config, { precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
    const rows = ref.float("prefill.embeddings");
    const n = ref.shape("prefill.embeddings")[0];
    prefill = { ids: new Array(n).fill(0), overrides: { index: Array.from({ length: n }, (_, i) => i), values: rows } };
  });

  it("sequential greedy: the 40 reference steps exactly", async () => {
    expect(asRows(await run({ mode: "sequential", maxSteps: 40 }))).toEqual(json.greedy_sequential);
  });

  it("interleaved greedy: 6 text, 12 frames, 6 text, 12 frames, 4 text — the 40 reference steps exactly", async () => {
    const steps = await run({ mode: "interleaved", maxSteps: 40, interleavedText: config.interleavedText, interleavedAudio: config.interleavedAudio });
    expect(asRows(steps)).toEqual(json.greedy_interleaved);
    expect(steps.map((s) => s.kind[0]).join("")).toBe(`${"t".repeat(6)}${"a".repeat(12)}${"t".repeat(6)}${"a".repeat(12)}tttt`);
  });

  it("a forced <|audio_start|> makes the sequential reply audio from its second step", async () => {
    const steps = await run({ mode: "sequential", maxSteps: 5, forceAudioStart: true });
    expect(steps[0]).toEqual({ kind: "text", id: 128 });
    expect(steps.slice(1).every((s) => s.kind === "audio")).toBe(true);
    expect(steps).toHaveLength(5);
    // greedy and deterministic: the same again
    expect(asRows(await run({ mode: "sequential", maxSteps: 5, forceAudioStart: true }))).toEqual(asRows(steps));
  });

  it("sampling with a seed is reproducible, and other seeds give other frames", async () => {
    const opts: SpeechGenerationOptions = { mode: "interleaved", maxSteps: 10, text: { temperature: 1, topK: 50 }, audio: { temperature: 1, topK: 4 }, seed: 11 };
    const a = asRows(await run(opts));
    expect(asRows(await run(opts))).toEqual(a);
    expect(asRows(await run({ ...opts, seed: 12 }))).not.toEqual(a);
  });

  it("stops at maxSteps, on abort (ABORTED), and refuses bad settings", async () => {
    expect(await run({ mode: "sequential", maxSteps: 0 })).toEqual([]);
    const controller = new AbortController();
    const steps: SpeechStep[] = [];
    await expectCode(async () => {
      for await (const s of generateSpeech(lm, head, prefill, { mode: "interleaved", maxSteps: 40, signal: controller.signal })) {
        steps.push(s);
        if (steps.length === 8) controller.abort();
      }
    }, "ABORTED");
    expect(steps).toHaveLength(8);
    await expect(run({ mode: "sequential", maxSteps: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(run({ mode: "interleaved", forceAudioStart: true })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(run({ mode: "sequential", audio: { temperature: 1, topK: 0 } })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(run({ mode: "sequential" }, { ids: [] })).rejects.toMatchObject({ code: "EMPTY_PROMPT" });
  });

  it("needs an LM runtime that exposes its final hidden state", async () => {
    const plain = await buildRuntime(DIR, config.lfm, { precision: "fp32", head: "logits", exposeHidden: false }, { cacheDir: TEST_CACHE, threads: 2 });
    await expect((async () => {
      for await (const _ of generateSpeech(plain, head, prefill, { mode: "sequential" })) void _;
    })()).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await plain.release();
  });
});

describe("speech to speech end to end: WAV → encoder → prompt → generation", () => {
  it("reproduces both reference step sequences from the reference chat's recording", async () => {
    const json = readJson<AudioReference & { chat: { text_ids: number[]; modality_flag: number[] } }>("audio/reference.json");
    const model = await Lfm2AudioModel.load(DIR, { exposeHidden: true, precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
    const head = await AudioHead.load(DIR, model.config, { precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
    const audio = await model.embedAudio(await readAudioFile(join(FIXTURES, "audio/clips/speech_en_16k.wav")));
    const prompt = model.newPrompt().newTurn("system").addText(SYSTEM_PROMPTS.interleavedChat).endTurn()
      .newTurn("user").addAudio(audio.rows, audio.count).endTurn().newTurn("assistant").build();
    expect(prompt.textIds).toEqual(json.chat.text_ids);
    expect(prompt.modality).toEqual(json.chat.modality_flag);
    for (const mode of ["sequential", "interleaved"] as const) {
      const steps: SpeechStep[] = [];
      for await (const s of generateSpeech(model.lm, head, prompt, { mode, maxSteps: 40 })) steps.push(s);
      expect(asRows(steps), mode).toEqual(json[`greedy_${mode}`]);
    }
    await Promise.all([model.release(), head.release()]);
  });
});

describe("ModeSwitch follows liquid-audio's switching rules", () => {
  const frame = (first: number) => [first, 1, 2, 3, 4, 5, 6, 7];

  it("sequential: <|audio_start|> (yielded) switches to audio; end-of-audio (whole frame) back to text; <|im_end|> is yielded and stops", () => {
    const m = new ModeSwitch("sequential");
    expect(m.afterText(500)).toEqual({ emit: true, stop: false });
    expect(m.modality).toBe("text");
    expect(m.afterText(128)).toEqual({ emit: true, stop: false });
    expect(m.modality).toBe("audio");
    expect(m.afterFrame(frame(9))).toEqual({ codes: frame(9), endOfAudio: false });
    expect(m.modality).toBe("audio");
    // only the first code decides: 2048 elsewhere is passed through
    expect(m.afterFrame([1, 2048, 2, 3, 4, 5, 6, 7]).endOfAudio).toBe(false);
    expect(m.afterFrame(frame(END_OF_AUDIO))).toEqual({ codes: new Array(8).fill(END_OF_AUDIO), endOfAudio: true });
    expect(m.modality).toBe("text");
    expect(m.afterText(7)).toEqual({ emit: true, stop: true });
  });

  it("interleaved: n_text steps of text, n_audio of audio; <|im_end|> stops unyielded", () => {
    const m = new ModeSwitch("interleaved", 2, 3);
    const kinds: string[] = [];
    for (let i = 0; i < 12; i++) {
      m.beginStep();
      kinds.push(m.modality[0]);
      if (m.modality === "text") m.afterText(500);
      else m.afterFrame(frame(9));
    }
    expect(kinds.join("")).toBe("ttaaattaaatt");
    m.beginStep();
    expect(m.afterText(7)).toEqual({ emit: false, stop: true });
  });

  it("interleaved: after <|text_end|> only audio until end-of-audio; then a text token flips straight back to audio", () => {
    const m = new ModeSwitch("interleaved", 6, 12);
    m.beginStep();
    m.afterText(130);
    const kinds: string[] = [];
    for (let i = 0; i < 20; i++) {
      m.beginStep();
      kinds.push(m.modality[0]);
      m.afterFrame(frame(9));
    }
    expect(kinds.join("")).toBe("a".repeat(20));
    m.beginStep();
    expect(m.afterFrame(frame(END_OF_AUDIO)).endOfAudio).toBe(true);
    expect(m.modality).toBe("text");
    m.beginStep();
    expect(m.afterText(500)).toEqual({ emit: true, stop: false });
    expect(m.modality).toBe("audio");
  });

  it("interleaved: end-of-audio mid-turn returns to text with the turn counter left running", () => {
    const m = new ModeSwitch("interleaved", 1, 5);
    m.beginStep();
    m.afterText(500); // left 0 → audio, left 5
    m.beginStep();
    m.afterFrame(frame(END_OF_AUDIO)); // left 4, back to text
    const kinds: string[] = [];
    for (let i = 0; i < 6; i++) {
      m.beginStep();
      kinds.push(m.modality[0]);
      if (m.modality === "text") m.afterText(500);
      else m.afterFrame(frame(9));
    }
    // text continues until the counter (still running from the audio turn) reaches 0
    expect(kinds.join("")).toBe("ttttaa");
  });

  it("picks greedily when the temperature is unset or ≤ 0 or top-k is 1 (liquid-audio's rule)", () => {
    const logits = Float32Array.from([0.1, 3, 2.9, -1]);
    for (const s of [undefined, {}, { temperature: 0 }, { temperature: -1 }, { temperature: 5, topK: 1 }]) {
      const pick = modalityPicker(s, 1);
      for (let i = 0; i < 20; i++) expect(pick(logits)).toBe(1);
    }
    const sampled = modalityPicker({ temperature: 5, topK: 2 }, 1);
    const seen = new Set(Array.from({ length: 200 }, () => sampled(logits)));
    expect([...seen].sort()).toEqual([1, 2]);
  });
});

describe("isSoundFrame", () => {
  it("a frame with the end-of-audio code in any codebook has no Mimi code to decode", () => {
    expect(isSoundFrame([5, 9, 2047, 0, 1, 2, 3, 4])).toBe(true);
    expect(isSoundFrame([5, 9, 2047, END_OF_AUDIO, 1, 2, 3, 4])).toBe(false); // codebook 3: not an end of audio
    expect(isSoundFrame(Array(8).fill(END_OF_AUDIO))).toBe(false);
  });
});
