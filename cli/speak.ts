/**
 * `lfm speak`: text → a 24 kHz mono WAV through an LFM2-Audio checkpoint and the Mimi codec.
 * Frames are decoded and appended to the WAV as they are generated; the file appears under its
 * name only when complete — Ctrl-C keeps what was spoken so far as a valid WAV (or writes nothing
 * if no audio came yet). With --json prints
 * `{"out", "sample_rate", "frames", "seconds", "prompt_ids", "text_ids", "codes"}`.
 */
import { WavStreamWriter } from "../audio/wav-writer.ts";
import { LfmError } from "../text-core/errors.ts";
import { bundledModel, modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, RANGES, loadFlags, num, parse } from "./cli-kit.ts";
import { MAX_INPUT_BYTES, textFromFlags } from "./input-source.ts";
import { DEFAULT_MAX_FRAMES, Speaker } from "../pipelines/speak.ts";


const HELP = `lfm speak --model DIR (--text TEXT | --text-file F) --out F.wav [options]
  Speaks TEXT with an LFM2-Audio checkpoint (liquid-audio folder, e.g. LiquidAI/LFM2-Audio-1.5B)
  as liquid-audio's TTS recipe: system prompt "Perform TTS.", sequential generation, audio frames
  decoded by the Mimi codec (Kyutai's file ships in the checkpoint folder) into a 24 kHz mono
  16-bit WAV, written as it is generated. Ctrl-C keeps what was spoken so far.
  --text-file F        The words from a file ("-": standard input): a regular UTF-8 file of at
                       most ${MAX_INPUT_BYTES / 2 ** 20} MiB; its final line break is dropped.
  --mimi DIR           Mimi codec folder or .safetensors file (default: the --model folder).
  --max-frames N       Audio frames at most, 12.5 per second (default ${DEFAULT_MAX_FRAMES}; 1 to ${RANGES.audioSteps.max}).
  --temperature T      Audio sampling temperature (default 0.8; 0 = greedy; at most ${RANGES.temperature.max}).
  --top-k K            Audio top-k (default 64; 1 to ${RANGES.audioTopK.max}).
  --seed S             Seed for reproducible sampling (0 to ${RANGES.seed.max}).
  --system TEXT        Another system prompt (default "Perform TTS."; LFM2.5-Audio voices:
                       "Perform TTS. Use the UK male voice." and the like).
  --force-audio-start  Start the reply with <|audio_start|> instead of letting the model choose
                       it (the bundled tiny random model never does).
  --json               Print {"out", "sample_rate", "frames", "seconds", "prompt_ids", "text_ids", "codes"}.
  --precision P        q4 (default) | q8 | fp32 for the LM and depthformer (Mimi is fp32).
  Also: --threads N, --cache-dir DIR, --no-cache.`;

const SPEAK_OPTIONS = {
  ...COMMON,
  text: { type: "string" },
  "text-file": { type: "string" },
  out: { type: "string" },
  mimi: { type: "string" },
  "max-frames": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  seed: { type: "string" },
  system: { type: "string" },
  "force-audio-start": { type: "boolean" },
} as const;

export const speakCommand: CliCommand = {
  name: "speak",
  summary: "Text to speech into a WAV file (LFM2-Audio + Mimi).",
  help: HELP,
  options: SPEAK_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, SPEAK_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": pass the words with --text "..." (lfm speak --help).`);
    const out = v.out;
    if (typeof out !== "string" || out === "") throw new LfmError("INVALID_ARGUMENT", "pass the WAV to write with --out F.wav.");
    const maxFrames = num(v, "max-frames", RANGES.audioSteps) ?? DEFAULT_MAX_FRAMES;
    const temperature = num(v, "temperature", RANGES.temperature) ?? 0.8;
    const topK = num(v, "top-k", RANGES.audioTopK) ?? 64;
    const seed = num(v, "seed", RANGES.seed);
    const load = loadFlags(v);
    const text = (await textFromFlags(v, [{ text: "text", file: "text-file" }]))?.text;
    if (text === undefined || text.trim() === "") throw new LfmError("EMPTY_TEXT", "nothing to speak: pass --text \"...\" or --text-file F.");

    const modelDir = modelOrBundled(v, "audio");
    const mimiPath = (v.mimi as string | undefined) ?? (v.model === undefined ? bundledModel("mimi") : undefined);
    const tty = process.stderr.isTTY && !v.json;
    // The WAV first: an unwritable destination fails before any model is built.
    const wav = WavStreamWriter.create(out, { sampleRateHz: 24000 });
    let speaker: Speaker;
    try {
      speaker = await Speaker.load(modelDir, { mimi: mimiPath, ...load });
    } catch (e) {
      wav.discard();
      throw e;
    }
    if (speaker.mimi.config.sampleRateHz !== wav.sampleRateHz) {
      wav.discard();
      await speaker.release();
      throw new LfmError("CONFIG_INVALID", `this Mimi codec runs at ${speaker.mimi.config.sampleRateHz} Hz; lfm speak writes 24 kHz WAVs.`);
    }
    const rate = wav.sampleRateHz;
    const system = v.system as string | undefined;
    let promptIds: number[];
    try {
      promptIds = speaker.promptIds(text, system);
    } catch (e) {
      wav.discard();
      await speaker.release();
      throw e;
    }
    const textIds: number[] = [];
    const codes: number[][] = [];
    const started = performance.now();
    let aborted = false;
    try {
      const events = speaker.speak(text, {
        maxFrames,
        audio: { temperature, topK },
        seed,
        system,
        forceAudioStart: Boolean(v["force-audio-start"]),
        signal,
      });
      for await (const e of events) {
        if (e.kind === "text") {
          textIds.push(e.id);
          continue;
        }
        wav.write(e.samples);
        codes.push(e.codes);
        if (tty) {
          const elapsed = (performance.now() - started) / 1000;
          process.stderr.write(`\r\x1b[2K${wav.seconds.toFixed(2)} s of audio (${codes.length} frames), ${(elapsed / wav.seconds).toFixed(2)}× real time`);
        }
      }
    } catch (err) {
      if (!(err instanceof LfmError && err.code === "ABORTED")) {
        wav.discard();
        await speaker.release();
        throw err;
      }
      aborted = true;
    }
    if (tty) process.stderr.write("\n");
    await speaker.release();
    if (codes.length === 0) {
      wav.discard();
      if (aborted) throw new LfmError("ABORTED", `cancelled before any audio was generated; ${out} was not written.`);
      const ended = textIds.at(-1) === 7 ? "ended its reply" : "stopped at the step limit";
      throw new LfmError(
        "AUDIO_NOT_GENERATED",
        `the model ${ended} without speaking (${textIds.length} text tokens, no audio frames); ${out} was not written. ` +
          `Check the system prompt, or pass --force-audio-start to make the reply start with audio.`,
      );
    }
    wav.finish();
    if (v.json) {
      process.stdout.write(`${JSON.stringify({ out, sample_rate: rate, frames: codes.length, seconds: wav.seconds, prompt_ids: promptIds, text_ids: textIds, codes })}\n`);
    } else {
      process.stderr.write(`${aborted ? "stopped: " : ""}wrote ${wav.seconds.toFixed(2)} s (${codes.length} frames) to ${out}\n`);
    }
    return aborted ? 130 : 0;
  },
};
