/** `POST /v1/audio/speech` with the official openai client: streamed WAV and PCM from LFM2-Audio + Mimi. */
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeWav } from "../../audio/wav.ts";
import { type TestServer, startTestServer } from "./server-harness.ts";

let server: TestServer;
let client: OpenAI;

beforeAll(async () => {
  server = await startTestServer();
  client = server.client();
});
afterAll(async () => {
  await server?.close();
});

describe("POST /v1/audio/speech", () => {
  it("speaks the input as a streamed 24 kHz WAV, and as raw PCM", async () => {
    // max_frames (an extension) keeps the random model's speech short.
    const wav = await client.audio.speech.create({ model: "tiny-lfm2-audio", input: "Pump seven is fine.", voice: "alloy", response_format: "wav", max_frames: 10 } as OpenAI.Audio.SpeechCreateParams);
    expect(wav.headers.get("content-type")).toBe("audio/wav");
    const clip = decodeWav(new Uint8Array(await wav.arrayBuffer()), "the reply");
    expect(clip.sampleRateHz).toBe(24000);
    expect(clip.samples.length % 1920).toBe(0); // whole Mimi frames of 80 ms
    expect(clip.samples.length / 1920).toBeGreaterThan(0);
    expect(clip.samples.length / 1920).toBeLessThanOrEqual(10);

    const pcm = await client.audio.speech.create({ model: "tiny-lfm2-audio", input: "Pump seven is fine.", voice: "alloy", response_format: "pcm", max_frames: 3 } as OpenAI.Audio.SpeechCreateParams);
    expect(pcm.headers.get("x-sample-rate")).toBe("24000");
    const bytes = (await pcm.arrayBuffer()).byteLength;
    expect(bytes % (1920 * 2)).toBe(0);
    expect(bytes / (1920 * 2)).toBeGreaterThan(0);
    expect(bytes / (1920 * 2)).toBeLessThanOrEqual(3);
  });

  it("refuses what it cannot make, naming the field", async () => {
    const cases: [OpenAI.Audio.SpeechCreateParams, string][] = [
      [{ model: "tiny-lfm2-audio", input: "Hi", voice: "alloy", response_format: "mp3" }, "response_format"],
      [{ model: "tiny-lfm2-audio", input: "Hi", voice: "alloy", speed: 1.5 }, "speed"],
      [{ model: "tiny-lfm2-audio", input: "  ", voice: "alloy" }, "input"],
      [{ model: "tiny-lfm2", input: "Hi", voice: "alloy" }, "model"],
      [{ model: "tiny-lfm2-audio", input: "Hi", voice: "alloy", max_frames: 0 } as OpenAI.Audio.SpeechCreateParams, "max_frames"],
    ];
    for (const [body, param] of cases) {
      const e = (await client.audio.speech.create(body).catch((x: unknown) => x)) as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect(e.param).toBe(param);
    }
  });
});
