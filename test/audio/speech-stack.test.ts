/**
 * One loader for the LFM2-Audio speech stack: `Speaker.load` and `AudioChat.load` check the same
 * things in the same order (so the same bad input is the same error), refuse a bad codec before any
 * graph is built, and release what they opened when a later part fails.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { AudioHead } from "../../audio/audio-head.ts";
import { Lfm2AudioModel } from "../../audio/lfm2-audio-model.ts";
import { MimiDecoder } from "../../audio/mimi-decoder.ts";
import { loadSpeechStack } from "../../audio/speech-stack.ts";
import { AudioChat } from "../../pipelines/audio-chat.ts";
import { Speaker } from "../../pipelines/speak.ts";
import { LfmError, type LfmErrorCode } from "../../text-core/errors.ts";
import type { Precision } from "../../text-core/graph/precision.ts";
import { Lfm2Runtime } from "../../text-core/runtime.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const MODEL = join(FIXTURES, "audio/tiny-lfm2-audio");
const MIMI = join(FIXTURES, "audio/tiny-mimi");

const root = mkdtempSync(join(tmpdir(), "lfm-speech-stack-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

let count = 0;
function copy(fixture: string, editJson?: { file: string; edit: (json: Record<string, unknown>) => void }): string {
  const dir = join(root, String(count++));
  cpSync(fixture, dir, { recursive: true });
  if (editJson) {
    const file = join(dir, editJson.file);
    const json = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    editJson.edit(json);
    writeFileSync(file, JSON.stringify(json));
  }
  return dir;
}

describe("Speaker.load and AudioChat.load share one loader", () => {
  it("the same bad input is the same error, and nothing is built for it", async () => {
    const brokenConfig = copy(MODEL, { file: "config.json", edit: (c) => (c.codebooks = "eight") });
    const fourCodebooks = copy(MIMI, { file: "config.json", edit: (c) => (c.num_codebooks = 4) });
    const cases: Array<[string, string, { mimi: string; precision?: Precision }, LfmErrorCode]> = [
      ["no such folder", join(root, "no-model"), { mimi: MIMI }, "MODEL_NOT_FOUND"],
      ["a precision that does not exist", MODEL, { mimi: MIMI, precision: "q3" as Precision }, "INVALID_ARGUMENT"],
      ["a malformed config", brokenConfig, { mimi: MIMI }, "CONFIG_INVALID"],
      // Before, AudioChat reported the missing codec and Speaker the config: now both the config.
      ["a malformed config and no codec", brokenConfig, { mimi: join(root, "no-mimi") }, "CONFIG_INVALID"],
      ["no codec at the path", MODEL, { mimi: join(root, "no-mimi") }, "FILE_NOT_FOUND"],
      ["a folder without Mimi weights", MODEL, { mimi: MODEL }, "FILE_NOT_FOUND"],
      ["a codec of another codebook count", MODEL, { mimi: fourCodebooks }, "CONFIG_INVALID"],
    ];
    const cache = join(root, "cache");
    for (const [what, dir, opts, code] of cases) {
      const speaker = await expectCode(() => Speaker.load(dir, { ...opts, cacheDir: cache }), code);
      const chat = await expectCode(() => AudioChat.load(dir, { ...opts, cacheDir: cache }), code);
      expect(chat.message, what).toBe(speaker.message);
    }
    expect(readdirSync(root)).not.toContain("cache");
  });

  it("a codec of another codebook count is named with both counts", async () => {
    const fourCodebooks = copy(MIMI, { file: "config.json", edit: (c) => (c.num_codebooks = 4) });
    await expectCode(
      () => loadSpeechStack(MODEL, { listen: false, decode: true, mimi: fourCodebooks, cacheDir: TEST_CACHE }),
      "CONFIG_INVALID",
      "decodes 4 codebooks",
      "generates 8",
      fourCodebooks,
    );
  });

  it("loads the parts each job asks for", async () => {
    const speaking = await loadSpeechStack(MODEL, { listen: false, decode: true, mimi: MIMI, precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
    try {
      expect(speaking.model).toBeUndefined();
      expect(speaking.mimi).toBeInstanceOf(MimiDecoder);
      expect(speaking.head).toBeInstanceOf(AudioHead);
      expect(speaking.config.codebooks).toBe(speaking.mimi.config.numCodebooks);
    } finally {
      await Promise.all([speaking.lm.release(), speaking.head.release(), speaking.mimi.release()]);
    }
    const listening = await loadSpeechStack(MODEL, { listen: true, decode: false, precision: "fp32", cacheDir: TEST_CACHE, threads: 2 });
    try {
      expect(listening.model).toBeInstanceOf(Lfm2AudioModel);
      expect(listening.lm).toBe(listening.model.lm);
      expect(listening.mimi).toBeUndefined();
    } finally {
      await Promise.all([listening.model.release(), listening.head.release()]);
    }
  });

  it("releases what it opened when a later part fails", async () => {
    const headFailure = new LfmError("TENSOR_MISSING", "depthformer weights missing (test)");
    vi.spyOn(AudioHead, "load").mockRejectedValue(headFailure);
    const mimiReleased = vi.spyOn(MimiDecoder.prototype, "release");
    const lmReleased = vi.spyOn(Lfm2Runtime.prototype, "release");
    const modelReleased = vi.spyOn(Lfm2AudioModel.prototype, "release");
    const opts = { mimi: MIMI, precision: "fp32" as const, cacheDir: TEST_CACHE, threads: 2 };
    await expect(Speaker.load(MODEL, opts)).rejects.toBe(headFailure);
    expect(mimiReleased).toHaveBeenCalledTimes(1);
    expect(lmReleased).toHaveBeenCalledTimes(1);
    await expect(AudioChat.load(MODEL, opts)).rejects.toBe(headFailure);
    expect(mimiReleased).toHaveBeenCalledTimes(2);
    expect(modelReleased).toHaveBeenCalledTimes(1);
  });
});
