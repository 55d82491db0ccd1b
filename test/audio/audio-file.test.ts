/**
 * `readAudioFile` is the one public way recordings come in: every format, chosen from the bytes
 * (not the file name), and `decodeAudio` does the same for bytes already in memory.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeAudio, readAudioFile } from "../../audio/audio-file.ts";
import { decodeCompressed } from "../../audio/compressed.ts";
import { decodeWav } from "../../audio/wav.ts";
import * as library from "../../index.ts";
import { FIXTURES } from "../helpers/reference.ts";

const EXTRA = join(FIXTURES, "audio/extra");
const CLIPS = join(FIXTURES, "audio/clips");
const tmp = mkdtempSync(join(tmpdir(), "lfm-audio-file-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("readAudioFile", () => {
  it("sniffs the format from the content: a misnamed file reads as what it is", async () => {
    const cases: Array<[string, string, string]> = [
      [join(EXTRA, "speech_en_16k.flac"), "recording.wav", "flac"],
      [join(EXTRA, "speech_fr_44k_stereo.mp3"), "recording.ogg", "mp3"],
      [join(EXTRA, "speech_de_24k.opus"), "recording.mp3", "ogg-opus"],
      [join(CLIPS, "speech_en_16k.wav"), "recording.flac", "pcm16"],
      [join(EXTRA, "speech_de_24k.ogg"), "recording", "ogg-vorbis"],
    ];
    for (const [source, name, encoding] of cases) {
      const misnamed = join(tmp, name);
      copyFileSync(source, misnamed);
      const clip = await readAudioFile(misnamed);
      expect(clip.encoding, `${source} as ${name}`).toBe(encoding);
      expect(clip.samples, `${source} as ${name}`).toEqual((await readAudioFile(source)).samples);
      rmSync(misnamed);
    }
  });

  it("decodeAudio gives what the format's own decoder gives", async () => {
    const wav = readFileSync(join(CLIPS, "speech_en_16k.wav"));
    expect((await decodeAudio(wav)).samples).toEqual(decodeWav(wav).samples);
    const flac = readFileSync(join(EXTRA, "speech_en_16k.flac"));
    expect((await decodeAudio(flac)).samples).toEqual((await decodeCompressed(flac)).samples);
    await expect(decodeAudio(new TextEncoder().encode("not audio at all"), "notes")).rejects.toMatchObject({ code: "WAV_INVALID" });
  });

  it("is the only file reader the package exports", () => {
    expect(library.readAudioFile).toBe(readAudioFile);
    expect("loadAudioFile" in library).toBe(false);
    expect("readWavFile" in library).toBe(false);
  });
});
