/** The energy voice detector that cuts live turns, on scripted signals, and the s16le reader. */
import { describe, expect, it } from "vitest";
import { VoiceActivityDetector, levelDb, readPcmS16le } from "../../pipelines/vad.ts";

const RATE = 16000;
/** A 220 Hz tone at `db` dBFS RMS for `seconds`: a stand-in for a voice. */
function tone(seconds: number, db = -20): Float32Array {
  const amp = Math.SQRT2 * 10 ** (db / 20);
  return Float32Array.from({ length: Math.round(seconds * RATE) }, (_, i) => amp * Math.sin((2 * Math.PI * 220 * i) / RATE));
}
/** Quiet noise at about `db` dBFS (a room), deterministic. */
function hiss(seconds: number, db = -70): Float32Array {
  let seed = 7;
  const amp = Math.sqrt(3) * 10 ** (db / 20);
  return Float32Array.from({ length: Math.round(seconds * RATE) }, () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return amp * (2 * (seed / 2 ** 31) - 1);
  });
}
/** Syllables: 0.4 s of tone, 0.1 s of near silence, repeated (speech has gaps; a steady tone does not). */
function speechLike(seconds: number): Float32Array {
  const parts: Float32Array[] = [];
  for (let t = 0; t < seconds; t += 0.5) parts.push(tone(0.4), hiss(0.1, -60));
  return concat(...parts);
}
function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}
/** Feeds `signal` in uneven blocks (as a pipe delivers it) and returns the turns, flush included. */
function turnsOf(signal: Float32Array, vad = new VoiceActivityDetector(RATE)): Float32Array[] {
  const turns: Float32Array[] = [];
  for (let at = 0, step = 333; at < signal.length; at += step, step = step === 333 ? 1777 : 333) turns.push(...vad.push(signal.subarray(at, at + step)));
  const last = vad.flush();
  if (last) turns.push(last);
  return turns;
}

describe("VoiceActivityDetector", () => {
  it("levels: a -20 dBFS tone reads -20 dB", () => {
    expect(levelDb(tone(0.03))).toBeCloseTo(-20, 0);
  });

  it("two utterances separated by a pause are two turns, with pre-roll and hangover", () => {
    const turns = turnsOf(concat(hiss(1), tone(1.2), hiss(1.5), tone(0.8), hiss(1.2)));
    expect(turns).toHaveLength(2);
    // speech + up to 0.3 s before + the 0.7 s hangover (30 ms frames)
    expect(turns[0].length / RATE).toBeGreaterThan(1.2 + 0.7 - 0.05);
    expect(turns[0].length / RATE).toBeLessThan(1.2 + 0.3 + 0.7 + 0.1);
    expect(turns[1].length / RATE).toBeGreaterThan(0.8 + 0.7 - 0.05);
  });

  it("a pause shorter than the hangover stays inside the turn", () => {
    expect(turnsOf(concat(hiss(0.5), tone(0.6), hiss(0.4), tone(0.6), hiss(1)))).toHaveLength(1);
  });

  it("clicks shorter than the minimum speech, silence and steady hum are no turn", () => {
    expect(turnsOf(concat(hiss(1), tone(0.04), hiss(1), tone(0.03), hiss(1)))).toEqual([]);
    expect(turnsOf(new Float32Array(RATE * 3))).toEqual([]);
    // A hum at -35 dBFS (above the absolute threshold) for 10 s: its onset reads as speech until
    // the noise floor catches up (a short turn), then it is floor; a voice 25 dB above it is a turn.
    const hum = turnsOf(concat(hiss(1), tone(10, -35), speechLike(1.5).map((x) => x * 10 ** (10 / 20)), tone(2, -35)));
    expect(hum).toHaveLength(2);
    expect(hum[0].length / RATE).toBeLessThan(3.5); // ~2.2 s of hum, with pre-roll and hangover
    expect(hum[1].length / RATE).toBeGreaterThan(1.5);
    // + pre-roll, hangover, and ~0.6 s while the floor (pulled down by the gaps) rises back to the hum
    expect(hum[1].length / RATE).toBeLessThan(1.5 + 0.3 + 0.7 + 0.8);
  });

  it("a stream that stops mid-turn gives that turn at flush; a long monologue is cut at maxTurnSeconds", () => {
    const cut = turnsOf(concat(hiss(0.5), speechLike(1)));
    expect(cut).toHaveLength(1);
    expect(cut[0].length / RATE).toBeGreaterThan(1);
    const long = turnsOf(concat(speechLike(7), hiss(1)), new VoiceActivityDetector(RATE, { maxTurnSeconds: 3 }));
    expect(long.length).toBe(3);
    expect(long[0].length / RATE).toBeCloseTo(3, 1);
  });
});

describe("readPcmS16le", () => {
  it("reads little-endian 16-bit samples across chunk boundaries, odd bytes included", async () => {
    const values = [0, 1, -1, 32767, -32768, 12345, -2];
    const bytes = new Uint8Array(values.length * 2);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setInt16(2 * i, v, true));
    async function* chunks() {
      yield bytes.subarray(0, 3);
      yield bytes.subarray(3, 4);
      yield bytes.subarray(4, 4);
      yield bytes.subarray(4, 11);
      yield bytes.subarray(11);
    }
    const out: number[] = [];
    for await (const block of readPcmS16le(chunks())) out.push(...block);
    expect(out.map((x) => Math.round(x * 32768))).toEqual(values);
  });
});
