/**
 * `lfm agent`: a spoken assistant with tools (pipelines/agent.ts). Each `--audio` file is one
 * turn: LFM2-Audio transcribes it, the LFM2 text model answers or calls the tools of
 * `--tools tools.mjs`, the reply is printed and, with --out-dir, spoken into turn-N.wav as it is
 * generated. With --json, one event per line.
 */
import { createReadStream, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { readAudioFile } from "../audio/audio-file.ts";
import type { AudioClip } from "../audio/wav.ts";
import { WavStreamWriter } from "../audio/wav-writer.ts";
import { LfmError } from "../text-core/errors.ts";
import { Agent, DEFAULT_AGENT_SYSTEM, DEFAULT_MAX_TOOL_ROUNDS, type AgentEvent } from "../pipelines/agent.ts";
import { DEFAULT_TOOL_TIMEOUT_MS, MAX_TOOL_RESULT_CHARS, loadToolsModule, toolDefinition } from "../pipelines/agent-tools.ts";
import { DEFAULT_MAX_FRAMES } from "../pipelines/speak.ts";
import { VoiceActivityDetector, readPcmS16le } from "../pipelines/vad.ts";
import { bundledModel, modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, RANGES, SAMPLING, SAMPLING_HELP, TOOL_CHOICE, type Values, checkGenerationFlags, generationOptions, loadFlags, num, parse, structuredFlags } from "./cli-kit.ts";
import { floatRange, intRange } from "./flags.ts";
import { stdinIsTerminal } from "./input-source.ts";
import { terminalLine, textForStream } from "./terminal-text.ts";

const TOOL_TIMEOUT_RANGE = floatRange(0, 3600, true);
const TOOL_ROUNDS_RANGE = intRange(0, 16);
const VAD_THRESHOLD_RANGE = floatRange(-120, 0);
/** `--pcm` input: 16 kHz mono s16le, the encoder's own rate. */
const PCM_RATE = 16000;
/** Frames per audio_chunk event: about a second of speech (12.5 frames per second). */
const FRAMES_PER_CHUNK = 12;

const AGENT_OPTIONS = {
  ...COMMON,
  ...SAMPLING,
  ...TOOL_CHOICE,
  "audio-model": { type: "string" },
  tools: { type: "string" },
  audio: { type: "string", multiple: true },
  pcm: { type: "string" },
  "vad-threshold": { type: "string" },
  "out-dir": { type: "string" },
  "pcm-out": { type: "string" },
  mimi: { type: "string" },
  system: { type: "string" },
  yes: { type: "boolean" },
  "tool-timeout": { type: "string" },
  "max-tool-rounds": { type: "string" },
  "max-frames": { type: "string" },
} as const;

const HELP = `lfm agent --audio-model DIR --model LM --tools tools.mjs (--audio F [--audio F ...] | --pcm -) [--out-dir DIR] [options]
  A spoken assistant with tools. Each --audio recording (WAV, FLAC, MP3, Ogg) is one turn, in order:
  LFM2-Audio (--audio-model) transcribes it; the LFM2 text model (--model) reads the conversation
  with the tools in its chat template and answers or calls tools; each call's arguments are checked
  against the tool's schema, the tool runs, its result goes back to the model as a tool message
  (several calls and up to --max-tool-rounds rounds per turn); the final answer is printed and, with
  --out-dir, spoken by LFM2-Audio into DIR/turn-N.wav (24 kHz), written as frames are generated.
  Without --audio-model and --model: the bundled tiny random models (plumbing, not answers). With a
  real --audio-model, --model is required (an LFM2 text checkpoint with tool calling).
  --tools tools.mjs      A JavaScript module whose default export is an array of tools:
                         { name, description, parameters (JSON Schema), run: async (args, { signal })
                         => result, confirm?: true }. A module that fails to import, or a schema that
                         constrained calls cannot enforce, is an error naming the tool.
  --tool-choice C        "required" (the first round is one call list in LFM2's call syntax), "auto"
                         (text or a call, constrained once started) or a tool's NAME. Later rounds
                         are "auto"; without the flag, calls are unconstrained (still validated).
  --tool-timeout S       Seconds one call may run (default ${DEFAULT_TOOL_TIMEOUT_MS / 1000}; above 0, at most ${TOOL_TIMEOUT_RANGE.max}). A call
                         that throws or times out is answered to the model as an error; a result
                         over ${MAX_TOOL_RESULT_CHARS / 1024} KiB of JSON is cut, with a note. A tool that ignores
                         its signal after a timeout keeps lfm running until it settles.
  --max-tool-rounds N    Rounds of tool calls per turn (default ${DEFAULT_MAX_TOOL_ROUNDS}; 0 to ${TOOL_ROUNDS_RANGE.max}); the round after
                         them answers without calling.
  --yes                  Run confirm: true tools without asking. Otherwise the agent asks "Run NAME
                         with ARGS? Say yes or no." as its reply, and the NEXT --audio file is the
                         answer (yes words in English, German, French, Spanish, Italian, ... ; anything
                         else is no).
  --audio F              A turn's recording (repeatable; the conversation carries over).
  --pcm -                Live input instead: 16 kHz mono 16-bit little-endian PCM from standard input
                         (or a file/FIFO), e.g. arecord -f S16_LE -r 16000 -c 1 -t raw | lfm agent ...
                         Turns are cut by an energy voice detector: speech after a pause of 0.7 s
                         (or 30 s of speech) is a turn; the stream's end closes an open turn.
                         Speech while a reply is being spoken stops the reply (barge-in; what was
                         spoken is kept) and becomes the next turn.
  --vad-threshold DB     Frames quieter than DB dBFS are never speech (default -45; ${VAD_THRESHOLD_RANGE.min} to ${VAD_THRESHOLD_RANGE.max});
                         speech must also be 10 dB above the tracked noise floor.
  --out-dir DIR          Write each spoken reply to DIR/turn-N.wav (DIR is created). Without it the
                         replies are text only.
  --pcm-out -            Also write each spoken reply to standard output as raw 24 kHz mono 16-bit
                         little-endian PCM, as it is generated, for a player:
                         ... --pcm-out - | aplay -f S16_LE -r 24000 -c 1. The reply's text then goes to
                         stderr (not with --json, whose lines need standard output).
  --mimi DIR             Mimi codec folder or .safetensors file (default: the --audio-model folder).
  --max-frames N         Audio frames per spoken reply at most (default ${DEFAULT_MAX_FRAMES}, 12.5 per second; 1 to ${RANGES.audioSteps.max}).
  --system TEXT          The text model's system prompt; default:
                         "${DEFAULT_AGENT_SYSTEM}"
  --json                 One event per line, each with a "type": "transcript" {turn, text, ms},
                         "tool_call" {turn, round, name, arguments}, "tool_result" {turn, round, name,
                         ok, content, truncated, ms}, "tool_call_error" {turn, round, raw, message},
                         "confirm" {turn, name, arguments, question}, "confirmation" {turn, name,
                         confirmed}, "reply_text" {turn, text}, "audio_chunk" {turn, path,
                         start_seconds, seconds} (about 1 s each; the WAV is complete at the turn's
                         timings), "timings" {turn, transcribe_ms, first_reply_token_ms,
                         first_audio_sample_ms, total_ms, prompt_tokens, reused_tokens} (times from
                         the start of the turn; the text model's prompt tokens, and how many of them
                         were continued from its kept decode state instead of run again); with --pcm,
                         "barge_in" {turn, spoken_seconds, stopped_after_ms, samples_after} when
                         speech stopped a reply (samples_after: reply samples made after it was heard).
  Without --json: the reply on stdout; what was heard, the tool calls and results and the timings
  on stderr.
${SAMPLING_HELP.replace("Sampling (", "Sampling of the text model (")}
  --seed also seeds the speech's frame sampling (LFM2-Audio's TTS recipe: temperature 0.8, top-k 64).
  --precision P, --threads N, --cache-dir DIR, --no-cache: for both models (lfm --help).`;

export const agentCommand: CliCommand = {
  name: "agent",
  summary: "Spoken turns → tool calls → spoken replies (LFM2-Audio + an LFM2 text model).",
  help: HELP,
  options: AGENT_OPTIONS,
  async run(args: string[], signal: AbortSignal): Promise<number> {
    const { values: v, positionals } = parse(args, AGENT_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}": pass each recording with --audio FILE (lfm agent --help).`);
    const audioPaths = (v.audio as unknown as string[] | undefined) ?? [];
    const pcm = v.pcm as string | undefined;
    if (pcm !== undefined && audioPaths.length > 0) throw new LfmError("INVALID_ARGUMENT", "give --audio files or a --pcm stream, not both.");
    if (pcm === "") throw new LfmError("INVALID_ARGUMENT", "--pcm needs - (standard input) or a file name.");
    if (pcm === "-" && stdinIsTerminal()) throw new LfmError("INVALID_ARGUMENT", "--pcm - reads raw PCM from standard input, which is a terminal: pipe a recorder in (arecord -f S16_LE -r 16000 -c 1 -t raw | lfm agent ...).");
    if (pcm === undefined && (audioPaths.length === 0 || audioPaths.some((p) => p === ""))) throw new LfmError("INVALID_ARGUMENT", "pass each turn's recording with --audio FILE (or a live stream with --pcm -).");
    const vadThreshold = num(v, "vad-threshold", VAD_THRESHOLD_RANGE);
    if (typeof v.tools !== "string" || v.tools === "") throw new LfmError("INVALID_ARGUMENT", "pass the tools with --tools tools.mjs (a module whose default export is an array of tools).");
    checkGenerationFlags(v);
    const load = loadFlags(v);
    const toolTimeout = num(v, "tool-timeout", TOOL_TIMEOUT_RANGE);
    const maxToolRounds = num(v, "max-tool-rounds", TOOL_ROUNDS_RANGE);
    const maxFrames = num(v, "max-frames", RANGES.audioSteps);
    if (v["audio-model"] !== undefined && v.model === undefined) {
      throw new LfmError("MODEL_REQUIRED", "give --model DIR (an LFM2 text checkpoint with tool calling) with --audio-model: the text model decides the tool calls.");
    }
    const outDir = outputFolder(v);
    const pcmOut = v["pcm-out"];
    if (pcmOut !== undefined && pcmOut !== "-") throw new LfmError("INVALID_ARGUMENT", `--pcm-out takes - (standard output; write files with --out-dir); got "${String(pcmOut)}".`);
    if (pcmOut !== undefined && v.json) throw new LfmError("INVALID_ARGUMENT", "--pcm-out - and --json both need standard output; pick one.");
    const output: TurnOutput = { outDir, pcm: pcmOut === "-", json: Boolean(v.json) };
    // The tools before any model: a bad module fails in milliseconds.
    const tools = await loadToolsModule(v.tools);
    const structured = structuredFlags(v, tools.map(toolDefinition));
    const clips: AudioClip[] = [];
    for (const path of audioPaths) clips.push(await readAudioFile(path));
    const audioDir = modelOrBundled(v, "audio", "audio-model");
    const textDir = modelOrBundled(v, "text");
    const mimi = (v.mimi as string | undefined) ?? (v["audio-model"] === undefined ? bundledModel("mimi") : undefined);
    const { stopTokenIds, signal: _turnSignal, ...generation } = generationOptions({ stopTokenIds: [] }, v, signal);
    const agent = await Agent.load(
      audioDir,
      textDir,
      {
        tools,
        system: v.system as string | undefined,
        toolChoice: structured.toolChoice,
        maxToolRounds,
        toolTimeoutMs: toolTimeout === undefined ? undefined : toolTimeout * 1000,
        autoConfirm: Boolean(v.yes),
        generation: { ...generation, ...(stopTokenIds && stopTokenIds.length > 0 ? { stopTokenIds } : {}) },
        speech: { maxFrames, seed: generation.seed },
      },
      { ...load, mimi, speak: outDir !== undefined || output.pcm },
    );
    try {
      if (pcm !== undefined) {
        const heard = await runLive(agent, pcm, vadThreshold, output, signal);
        if (heard === "aborted") return 130;
        if (heard === 0) process.stderr.write("the stream ended without any speech (no turn).\n");
      }
      for (const [i, clip] of clips.entries()) {
        const aborted = await runTurn(agent, clip, i + 1, output, signal);
        if (aborted) return 130;
      }
      const waiting = agent.awaitingConfirmation;
      if (waiting) process.stderr.write(`${waiting.name} was not run: its confirmation had no answer (the next --audio file answers it).\n`);
      return 0;
    } finally {
      await agent.release();
    }
  },
};

/** --out-dir, created when missing; OUTPUT_UNWRITABLE when it is a file or cannot be made. */
function outputFolder(v: Values): string | undefined {
  const dir = v["out-dir"];
  if (dir === undefined) return undefined;
  if (typeof dir !== "string" || dir === "") throw new LfmError("INVALID_ARGUMENT", "--out-dir needs a folder name.");
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new LfmError("OUTPUT_UNWRITABLE", `cannot create --out-dir ${dir}: ${(e as Error).message}.`, { cause: e });
  }
  if (!statSync(dir).isDirectory()) throw new LfmError("OUTPUT_UNWRITABLE", `--out-dir ${dir} is not a folder.`);
  return dir;
}

/**
 * Barge-in state of the turn being answered from a live stream: once its reply's audio has
 * started, speech in the stream aborts it.
 */
interface BargeIn {
  controller: AbortController;
  /** The reply's audio has started. */
  talking: boolean;
  /** performance.now() when speech was detected during the reply; null while none was. */
  at: number | null;
  /** Reply samples that came out after the detection (the reply's overrun, measured in samples). */
  samplesAfter: number;
}

/**
 * `--pcm`: the stream is read all along (so the voice detector hears the user while the agent
 * talks); turns it completes are answered in order. Speech detected while a reply is being spoken
 * stops that reply (barge-in): what was spoken is kept, and the speech becomes the next turn.
 * Returns the number of turns, or "aborted".
 */
async function runLive(agent: Agent, pcm: string, thresholdDb: number | undefined, output: TurnOutput, signal: AbortSignal): Promise<number | "aborted"> {
  const source = pcm === "-" ? process.stdin : createReadStream(pcm);
  const vad = new VoiceActivityDetector(PCM_RATE, { thresholdDb });
  const queue: Float32Array[] = [];
  let ended = false;
  let readError: unknown;
  let wake: (() => void) | undefined;
  let current: BargeIn | undefined;
  const reader = (async () => {
    try {
      for await (const block of readPcmS16le(source)) {
        queue.push(...vad.push(block));
        if (current?.talking && current.at === null && vad.speaking) {
          current.at = performance.now();
          current.controller.abort();
        }
        wake?.();
      }
      const last = vad.flush();
      if (last) queue.push(last);
    } catch (e) {
      readError = e;
    } finally {
      ended = true;
      wake?.();
    }
  })();
  let turns = 0;
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      while (queue.length === 0 && !ended && !signal.aborted) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      if (signal.aborted) return "aborted";
      const samples = queue.shift();
      if (samples === undefined) break;
      current = { controller: new AbortController(), talking: false, at: null, samplesAfter: 0 };
      if (await runTurn(agent, { samples, sampleRateHz: PCM_RATE }, ++turns, output, signal, current)) return "aborted";
      current = undefined;
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (!ended) source.destroy();
  }
  await reader;
  if (readError !== undefined) {
    if (readError instanceof LfmError) throw readError;
    throw new LfmError("FILE_NOT_FOUND", `cannot read the --pcm stream ${pcm === "-" ? "(standard input)" : pcm}: ${(readError as Error).message}.`, { cause: readError });
  }
  return turns;
}

/** Where a turn's reply goes: WAVs in `outDir`, raw PCM on stdout (`pcm`), --json event lines. */
interface TurnOutput {
  outDir?: string;
  pcm: boolean;
  json: boolean;
}

/** One turn, printed as it happens; true when Ctrl-C stopped it. */
async function runTurn(agent: Agent, clip: Pick<AudioClip, "samples" | "sampleRateHz">, turn: number, output: TurnOutput, signal: AbortSignal, barge?: BargeIn): Promise<boolean> {
  const { outDir, json } = output;
  const path = outDir === undefined ? undefined : join(outDir, `turn-${turn}.wav`);
  let wav: WavStreamWriter | undefined;
  let chunkStart = 0;
  let chunkFrames = 0;
  const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);
  const flushChunk = () => {
    if (!wav || chunkFrames === 0) return;
    if (json) emit({ type: "audio_chunk", turn, path, start_seconds: round3(chunkStart), seconds: round3(wav.seconds - chunkStart) });
    chunkStart = wav.seconds;
    chunkFrames = 0;
  };
  try {
    const turnSignal = barge ? AbortSignal.any([signal, barge.controller.signal]) : signal;
    for await (const e of agent.turn(clip, { signal: turnSignal })) {
      if (e.type === "audio") {
        if (barge) {
          barge.talking = true;
          if (barge.at !== null) barge.samplesAfter += e.samples.length;
        }
        if (output.pcm) process.stdout.write(pcmS16le(e.samples));
        if (path === undefined) continue;
        wav ??= WavStreamWriter.create(path, { sampleRateHz: e.sampleRateHz });
        wav.write(e.samples);
        if (++chunkFrames === FRAMES_PER_CHUNK) flushChunk();
        continue;
      }
      if (e.type === "timings") {
        flushChunk();
        wav?.finish();
        if (wav && !json) process.stderr.write(`wrote ${wav.seconds.toFixed(2)} s to ${path}\n`);
      }
      if (json) emit(eventJson(e));
      else printEvent(e, output.pcm ? process.stderr : process.stdout);
    }
  } catch (err) {
    if (!(err instanceof LfmError && err.code === "ABORTED")) {
      wav?.discard();
      throw err;
    }
    if (!barge?.controller.signal.aborted || signal.aborted) {
      wav?.discard();
      return true;
    }
    // Barge-in: the reply stops; what was spoken stays (a valid WAV), and the stream goes on.
    flushChunk();
    if (wav && wav.seconds > 0) wav.finish();
    else wav?.discard();
    const event = { type: "barge_in", turn, spoken_seconds: round3(wav?.seconds ?? 0), stopped_after_ms: Math.round(performance.now() - barge.at!), samples_after: barge.samplesAfter };
    if (json) emit(event);
    else process.stderr.write(`\x1b[2m(interrupted after ${event.spoken_seconds} s of the reply; stopped ${event.stopped_after_ms} ms after the speech was heard)\x1b[0m\n`);
  }
  return false;
}

/** The --json form of an event (snake_case keys, times in whole milliseconds). */
function eventJson(e: Exclude<AgentEvent, { type: "audio" }>): Record<string, unknown> {
  const ms = (x: number | null) => (x === null ? null : Math.round(x));
  switch (e.type) {
    case "transcript":
      return { type: e.type, turn: e.turn, text: e.text, ms: ms(e.ms) };
    case "tool_result":
      return { type: e.type, turn: e.turn, round: e.round, name: e.name, ok: e.ok, content: e.content, truncated: e.truncated, ms: ms(e.ms) };
    case "timings":
      return { type: e.type, turn: e.turn, transcribe_ms: ms(e.transcribeMs), first_reply_token_ms: ms(e.firstReplyTokenMs), first_audio_sample_ms: ms(e.firstAudioMs), total_ms: ms(e.totalMs), prompt_tokens: e.promptTokens, reused_tokens: e.reusedTokens };
    default:
      return { ...e };
  }
}

/** Events for a person: the reply on `replyTo` (stdout, or stderr when stdout carries PCM), the rest on stderr. */
function printEvent(e: Exclude<AgentEvent, { type: "audio" }>, replyTo: NodeJS.WriteStream): void {
  const note = (line: string) => process.stderr.write(`\x1b[2m${terminalLine(line)}\x1b[0m\n`);
  switch (e.type) {
    case "transcript":
      note(`[turn ${e.turn}] heard: ${e.text}`);
      break;
    case "tool_call":
      note(`→ ${e.name}(${JSON.stringify(e.arguments)})`);
      break;
    case "tool_result":
      note(`← ${e.name}${e.ok ? "" : " (error)"}: ${e.content.length > 200 ? `${e.content.slice(0, 200)}…` : e.content}`);
      break;
    case "tool_call_error":
      note(`warning: a tool call did not parse: ${e.message}`);
      break;
    case "confirm":
      note(`(waiting for yes or no on ${e.name}: the next --audio file answers)`);
      break;
    case "confirmation":
      note(`${e.name}: ${e.confirmed ? "confirmed" : "declined"}`);
      break;
    case "reply_text":
      replyTo.write(`${textForStream(e.text, replyTo.isTTY)}\n`);
      break;
    case "timings": {
      const part = (label: string, x: number | null) => (x === null ? "" : `${label} ${Math.round(x)} ms, `);
      note(`${part("transcribed in", e.transcribeMs)}${part("first reply token at", e.firstReplyTokenMs)}${part("first audio at", e.firstAudioMs)}turn ${Math.round(e.totalMs)} ms`);
      break;
    }
  }
}

/** Samples as 16-bit little-endian PCM, clipped to [-1, 1] and scaled as the WAV writer does. */
function pcmS16le(samples: Float32Array): Buffer {
  const out = Buffer.alloc(samples.length * 2);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out.writeInt16LE(Math.round(s < 0 ? s * 0x8000 : s * 0x7fff), 2 * i);
  }
  return out;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
