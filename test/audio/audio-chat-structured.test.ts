/**
 * Structured output on the text side of the audio chat: the reply's text is constrained token by
 * token (JSON schema here) while its audio frames stay the model's own, in both modes.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { AUDIO_TOKENS } from "../../audio/audio-config.ts";
import { AudioChat, type AudioChatEvent } from "../../pipelines/audio-chat.ts";
import type { AssembledPrompt } from "../../audio/prompt.ts";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
const CLIP = join(FIXTURES, "audio/clips/speech_en_16k.wav");

const SCHEMA = {
  type: "object",
  properties: {
    status: { enum: ["ok", "leaking", "offline"] },
    pump: { type: "integer", minimum: 1, maximum: 99 },
  },
  required: ["status", "pump"],
  additionalProperties: false,
};

describe("audio chat with a response format (tiny random LFM2-Audio)", () => {
  let chat: AudioChat;
  let prompt: AssembledPrompt;
  const validate = new Ajv2020({ strict: true }).compile(SCHEMA);

  beforeAll(async () => {
    chat = await AudioChat.load(MODEL, { cacheDir: TEST_CACHE, threads: 2 });
    prompt = await chat.prompt(await readAudioFile(CLIP));
  }, 120_000);
  afterAll(async () => chat?.release());

  async function collect(events: AsyncIterable<AudioChatEvent>) {
    const textIds: number[] = [];
    let text = "";
    let frames = 0;
    let finishReason: string | undefined;
    let textComplete: boolean | undefined;
    for await (const e of events) {
      if (e.kind === "text") {
        if (e.id !== null) textIds.push(e.id);
        text += e.text;
      } else if (e.kind === "audio") frames++;
      else ({ finishReason, textComplete } = e);
    }
    return { textIds, text, frames, finishReason, textComplete };
  }

  for (const mode of ["interleaved", "sequential"] as const) {
    it(`${mode}: every sampled reply's text parses and validates, and nothing but <|im_end|> follows it as text`, async () => {
      const closes = mode === "interleaved" ? AUDIO_TOKENS.textEnd : AUDIO_TOKENS.audioStart;
      for (let seed = 0; seed < 3; seed++) {
        const out = await collect(
          chat.reply(prompt, { mode, maxSteps: 200, seed, text: { temperature: 1 }, responseFormat: { type: "json_schema", schema: SCHEMA } }),
        );
        const where = `${mode} seed ${seed}: ${JSON.stringify(out.text)}`;
        expect(out.textComplete, where).toBe(true);
        expect(validate(JSON.parse(out.text)), where).toBe(true);
        // The grammar's text is closed by the mode's switch token or <|im_end|>; only <|im_end|> may follow.
        // (Interleaved, <|im_end|> ends the turn without being yielded.)
        const at = out.textIds.findIndex((id) => id === closes || id === AUDIO_TOKENS.imEnd);
        if (at >= 0) expect(out.textIds.slice(at + 1).every((id) => id === AUDIO_TOKENS.imEnd), where).toBe(true);
        else expect(out.finishReason, where).toBe("stop");
        if (mode === "interleaved") expect(out.frames, where).toBeGreaterThan(0); // frames come between text turns
      }
    }, 120_000);
  }

  it("without a format the same seed's text does not validate (the constraint is what makes it JSON)", async () => {
    const out = await collect(chat.reply(prompt, { mode: "interleaved", maxSteps: 120, seed: 0, text: { temperature: 1 } }));
    expect(() => validate(JSON.parse(out.text))).toThrow();
  }, 60_000);

  it("steps running out before the text is complete end with finishReason length", async () => {
    const out = await collect(chat.reply(prompt, { mode: "interleaved", maxSteps: 3, seed: 1, text: { temperature: 1 }, responseFormat: { type: "json_object" } }));
    expect(out).toMatchObject({ finishReason: "length", textComplete: false });
    expect(out.textIds).toHaveLength(3);
  }, 60_000);

  it("a schema the engine cannot enforce fails before the first step", async () => {
    const e = await expectCode(
      () => collect(chat.reply(prompt, { responseFormat: { type: "json_schema", schema: { type: "object", properties: { a: { type: "string", format: "email" } } } } })),
      "SCHEMA_UNSUPPORTED",
    );
    expect(e.message).toContain("format");
  });
});

describe("lfm audio-chat --json-schema", () => {
  const dir = mkdtempSync(join(tmpdir(), "audio-chat-structured-"));
  const schemaFile = join(dir, "schema.json");
  writeFileSync(schemaFile, JSON.stringify(SCHEMA));

  it("--json carries the constrained text and finish_reason; steps running out in the speech after the text is no error", () => {
    const out = runLfmJson<{ text: string; finish_reason: string }>([
      "audio-chat", "--model", MODEL, "--audio", CLIP, "--json-schema", schemaFile, "--temperature", "1", "--seed", "3", "--max-tokens", "120", "--json",
    ]);
    expect(["stop", "length"]).toContain(out.finish_reason);
    expect(new Ajv2020({ strict: true }).compile(SCHEMA)(JSON.parse(out.text))).toBe(true);
  }, 120_000);

  it("--max-tokens too small for the format: the text is printed, exit 2 with OUTPUT_INCOMPLETE", () => {
    const r = runLfm(["audio-chat", "--model", MODEL, "--audio", CLIP, "--json-object", "--temperature", "1", "--seed", "3", "--max-tokens", "4", "--json"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("OUTPUT_INCOMPLETE");
    expect(JSON.parse(r.stdout).finish_reason).toBe("length");
  }, 120_000);
});
