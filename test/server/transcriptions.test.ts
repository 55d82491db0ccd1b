/** `POST /v1/audio/transcriptions` with the official openai client: formats, and what is refused. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURES } from "../helpers/reference.ts";
import { type TestServer, startTestServer } from "./server-harness.ts";

let server: TestServer;
let client: OpenAI;
const WAV = readFileSync(join(FIXTURES, "audio", "clips", "speech_en_16k.wav"));

beforeAll(async () => {
  server = await startTestServer();
  client = server.client();
});
afterAll(async () => {
  await server?.close();
});

describe("POST /v1/audio/transcriptions", () => {
  it("returns the transcript as json, text, srt, vtt and verbose_json, the same text each time", async () => {
    const file = () => toFile(WAV, "speech.wav", { type: "audio/wav" });
    const json = await client.audio.transcriptions.create({ file: await file(), model: "tiny-lfm2-audio" });
    expect(typeof json.text).toBe("string");
    const text = await client.audio.transcriptions.create({ file: await file(), model: "tiny-lfm2-audio", response_format: "text" });
    expect(String(text)).toBe(`${json.text}\n`);
    const verbose = await client.audio.transcriptions.create({ file: await file(), model: "tiny-lfm2-audio", response_format: "verbose_json", timestamp_granularities: ["segment"] });
    expect(verbose.text).toBe(json.text);
    expect(verbose.duration).toBeCloseTo(4.5, 1);
    for (const s of verbose.segments ?? []) expect(s.end).toBeGreaterThanOrEqual(s.start);
    const vtt = String(await client.audio.transcriptions.create({ file: await file(), model: "tiny-lfm2-audio", response_format: "vtt" }));
    expect(vtt.startsWith("WEBVTT\n")).toBe(true);
    const srt = String(await client.audio.transcriptions.create({ file: await file(), model: "tiny-lfm2-audio", response_format: "srt" }));
    expect(srt.split("\n\n").filter((cue) => cue.trim() !== "").length).toBe((verbose.segments ?? []).length);
  });

  it("refuses a text model, a file that is not audio, and fields it does not implement, naming them", async () => {
    const cases: [OpenAI.Audio.TranscriptionCreateParamsNonStreaming, string][] = [
      [{ file: await toFile(WAV, "a.wav"), model: "tiny-lfm2" }, "model"],
      [{ file: await toFile(Buffer.from("just text"), "a.wav"), model: "tiny-lfm2-audio" }, ""],
      [{ file: await toFile(WAV, "a.wav"), model: "tiny-lfm2-audio", prompt: "Pump names:" }, "prompt"],
      [{ file: await toFile(WAV, "a.wav"), model: "tiny-lfm2-audio", temperature: 0.7 }, "temperature"],
      [{ file: await toFile(WAV, "a.wav"), model: "tiny-lfm2-audio", response_format: "verbose_json", timestamp_granularities: ["word"] }, "timestamp_granularities[]"],
    ];
    for (const [body, param] of cases) {
      const e = (await client.audio.transcriptions.create(body).catch((x: unknown) => x)) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e, param).toBeInstanceOf(OpenAI.BadRequestError);
      if (param !== "") expect(e.param).toBe(param);
      else expect(e.code).toBe("WAV_INVALID");
    }
    const notFound = await client.audio.transcriptions.create({ file: await toFile(WAV, "a.wav"), model: "whisper-1" }).catch((x: unknown) => x);
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("takes multipart bodies on this route only", async () => {
    const form = new FormData();
    form.set("model", "tiny-lfm2");
    const res = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", body: form });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("INVALID_ARGUMENT");
    const broken = await fetch(`${server.url}/v1/audio/transcriptions`, { method: "POST", headers: { "content-type": "multipart/form-data; boundary=xyz" }, body: "--xyz\r\nnot a part" });
    expect(broken.status).toBe(400);
  });
});
