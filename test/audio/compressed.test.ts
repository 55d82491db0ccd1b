import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { decodeCompressed } from "../../audio/compressed.ts";
import { resample } from "../../audio/resample.ts";
import { readWavFile } from "../../audio/wav.ts";
import { FIXTURES } from "../helpers/reference.ts";

const EXTRA = join(FIXTURES, "audio/extra");
const CLIPS = join(FIXTURES, "audio/clips");
const tmp = mkdtempSync(join(tmpdir(), "lfm-compressed-test-"));

/** Best normalised correlation of `a` against `b` over lags ±maxLag, and the SNR there (dB). */
function aligned(a: Float32Array, b: Float32Array, maxLag: number): { corr: number; lag: number; snrDb: number } {
  let best = { corr: -2, lag: 0 };
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = Math.max(0, -lag); i < a.length && i + lag < b.length; i++) {
      ab += a[i] * b[i + lag];
      aa += a[i] * a[i];
      bb += b[i + lag] * b[i + lag];
    }
    const corr = ab / Math.sqrt(aa * bb);
    if (corr > best.corr) best = { corr, lag };
  }
  let err = 0;
  let sig = 0;
  for (let i = Math.max(0, -best.lag); i < a.length && i + best.lag < b.length; i++) {
    err += (a[i] - b[i + best.lag]) ** 2;
    sig += b[i + best.lag] ** 2;
  }
  return { ...best, snrDb: 10 * Math.log10(sig / err) };
}

const to16k = (samples: Float32Array, rate: number) => resample(samples, rate, 16000);

describe("compressed audio in (FLAC, MP3, Ogg Opus / Vorbis), against the WAV each was made from", () => {
  it("FLAC is lossless: exactly the 16-bit WAV samples, scaled as torchaudio scales them", async () => {
    const wav = readWavFile(join(CLIPS, "speech_en_16k.wav"));
    const flac = await readAudioFile(join(EXTRA, "speech_en_16k.flac"));
    expect(flac).toMatchObject({ sampleRateHz: 16000, channels: 1, encoding: "flac" });
    expect(Array.from(flac.samples)).toEqual(Array.from(wav.samples.subarray(8000, 8000 + 24000)));
  });

  it("MP3 (44.1 kHz stereo, downmixed and resampled): aligned, correlation > 0.999, SNR > 30 dB", async () => {
    const wav = readWavFile(join(CLIPS, "speech_fr_44k_stereo.wav"));
    const mp3 = await readAudioFile(join(EXTRA, "speech_fr_44k_stereo.mp3"));
    expect(mp3).toMatchObject({ sampleRateHz: 44100, channels: 2, encoding: "mp3" });
    expect(mp3.samples.length).toBe(66150); // gapless: the LAME tag's delay and padding removed
    const m = aligned(to16k(mp3.samples, 44100), to16k(wav.samples.subarray(22050, 22050 + 66150), 44100), 40);
    expect(Math.abs(m.lag)).toBeLessThanOrEqual(1);
    expect(m.corr).toBeGreaterThan(0.999);
    expect(m.snrDb).toBeGreaterThan(30);
  });

  it("Ogg Opus (decoded at 48 kHz) and Ogg Vorbis (24 kHz): aligned, correlation > 0.95 / 0.99", async () => {
    const wav = readWavFile(join(CLIPS, "speech_de_24k_f32.wav"));
    const reference = to16k(wav.samples.subarray(0, 36000), 24000);
    const opus = await readAudioFile(join(EXTRA, "speech_de_24k.opus"));
    expect(opus).toMatchObject({ sampleRateHz: 48000, channels: 1, encoding: "ogg-opus" });
    expect(opus.samples.length).toBe(72000); // pre-skip and end trimming applied
    const o = aligned(to16k(opus.samples, 48000), reference, 40);
    expect(Math.abs(o.lag)).toBeLessThanOrEqual(2);
    expect(o.corr).toBeGreaterThan(0.95); // measured 0.974, SNR 12.9 dB (libopus' default bit rate)
    expect(o.snrDb).toBeGreaterThan(10);
    const vorbis = await readAudioFile(join(EXTRA, "speech_de_24k.ogg"));
    expect(vorbis).toMatchObject({ sampleRateHz: 24000, channels: 1, encoding: "ogg-vorbis" });
    const v = aligned(to16k(vorbis.samples, 24000), reference, 40);
    expect(Math.abs(v.lag)).toBeLessThanOrEqual(1);
    expect(v.corr).toBeGreaterThan(0.99); // measured 0.9956, SNR 20.6 dB
    expect(v.snrDb).toBeGreaterThan(17);
  });

  it("WAV still goes through the WAV reader", async () => {
    const clip = await readAudioFile(join(CLIPS, "speech_en_16k.wav"));
    expect(clip.encoding).toBe("pcm16");
    expect(clip.samples).toEqual(readWavFile(join(CLIPS, "speech_en_16k.wav")).samples);
  });

  const files = ["speech_en_16k.flac", "speech_fr_44k_stereo.mp3", "speech_de_24k.opus", "speech_de_24k.ogg"];

  it("truncated files → AUDIO_INVALID (FLAC/MP3 decode less than their header declares; Ogg's last page is cut)", async () => {
    for (const f of files) {
      const bytes = readFileSync(join(EXTRA, f));
      for (const keep of [0.3, 0.9, 0.99]) {
        const path = join(tmp, `cut-${keep}-${f}`);
        writeFileSync(path, bytes.subarray(0, Math.floor(bytes.length * keep)));
        await expect(readAudioFile(path), `${f} cut at ${keep}`).rejects.toMatchObject({ code: "AUDIO_INVALID" });
      }
    }
  });

  it("damaged bytes → AUDIO_INVALID (FLAC frame CRCs, Ogg page CRCs, MP3 frames lost)", async () => {
    for (const f of files) {
      const bytes = new Uint8Array(readFileSync(join(EXTRA, f)));
      for (let i = Math.floor(bytes.length / 3); i < bytes.length; i += 97) bytes[i] ^= 0xff;
      await expect(decodeCompressed(bytes, f), f).rejects.toMatchObject({ code: "AUDIO_INVALID" });
    }
  });

  it("a bare signature, a headerless stream, a foreign Ogg codec, and length limits are typed errors", async () => {
    const flacMagicOnly = new Uint8Array([...Buffer.from("fLaC"), 0x80, 0, 0, 2, 0, 0]);
    await expect(decodeCompressed(flacMagicOnly, "x.flac")).rejects.toMatchObject({ code: "AUDIO_INVALID" });
    const mp3NoFrames = new Uint8Array([...Buffer.from("ID3"), 4, 0, 0, 0, 0, 0, 0, ...new Array(64).fill(0)]);
    await expect(decodeCompressed(mp3NoFrames, "x.mp3")).rejects.toMatchObject({ code: "AUDIO_INVALID" });
    // An Ogg page whose first packet is neither OpusHead nor a Vorbis identification header.
    const speex = new Uint8Array(27 + 1 + 8);
    speex.set(Buffer.from("OggS"));
    speex[26] = 1;
    speex[27] = 8;
    speex.set(Buffer.from("Speex   "), 28);
    await expect(decodeCompressed(speex, "x.spx")).rejects.toMatchObject({ code: "WAV_UNSUPPORTED" });
    // The declared length is judged before decoding.
    await expect(readAudioFile(join(EXTRA, "speech_en_16k.flac"), { maxSeconds: 1 })).rejects.toMatchObject({ code: "AUDIO_TOO_LONG" });
    await expect(readAudioFile(join(EXTRA, "speech_de_24k.opus"), { maxSeconds: 1 })).rejects.toMatchObject({ code: "AUDIO_TOO_LONG" });
    await expect(readAudioFile(join(EXTRA, "speech_fr_44k_stereo.mp3"), { maxSeconds: 1 })).rejects.toMatchObject({ code: "AUDIO_TOO_LONG" });
    const empty = join(tmp, "empty.flac");
    writeFileSync(empty, "");
    await expect(readAudioFile(empty)).rejects.toMatchObject({ code: "AUDIO_EMPTY" });
    await expect(readAudioFile(join(tmp, "missing.mp3"))).rejects.toMatchObject({ code: "FILE_NOT_FOUND" });
    const text = join(tmp, "notes.mp3");
    writeFileSync(text, "not audio at all");
    await expect(readAudioFile(text)).rejects.toMatchObject({ code: "WAV_INVALID" });
  });
});
