/**
 * One vision benchmark configuration in its own process (so peak RSS is its own). Prints one JSON
 * line. Usage:
 *   node bin/run-ts.mjs bench/vision-worker.ts tile|tile-paired|first-token DIR PRECISION THREADS RUNS
 * RUNS = 0: only build the graphs into the cache and exit (the measured process loads them).
 *
 * tile: one random 32×32-patch crop (a 512×512 tile) through `ImageEncoder.encode`.
 * tile-paired: PRECISION is a list (fp32,q8,q4); one encoder each in this process, called in turn
 * every round, so the machine's drift weighs on all of them alike (samples: `<precision>Ms`).
 * first-token: a 1024×768 JPEG (made here, smooth gradients plus noise) from its bytes to the
 * first generated token through `VlModel`, timed per stage.
 */
import sharp from "sharp";
import type { Precision } from "../text-core/graph/precision.ts";
import { ImageEncoder, type PatchCrop } from "../vision/image-encoder.ts";
import { encodeVisionText } from "../vision/processor.ts";
import { type Lfm2VlConfig, loadLfm2VlConfig } from "../vision/vl-config.ts";
import { VlModel } from "../vision/vl-model.ts";
import { argmax, flushWrites, peakRssMb } from "./prompt.ts";

const [kind, dir, precisionArg, threadsArg, runsArg] = process.argv.slice(2);
const precision = precisionArg as Precision;
const [threads, runs] = [Number(threadsArg), Number(runsArg)];
const cacheDir = process.env.LFM_CACHE_DIR;
const ms = (t0: number) => performance.now() - t0;

/** Warm-up, then `runs` timed runs; prints the result line. */
async function report(loadMs: number, once: () => Promise<Record<string, number>>, release: () => Promise<void>, info?: Record<string, number>) {
  const samples = [];
  if (runs > 0) {
    flushWrites();
    await once();
    for (let r = 0; r < runs; r++) samples.push(await once());
  }
  await release();
  process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples, info })}\n`);
}

let seed = 11;
const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;

/** One random 512×512 tile's patches. */
function randomTile(config: Lfm2VlConfig): PatchCrop {
  const { numChannels, patchSize } = config.vision;
  const grid = 512 / patchSize;
  return { gridH: grid, gridW: grid, patches: Float32Array.from({ length: grid * grid * numChannels * patchSize ** 2 }, () => 2 * rand() - 1) };
}

if (kind === "tile") {
  const config = loadLfm2VlConfig(dir);
  const t0 = performance.now();
  const encoder = await ImageEncoder.load(dir, config, { precision, threads, cacheDir });
  const loadMs = ms(t0);
  const crop = randomTile(config);
  await report(
    loadMs,
    async () => {
      const start = performance.now();
      await encoder.encode([crop]);
      return { tileMs: ms(start) };
    },
    () => encoder.release(),
    { patches: crop.gridH * crop.gridW, imageTokens: encoder.tokenCount([crop]) },
  );
} else if (kind === "tile-paired") {
  const config = loadLfm2VlConfig(dir);
  const precisions = precisionArg.split(",") as Precision[];
  const t0 = performance.now();
  const encoders: ImageEncoder[] = [];
  for (const p of precisions) encoders.push(await ImageEncoder.load(dir, config, { precision: p, threads, cacheDir }));
  const loadMs = ms(t0);
  const crop = randomTile(config);
  await report(
    loadMs,
    async () => {
      const times: Record<string, number> = {};
      for (const [i, encoder] of encoders.entries()) {
        const start = performance.now();
        await encoder.encode([crop]);
        times[`${precisions[i]}Ms`] = ms(start);
      }
      return times;
    },
    async () => {
      for (const e of encoders) await e.release();
    },
  );
} else if (kind === "first-token") {
  const t0 = performance.now();
  const model = await VlModel.load(dir, { precision, threads, cacheDir });
  const loadMs = ms(t0);
  // bench/vision.ts labels the row with the default tower precision.
  if (model.encoder.precision !== "q8") throw new Error(`VlModel's default tower precision is ${model.encoder.precision}, not q8: update bench/vision.ts`);
  const [width, height] = [1024, 768];
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      rgb[i] = (x * 255) / width;
      rgb[i + 1] = (y * 255) / height;
      rgb[i + 2] = 128 + 100 * Math.sin(x / 37) * Math.cos(y / 23) + 20 * (rand() - 0.5);
    }
  }
  const jpeg = new Uint8Array(await sharp(rgb, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
  const messages = VlModel.describeMessages([jpeg]);
  const info: Record<string, number> = {};
  await report(
    loadMs,
    async () => {
      const start = performance.now();
      const image = await model.preprocess(jpeg);
      const preprocessMs = ms(start);
      const p0 = performance.now();
      const { ids } = encodeVisionText(model.tokenizer, model.renderChat(messages), [image]);
      const promptMs = ms(p0);
      const e0 = performance.now();
      const overrides = model.imageOverrides(ids, await model.encodeImages(image.crops));
      const towerMs = ms(e0);
      const state = model.runtime.newState(1);
      const f0 = performance.now();
      const logits = (await model.runtime.forward(state, { ids: [ids], overrides })).output;
      const prefillMs = ms(f0);
      const a0 = performance.now();
      argmax(logits);
      const firstTokenMs = ms(a0);
      Object.assign(info, { crops: image.crops.length, imageTokens: overrides.index.length, promptTokens: ids.length });
      return { preprocessMs, promptMs, towerMs, prefillMs, firstTokenMs, totalMs: ms(start) };
    },
    () => model.release(),
    info,
  );
} else {
  throw new Error(`unknown worker kind "${kind}" (tile, tile-paired, first-token)`);
}
