/**
 * One measured agent conversation in its own process (so peak RSS is its own). Prints one JSON
 * line (`WorkerResult`). Usage:
 *   node bin/run-ts.mjs bench/agent-worker.ts '<AgentWorkerSettings as JSON>'
 * `build: true`: only load the agent (building its graphs into the cache) and exit.
 *
 * The conversation: `turn` spoken turns, each the English fixture recording (4.5 s) handed over
 * whole — the moment the turn starts is the end of the user's speech. Turns before `turn` fill the
 * history (and warm the sessions up); turn `turn` is measured. One text round per turn
 * (`maxToolRounds: 0`: the tools are in the prompt, no call is run), so every run does the same
 * work: random weights never stop on their own, so the transcript, the reply and the speech run
 * to their caps (`transcriptTokens`, `replyTokens`, `frames`).
 */
import { join } from "node:path";
import { readAudioFile } from "../audio/audio-file.ts";
import { Agent, type AgentEvent } from "../pipelines/agent.ts";
import type { AgentTool } from "../pipelines/agent-tools.ts";
import type { Precision } from "../text-core/graph/precision.ts";
import { flushWrites, peakRssMb } from "./prompt.ts";

export interface AgentWorkerSettings {
  audioDir: string;
  textDir: string;
  mimi: string;
  precision: Precision;
  threads: number;
  /** The measured turn (1-based); earlier turns build the history. */
  turn: number;
  /** Continue the text model's kept decode state (the agent's default) or prefill every prompt in full. */
  reuse: boolean;
  replyTokens: number;
  frames: number;
  transcriptTokens: number;
  build?: boolean;
}

/** Tools as a technician's assistant would have them: they fill the prompt (no call is run). */
const TOOLS: AgentTool[] = [
  {
    name: "get_torque",
    description: "Look up the torque specification of a bolt on a flange or fitting",
    parameters: { type: "object", properties: { part: { type: "string" }, size: { type: "string" } }, required: ["part"] },
    run: async () => ({ nm: 120 }),
  },
  {
    name: "log_fault",
    description: "Log a fault on a pump in the maintenance system",
    parameters: { type: "object", properties: { pump: { type: "integer" }, fault: { enum: ["leak", "noise", "vibration", "overheat"] } }, required: ["pump", "fault"] },
    confirm: true,
    run: async () => ({ logged: true }),
  },
];

const settings = JSON.parse(process.argv[2] ?? "{}") as AgentWorkerSettings;
const ms = (t0: number) => performance.now() - t0;
const cacheDir = process.env.LFM_CACHE_DIR;

const t0 = performance.now();
const agent = await Agent.load(
  settings.audioDir,
  settings.textDir,
  {
    tools: TOOLS,
    maxToolRounds: 0,
    reuseState: settings.reuse,
    generation: { maxTokens: settings.replyTokens, temperature: 0 },
    speech: { maxFrames: settings.frames, seed: 1 },
    transcribeMaxTokens: settings.transcriptTokens,
  },
  { mimi: settings.mimi, precision: settings.precision, threads: settings.threads, cacheDir },
);
const loadMs = ms(t0);
if (settings.build) {
  await agent.release();
  process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples: [] })}\n`);
  process.exit(0);
}
flushWrites();

const speech = await readAudioFile(join(import.meta.dirname, "..", "fixtures/audio/clips/speech_en_16k.wav"));
let measured: Record<string, number> | undefined;
for (let turn = 1; turn <= settings.turn; turn++) {
  const start = performance.now();
  let replyDoneMs = 0;
  let samples = 0;
  let sampleRateHz = 24000;
  let timings: Extract<AgentEvent, { type: "timings" }> | undefined;
  for await (const e of agent.turn(speech)) {
    if (e.type === "reply_text") replyDoneMs = ms(start);
    else if (e.type === "audio") {
      samples += e.samples.length;
      sampleRateHz = e.sampleRateHz;
    } else if (e.type === "timings") timings = e;
  }
  if (turn < settings.turn || !timings) continue;
  const audioSeconds = samples / sampleRateHz;
  // Speaking: from the whole reply text to the last sample (TTS prefill, frames, Mimi).
  const speakMs = timings.totalMs - replyDoneMs;
  measured = {
    transcribeMs: timings.transcribeMs ?? NaN,
    firstReplyTokenMs: timings.firstReplyTokenMs ?? NaN,
    replyDoneMs,
    firstAudioMs: timings.firstAudioMs ?? NaN,
    totalMs: timings.totalMs,
    speakMs,
    audioSeconds,
    speakRtf: audioSeconds > 0 ? speakMs / 1000 / audioSeconds : NaN,
    promptTokens: timings.promptTokens,
    reusedTokens: timings.reusedTokens,
  };
}
await agent.release();
process.stdout.write(`${JSON.stringify({ loadMs, peakRssMb: peakRssMb(), samples: measured ? [measured] : [] })}\n`);
