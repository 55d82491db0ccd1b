import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { MimiDecoder } from "../../audio/mimi-decoder.ts";
import { locateMimi, parseMimiConfig } from "../../audio/mimi-config.ts";
import { type TensorToWrite, writeSafetensors } from "../../bench/safetensors-writer.ts";
import { SafetensorsFile } from "../../text-core/safetensors.ts";
import { FIXTURES, ReferenceTensors, TEST_CACHE, errorStats, expectClose } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const MIMI = join(FIXTURES, "audio/tiny-mimi");
const ref = new ReferenceTensors("audio/mimi_reference.safetensors");

/** `codes` [1, K, T] as frames [T][K]. */
function referenceFrames(): number[][] {
  const [, K, T] = ref.shape("codes");
  const flat = ref.ints("codes");
  return Array.from({ length: T }, (_, t) => Array.from({ length: K }, (_, k) => flat[k * T + t]));
}

async function pushAll(decoder: MimiDecoder, frames: number[][], chunk: number): Promise<Float32Array> {
  const stream = decoder.stream();
  const parts: Float32Array[] = [];
  for (let t = 0; t < frames.length; t += chunk) parts.push((await stream.push(frames.slice(t, t + chunk))).slice());
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A copy of the tiny Mimi with config keys changed and each tensor passed through `tensor`
 * (which may return several tensors in its place).
 */
function variant(transformer: Record<string, unknown>, tensor: (name: string, shape: number[], data: Float32Array) => TensorToWrite[] = (name, shape, data) => [f32(name, shape, data)]): string {
  const dir = mkdtempSync(join(tmpdir(), "mimi-variant-"));
  const config = JSON.parse(readFileSync(join(MIMI, "config.json"), "utf8"));
  config.transformer = { ...config.transformer, ...transformer };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  const src = SafetensorsFile.open(join(MIMI, "mimi.safetensors"));
  const tensors = src.names().flatMap((name) => tensor(name, src.info(name).shape, src.readFloat32(name)));
  src.close();
  writeSafetensors(join(dir, "mimi.safetensors"), tensors);
  return dir;
}

function f32(name: string, shape: number[], data: Float32Array): TensorToWrite {
  return { name, dtype: "F32", shape, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

describe("Mimi decoder matches moshi MimiModel.decode on fixtures/audio/tiny-mimi", () => {
  let decoder: MimiDecoder;
  const frames = referenceFrames();
  const expected = ref.float("decoded");
  beforeAll(async () => {
    decoder = await MimiDecoder.load(MIMI, { cacheDir: TEST_CACHE, threads: 2 });
  });

  it("reads the fixture config: 24 kHz, 12.5 Hz frames of 1920 samples, 8 codebooks", () => {
    expect(decoder.config.sampleRateHz).toBe(24000);
    expect(decoder.config.samplesPerFrame).toBe(1920);
    expect(decoder.config.upsampleStride).toBe(2);
    expect(decoder.config.numCodebooks).toBe(8);
  });

  it("decodes the 10 reference frames to the reference waveform within tolerance", async () => {
    const wave = await decoder.decode(frames);
    expect(wave.length).toBe(19200);
    const s = expectClose(wave, expected, "decoded", { maxAbs: 1e-4, relL2: 1e-5 });
    expect(s.maxAbs).toBeLessThan(1e-6); // measured 3e-8
  });

  it("streams frame by frame (and in uneven chunks) to the same samples as the whole decode", async () => {
    const whole = await decoder.decode(frames);
    for (const chunk of [1, 3, 10]) {
      const streamed = await pushAll(decoder, frames, chunk);
      expect(streamed.length).toBe(whole.length);
      expect(errorStats(streamed, whole).maxAbs, `chunk ${chunk}`).toBeLessThan(1e-6);
      expectClose(streamed, expected, `streamed, chunks of ${chunk}`, { maxAbs: 1e-4, relL2: 1e-5 });
    }
  });

  it("keeps a stream's state: a second stream starts fresh, and a stream continues where it stopped", async () => {
    const a = decoder.stream();
    const first = (await a.push(frames.slice(0, 4))).slice();
    const b = decoder.stream();
    expect(errorStats(await b.push(frames.slice(0, 4)), first).maxAbs).toBe(0);
    const rest = await a.push(frames.slice(4));
    expect(errorStats(rest, expected.subarray(4 * 1920)).maxAbs).toBeLessThan(1e-6);
    expect(a.frames).toBe(10);
  });

  it("refuses codes outside [0, 2048), the end-of-audio code, and frames of the wrong width", async () => {
    const bad = (frame: number[], pattern: RegExp) => expectCode(decoder.decode([frames[0], frame]), "INVALID_ARGUMENT", pattern);
    await bad([...frames[0].slice(0, 7), 2048], /frame 1, codebook 7: code 2048 .*end-of-audio/);
    await bad([-1, ...frames[0].slice(1)], /code -1 is outside/);
    await bad([1.5, ...frames[0].slice(1)], /code 1.5/);
    await bad(frames[0].slice(0, 7), /has 7 codes; Mimi decodes 8/);
    expect((await decoder.decode([])).length).toBe(0);
  });
});

describe("Mimi decoder: attention context, weight norm, loading errors", () => {
  const frames = referenceFrames();
  // 60 frames = 120 transformer steps, far past a context of 5.
  const long = Array.from({ length: 60 }, (_, t) => frames[t % frames.length].map((c, k) => (c * (t + 1) + 37 * k) % 2048));

  it("with a short attention context, one call, frame-by-frame and chunked decoding agree", async () => {
    // Layer scales ×100 so that the transformer (and so its context) visibly shapes the samples.
    const louder = (name: string, shape: number[], data: Float32Array) => [f32(name, shape, name.includes("layer_scale") ? data.map((x) => x * 100) : data)];
    const windowed = await MimiDecoder.load(variant({ context: 5 }, louder), { cacheDir: false, threads: 2 });
    const once = await pushAll(windowed, long, long.length); // the window comes from the mask alone
    const byFrame = await pushAll(windowed, long, 1); // … from the cache trimmed to 4 past steps
    const byChunk = await pushAll(windowed, long, 7);
    expect(errorStats(byFrame, once).relL2).toBeLessThan(1e-5);
    expect(errorStats(byChunk, once).relL2).toBeLessThan(1e-5);
    // and the context matters: with the full context the samples differ
    const full = await MimiDecoder.load(variant({}, louder), { cacheDir: false, threads: 2 });
    expect(errorStats(await full.decode(long), once).relL2).toBeGreaterThan(1e-4); // measured 7e-4; the three above agree to ~1e-7
    await Promise.all([windowed.release(), full.release()]);
  });

  it("folds weight-norm (weight_g, weight_v) convolutions into the same decoder", async () => {
    const dir = variant({}, (name, shape, data) => {
      if (!(name.startsWith("decoder.model.") && name.endsWith(".weight"))) return [f32(name, shape, data)];
      // v = w · s_r per output row (any positive scale), g = ‖w_r‖: g·v/‖v‖ = w.
      const rows = shape[0];
      const per = data.length / rows;
      const v = new Float32Array(data.length);
      const g = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        let sq = 0;
        for (let i = 0; i < per; i++) sq += data[r * per + i] ** 2;
        g[r] = Math.sqrt(sq);
        for (let i = 0; i < per; i++) v[r * per + i] = data[r * per + i] * (0.5 + r);
      }
      const base = name.slice(0, -".weight".length);
      return [f32(`${base}.weight_v`, shape, v), f32(`${base}.weight_g`, [rows, ...shape.slice(1).map(() => 1)], g)];
    });
    const d = await MimiDecoder.load(dir, { cacheDir: false, threads: 2 });
    expectClose(await d.decode(frames), ref.float("decoded"), "decoded (weight-norm checkpoint)", { maxAbs: 1e-4, relL2: 1e-5 });
    await d.release();
  });

  it("finds Mimi beside an LFM2-Audio config (Kyutai settings) and reports missing weights by code", async () => {
    expectCode(() => locateMimi(join(FIXTURES, "audio/tiny-lfm2-audio")), "FILE_NOT_FOUND");
    expectCode(() => locateMimi(join(FIXTURES, "audio/does-not-exist")), "FILE_NOT_FOUND");
    const kyutai = mkdtempSync(join(tmpdir(), "mimi-kyutai-"));
    copyFileSync(join(FIXTURES, "audio/tiny-lfm2-audio/config.json"), join(kyutai, "config.json"));
    copyFileSync(join(MIMI, "mimi.safetensors"), join(kyutai, "tokenizer-e351c8d8-checkpoint125.safetensors"));
    const found = locateMimi(kyutai);
    expect(found.weights).toMatch(/tokenizer-e351c8d8-checkpoint125\.safetensors$/);
    expect(found.config.seanet.dimension).toBe(512); // Kyutai's Mimi, not the LFM2-Audio config
    // … whose shapes the tiny weights do not have: a shape error naming the tensor, not a crash.
    await expectCode(MimiDecoder.load(kyutai, { cacheDir: false }), "TENSOR_SHAPE_MISMATCH");
  });

  it("validates the settings: unsupported options are refused by name", () => {
    const parse = (raw: unknown) => () => parseMimiConfig(raw, "test");
    expect(parse({})).not.toThrow();
    expectCode(parse({ seanet: { pad_mode: "replicate" } }), "CONFIG_INVALID", /seanet.pad_mode/);
    expectCode(parse({ transformer: { gating: "silu" } }), "CONFIG_INVALID", /transformer.gating/);
    expectCode(parse({ seanet: { ratios: [] } }), "CONFIG_INVALID", /seanet.ratios/);
    expectCode(parse({ num_codebooks: 40 }), "CONFIG_INVALID", /num_codebooks/);
    expectCode(parse({ frame_rate: 7 }), "CONFIG_INVALID", /frame_rate/);
  });
});
