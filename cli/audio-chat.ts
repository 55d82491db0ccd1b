/**
 * `lfm audio-chat`: a spoken question (WAV, FLAC, MP3, Ogg) → the model's reply as text on stdout
 * and, with --out, speech in a 24 kHz WAV written as it is generated (Ctrl-C keeps what was
 * spoken so far as a valid WAV). With --json it prints the scriptable contract
 * `{"prompt_ids", "modality_flag", "steps", "text", "finish_reason", "usage", "timings"}`
 * (prompt_ids: the prompt's text stream, as liquid-audio's `ChatState.text`; steps: `[id]` per text
 * token, the 8 codes per audio frame); without --json, a summary line on stderr.
 */
import { readAudioFile } from "../audio/audio-file.ts";
import type { SpeechMode } from "../audio/speech-generation.ts";
import { WavStreamWriter } from "../audio/wav-writer.ts";
import { LfmError } from "../text-core/errors.ts";
import { textForStream } from "./terminal-text.ts";
import { GenerationClock, QUIET, printSummary, summaryJson } from "./generation-output.ts";
import { AudioChat, CHAT_AUDIO_SAMPLING, DEFAULT_CHAT_STEPS } from "../pipelines/audio-chat.ts";
import { bundledModel, modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, RANGES, STRUCTURED, STRUCTURED_HELP, type Values, checkComplete, loadFlags, num, parse, structuredFlags } from "./cli-kit.ts";

const HELP = `lfm audio-chat --model DIR --audio FILE [--mode interleaved|sequential] [--out reply.wav] [options]
  Answers a spoken question with an LFM2-Audio checkpoint (liquid-audio folder, e.g.
  LiquidAI/LFM2-Audio-1.5B): the recording (WAV, FLAC, MP3, Ogg Opus/Vorbis) is the user turn, the
  reply's text streams to stdout, its speech is decoded by the Mimi codec into --out. On a terminal,
  control characters in the text show as escapes (\\x1b); piped or redirected output keeps them.
  --mode M              interleaved (default: text and audio in turns of 6 tokens / 12 frames) or
                        sequential (text, then <|audio_start|> and audio).
  --system TEXT         System prompt (default "Respond with interleaved text and audio.").
  --out F.wav           Write the spoken reply (24 kHz mono 16-bit), as it is generated.
  --mimi DIR            Mimi codec folder or .safetensors file (default: the --model folder).
  --max-tokens N        Text tokens and audio frames together (default ${DEFAULT_CHAT_STEPS}; 12.5 frames per second;
                        1 to ${RANGES.audioSteps.max}).
  --temperature T       Text sampling temperature (default greedy); also the audio's unless
  --top-k K             --audio-temperature / --audio-top-k are given (audio default ${CHAT_AUDIO_SAMPLING.temperature} / ${CHAT_AUDIO_SAMPLING.topK}).
  --audio-temperature T, --audio-top-k K   Audio code sampling (0 = greedy).
                        Temperatures 0 to ${RANGES.temperature.max}; top-k 1 to ${RANGES.audioTopK.max}.
  --seed S              Seed for reproducible sampling (0 to ${RANGES.seed.max}).
  --json                Print {"prompt_ids", "modality_flag", "steps", "text", "finish_reason"}
                        (and "out", "seconds" with --out); finish_reason is "stop" or "length";
                        then "usage" and "timings" as in lfm generate --help (tokens: text tokens
                        and audio frames, as --max-tokens counts them).
  --quiet, -q           No summary line on stderr after the reply (tokens, tok/s, time to first
                        token, total time, finish reason; lfm generate --help).
  --precision P         q4 (default) | q8 | fp32 (reference parity) for the LM and depthformer.
  --max-minutes M       Refuse recordings longer than this (default 180; above 0, at most ${RANGES.maxMinutes.max};
                        the encoder takes ~5 min at most).
  Also: --threads N, --cache-dir DIR, --no-cache.
${STRUCTURED_HELP.replace("the reply is constrained", "the reply's text is constrained")}`;

function sampling(v: Values, tempKey: string, topKey: string): { temperature?: number; topK?: number } {
  return { temperature: num(v, tempKey, RANGES.temperature), topK: num(v, topKey, RANGES.audioTopK) };
}

const AUDIO_CHAT_OPTIONS = {
  ...COMMON,
  ...STRUCTURED,
  audio: { type: "string" },
  mode: { type: "string" },
  system: { type: "string" },
  out: { type: "string" },
  mimi: { type: "string" },
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "audio-temperature": { type: "string" },
  "audio-top-k": { type: "string" },
  seed: { type: "string" },
  "max-minutes": { type: "string" },
  ...QUIET,
} as const;

export const audioChatCommand: CliCommand = {
  name: "audio-chat",
  summary: "Spoken question → text and spoken reply (LFM2-Audio + Mimi).",
  help: HELP,
  options: AUDIO_CHAT_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, AUDIO_CHAT_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": pass the recording with --audio FILE (lfm audio-chat --help).`);
    const audioPath = v.audio;
    if (typeof audioPath !== "string" || audioPath === "") throw new LfmError("INVALID_ARGUMENT", "pass the spoken question with --audio FILE.");
    const mode = (v.mode as string | undefined) ?? "interleaved";
    if (mode !== "interleaved" && mode !== "sequential") throw new LfmError("INVALID_ARGUMENT", `--mode must be interleaved or sequential (got "${mode}").`);
    const maxSteps = num(v, "max-tokens", RANGES.audioSteps) ?? DEFAULT_CHAT_STEPS;
    const text = sampling(v, "temperature", "top-k");
    const audioOwn = sampling(v, "audio-temperature", "audio-top-k");
    // --temperature / --top-k cover the audio too unless it has its own (so --temperature 0 is all greedy).
    const audio = {
      temperature: audioOwn.temperature ?? text.temperature ?? CHAT_AUDIO_SAMPLING.temperature,
      topK: audioOwn.topK ?? text.topK ?? CHAT_AUDIO_SAMPLING.topK,
    };
    const seed = num(v, "seed", RANGES.seed);
    const load = loadFlags(v); // a bad --precision or --threads fails before the recording is read
    const maxMinutes = num(v, "max-minutes", RANGES.maxMinutes);
    const structured = structuredFlags(v);
    const out = v.out as string | undefined;
    if (out === "") throw new LfmError("INVALID_ARGUMENT", "--out needs a file name.");

    // The recording first: a bad file fails before any model is built.
    const clip = await readAudioFile(audioPath, { maxSeconds: maxMinutes === undefined ? undefined : maxMinutes * 60 });
    const modelDir = modelOrBundled(v, "audio");
    const mimiPath = (v.mimi as string | undefined) ?? (v.model === undefined ? bundledModel("mimi") : undefined);
    const tty = process.stderr.isTTY && !v.json;
    // The WAV before the models: an unwritable destination fails before anything is built.
    const wav = out === undefined ? undefined : WavStreamWriter.create(out, { sampleRateHz: 24000 });
    let chat: AudioChat;
    try {
      chat = await AudioChat.load(modelDir, {
        mimi: out === undefined ? undefined : (mimiPath ?? modelDir),
        ...load,
      });
    } catch (e) {
      wav?.discard();
      throw e;
    }
    const steps: number[][] = [];
    let reply = "";
    let frames = 0;
    let aborted = false;
    let promptIds: number[] = [];
    let modality: number[] = [];
    let finishReason: "stop" | "length" | undefined;
    let textComplete: boolean | undefined;
    // From before the prompt is built: the time to first token includes encoding the recording.
    const clock = new GenerationClock();
    try {
      if (chat.mimi && wav && chat.mimi.config.sampleRateHz !== wav.sampleRateHz) {
        throw new LfmError("CONFIG_INVALID", `this Mimi codec runs at ${chat.mimi.config.sampleRateHz} Hz; lfm audio-chat writes 24 kHz WAVs.`);
      }
      const prompt = await chat.prompt(clip, v.system as string | undefined);
      promptIds = prompt.textIds;
      modality = prompt.modality;
      const started = performance.now();
      clock.promptTokens = modality.length; // every position the LM reads: text and the recording's frames
      try {
        for await (const e of chat.reply(prompt, { mode: mode as SpeechMode, maxSteps, text, audio, seed, signal, responseFormat: structured.responseFormat })) {
          if (e.kind === "end") {
            finishReason = e.finishReason;
            textComplete = e.textComplete;
            continue;
          }
          if (e.kind === "text") {
            if (e.id !== null) {
              steps.push([e.id]);
              clock.token();
            }
            reply += e.text;
            if (!v.json) process.stdout.write(textForStream(e.text, process.stdout.isTTY));
            continue;
          }
          steps.push(e.codes);
          clock.token();
          if (e.samples && wav) {
            wav.write(e.samples);
            frames++;
            if (tty) {
              const elapsed = (performance.now() - started) / 1000;
              process.stderr.write(`\x1b[s\r\x1b[2K\x1b[2m${wav.seconds.toFixed(2)} s of speech, ${(elapsed / wav.seconds).toFixed(2)}× real time\x1b[0m\x1b[u`);
            }
          }
        }
      } catch (err) {
        if (!(err instanceof LfmError && err.code === "ABORTED")) throw err;
        aborted = true;
      }
      clock.stop();
    } catch (err) {
      wav?.discard();
      await chat.release();
      throw err;
    }
    await chat.release();
    if (!v.json) process.stdout.write("\n");
    let seconds = 0;
    if (wav) {
      seconds = wav.seconds;
      if (frames === 0) {
        wav.discard();
        process.stderr.write(`the reply had no speech (${steps.length} steps); ${out} was not written.\n`);
      } else {
        wav.finish();
        if (!v.json) process.stderr.write(`${aborted ? "stopped: " : ""}wrote ${seconds.toFixed(2)} s (${frames} frames) to ${out}\n`);
      }
    }
    const stats = clock.stats(finishReason ?? "cancelled");
    if (v.json) {
      const extra = wav && frames > 0 ? { out, seconds } : {};
      process.stdout.write(`${JSON.stringify({ prompt_ids: promptIds, modality_flag: modality, steps, text: reply, finish_reason: stats.finishReason, ...extra, ...summaryJson(stats) })}\n`);
    } else {
      printSummary(stats, Boolean(v.quiet));
    }
    if (aborted) return 130;
    // Steps may run out in the speech after the text was complete: only an unfinished text is an error.
    checkComplete(structured, textComplete === false ? "length" : "stop");
    return 0;
  },
};
