/**
 * `lfm audio-chat`: a spoken question (WAV, FLAC, MP3, Ogg) → the model's reply as text on stdout
 * and, with --out, speech in a 24 kHz WAV written as it is generated (Ctrl-C keeps what was
 * spoken so far as a valid WAV). With --json it prints the scriptable contract
 * `{"prompt_ids", "modality_flag", "steps", "text"}` (prompt_ids: the prompt's text stream, as
 * liquid-audio's `ChatState.text`; steps: `[id]` per text token, the 8 codes per audio frame).
 */
import { readAudioFile } from "../audio/audio-file.ts";
import type { SpeechMode } from "../audio/speech-generation.ts";
import { WavStreamWriter } from "../audio/wav-writer.ts";
import { LfmError } from "../text-core/errors.ts";
import { textForStream } from "./terminal-text.ts";
import { AudioChat, CHAT_AUDIO_SAMPLING, DEFAULT_CHAT_STEPS } from "../pipelines/audio-chat.ts";
import { bundledModel, modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, loadFlags, num, parse, precisionOf } from "./cli-kit.ts";


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
  --max-tokens N        Text tokens and audio frames together (default ${DEFAULT_CHAT_STEPS}; 12.5 frames per second).
  --temperature T       Text sampling temperature (default greedy); also the audio's unless
  --top-k K             --audio-temperature / --audio-top-k are given (audio default ${CHAT_AUDIO_SAMPLING.temperature} / ${CHAT_AUDIO_SAMPLING.topK}).
  --audio-temperature T, --audio-top-k K   Audio code sampling (0 = greedy).
  --seed S              Seed for reproducible sampling.
  --json                Print {"prompt_ids", "modality_flag", "steps", "text"} (and "out", "seconds" with --out).
  --precision P         q4 (default) | q8 | fp32 (reference parity) for the LM and depthformer.
  --max-minutes M       Refuse recordings longer than this (default 180; the encoder takes ~5 min at most).
  Also: --threads N, --cache-dir DIR, --no-cache.`;

function sampling(v: Record<string, string | boolean | undefined>, tempKey: string, topKey: string): { temperature?: number; topK?: number } {
  const temperature = num(v, tempKey, "float");
  if (temperature !== undefined && temperature < 0) throw new LfmError("INVALID_ARGUMENT", `--${tempKey} must be ≥ 0 (got ${temperature}).`);
  const topK = num(v, topKey, "int");
  if (topK !== undefined && topK < 1) throw new LfmError("INVALID_ARGUMENT", `--${topKey} must be at least 1 (got ${topK}).`);
  return { temperature, topK };
}

export const audioChatCommand: CliCommand = {
  name: "audio-chat",
  summary: "Spoken question → text and spoken reply (LFM2-Audio + Mimi).",
  help: HELP,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, {
      ...COMMON,
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
    });
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": pass the recording with --audio FILE (lfm audio-chat --help).`);
    const audioPath = v.audio;
    if (typeof audioPath !== "string" || audioPath === "") throw new LfmError("INVALID_ARGUMENT", "pass the spoken question with --audio FILE.");
    const mode = (v.mode as string | undefined) ?? "interleaved";
    if (mode !== "interleaved" && mode !== "sequential") throw new LfmError("INVALID_ARGUMENT", `--mode must be interleaved or sequential (got "${mode}").`);
    const maxSteps = num(v, "max-tokens", "int") ?? DEFAULT_CHAT_STEPS;
    if (maxSteps < 1) throw new LfmError("INVALID_ARGUMENT", `--max-tokens must be at least 1 (got ${maxSteps}).`);
    const text = sampling(v, "temperature", "top-k");
    const audioOwn = sampling(v, "audio-temperature", "audio-top-k");
    // --temperature / --top-k cover the audio too unless it has its own (so --temperature 0 is all greedy).
    const audio = {
      temperature: audioOwn.temperature ?? text.temperature ?? CHAT_AUDIO_SAMPLING.temperature,
      topK: audioOwn.topK ?? text.topK ?? CHAT_AUDIO_SAMPLING.topK,
    };
    const seed = num(v, "seed", "int");
    precisionOf(v); // a bad --precision fails before the recording is read
    const maxMinutes = num(v, "max-minutes", "float");
    if (maxMinutes !== undefined && !(maxMinutes > 0)) throw new LfmError("INVALID_ARGUMENT", `--max-minutes must be positive (got ${maxMinutes}).`);
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
        ...loadFlags(v),
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
    try {
      if (chat.mimi && wav && chat.mimi.config.sampleRateHz !== wav.sampleRateHz) {
        throw new LfmError("CONFIG_INVALID", `this Mimi codec runs at ${chat.mimi.config.sampleRateHz} Hz; lfm audio-chat writes 24 kHz WAVs.`);
      }
      const prompt = await chat.prompt(clip, v.system as string | undefined);
      promptIds = prompt.textIds;
      modality = prompt.modality;
      const started = performance.now();
      try {
        for await (const e of chat.reply(prompt, { mode: mode as SpeechMode, maxSteps, text, audio, seed, signal })) {
          if (e.kind === "text") {
            if (e.id !== null) steps.push([e.id]);
            reply += e.text;
            if (!v.json) process.stdout.write(textForStream(e.text, process.stdout.isTTY));
            continue;
          }
          steps.push(e.codes);
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
    if (v.json) {
      const extra = wav && frames > 0 ? { out, seconds } : {};
      process.stdout.write(`${JSON.stringify({ prompt_ids: promptIds, modality_flag: modality, steps, text: reply, ...extra })}\n`);
    }
    return aborted ? 130 : 0;
  },
};
