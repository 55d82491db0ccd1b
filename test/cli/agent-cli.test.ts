/** `lfm agent` end to end on the bundled tiny models: the --json events, the WAVs, the tools module, confirmations. */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAudioFile } from "../../audio/audio-file.ts";
import { isYes } from "../../pipelines/agent.ts";
import { VoiceActivityDetector } from "../../pipelines/vad.ts";
import { LFM_BIN, runLfm } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const CLIP = join(FIXTURES, "audio", "clips", "speech_en_16k.wav");
const dir = mkdtempSync(join(tmpdir(), "lfm-agent-cli-"));

/** A tools module whose tools append their arguments, one JSON line per run, to `record`. */
function toolsModule(name: string, record: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `import { appendFileSync } from "node:fs";
const record = (name, args) => appendFileSync(${JSON.stringify(record)}, JSON.stringify({ name, args }) + "\\n");
export default [
  {
    name: "log_reading",
    description: "Log a pump's status",
    parameters: { type: "object", properties: { pump: { type: "integer", minimum: 1, maximum: 99 }, status: { enum: ["ok", "leaking"] } }, required: ["pump", "status"] },
    run: async (args) => { record("log_reading", args); return { logged: true }; },
  },
  {
    name: "set_valve",
    description: "Opens or closes a valve",
    parameters: { type: "object", properties: { open: { type: "boolean" } }, required: ["open"] },
    confirm: true,
    run: async (args) => { record("set_valve", args); return "done"; },
  },
];
`,
  );
  return path;
}

function events(stdout: string): Record<string, unknown>[] {
  return stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function recorded(path: string): { name: string; args: unknown }[] {
  return existsSync(path) ? readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { name: string; args: unknown }) : [];
}

const COMMON = ["--max-tool-rounds", "1", "--max-tokens", "96", "--temperature", "0"];

describe("lfm agent", () => {
  it("--json: events in order, the calls run with the model's arguments, the reply spoken into turn-1.wav", () => {
    const record = join(dir, "run1.jsonl");
    const out = join(dir, "out1");
    const r = runLfm(["agent", "--tools", toolsModule("tools1.mjs", record), "--tool-choice", "log_reading", "--audio", CLIP, "--out-dir", out, "--max-frames", "6", "--seed", "3", "--json", ...COMMON]);
    expect(r.status, r.stderr).toBe(0);
    const list = events(r.stdout);
    const types = list.map((e) => e.type);
    expect(types[0]).toBe("transcript");
    const reply = types.indexOf("reply_text");
    expect(reply).toBeGreaterThan(1);
    expect(types.slice(1, reply).every((t) => t === "tool_call" || t === "tool_result")).toBe(true);
    expect(types.slice(reply + 1, -1).every((t) => t === "audio_chunk")).toBe(true);
    expect(types.at(-1)).toBe("timings");
    expect(list.every((e) => e.turn === 1)).toBe(true);

    const calls = list.filter((e) => e.type === "tool_call");
    expect(recorded(record)).toEqual(calls.map((c) => ({ name: "log_reading", args: c.arguments })));
    expect(list.filter((e) => e.type === "tool_result").map((e) => e.content)).toEqual(calls.map(() => '{"logged":true}'));

    const wav = join(out, "turn-1.wav");
    const chunks = list.filter((e) => e.type === "audio_chunk");
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.every((c) => c.path === wav)).toBe(true);
    const seconds = chunks.reduce((s, c) => s + (c.seconds as number), 0);
    expect(seconds).toBeCloseTo(6 * 0.08, 2);
    expect(statSync(wav).size).toBe(44 + 6 * 1920 * 2);
    const timings = list.at(-1)!;
    for (const key of ["transcribe_ms", "first_reply_token_ms", "first_audio_sample_ms", "total_ms", "prompt_tokens", "reused_tokens"]) expect(typeof timings[key], key).toBe("number");
    // The round after the calls continues the first round's decode state: only the calls' results are new.
    expect(timings.reused_tokens).toBeGreaterThan(0);
    expect(timings.reused_tokens).toBeLessThan(timings.prompt_tokens as number);
  }, 180_000);

  it("a confirm tool: the next --audio file is the answer (not a yes: not run); --yes runs it", () => {
    const record = join(dir, "run2.jsonl");
    const tools = toolsModule("tools2.mjs", record);
    const asked = runLfm(["agent", "--tools", tools, "--tool-choice", "set_valve", "--audio", CLIP, "--audio", CLIP, "--json", ...COMMON]);
    expect(asked.status, asked.stderr).toBe(0);
    const list = events(asked.stdout);
    const confirm = list.find((e) => e.type === "confirm")!;
    expect(confirm).toMatchObject({ turn: 1, name: "set_valve" });
    expect(list.find((e) => e.type === "reply_text" && e.turn === 1)?.text).toBe(confirm.question);
    const answer = list.find((e) => e.type === "transcript" && e.turn === 2)!;
    expect(isYes(answer.text as string)).toBe(false); // the random model's words are no yes
    expect(list.find((e) => e.type === "confirmation")).toMatchObject({ turn: 2, name: "set_valve", confirmed: false });
    expect(recorded(record)).toEqual([]);

    const yes = runLfm(["agent", "--tools", tools, "--tool-choice", "set_valve", "--audio", CLIP, "--yes", ...COMMON]);
    expect(yes.status, yes.stderr).toBe(0);
    expect(recorded(record).length).toBeGreaterThan(0);
    expect(recorded(record).every((c) => c.name === "set_valve")).toBe(true);
    // Without --json: the reply on stdout; what was heard and the calls on stderr.
    expect(yes.stdout.trim()).not.toBe("");
    expect(yes.stderr).toMatch(/\[turn 1\] heard: /);
    expect(yes.stderr).toMatch(/→ set_valve\(\{"open":(true|false)\}\)/);
    expect(yes.stderr).toContain("← set_valve: done");
  }, 180_000);

  it("--pcm -: a scripted 16 kHz s16le stream (silence, speech, a pause, speech, cut short) is two turns", async () => {
    const clip = await readAudioFile(CLIP);
    expect(clip.sampleRateHz).toBe(16000);
    const silence = (s: number) => new Float32Array(Math.round(16000 * s));
    const parts = [silence(1), clip.samples, silence(1.5), clip.samples, silence(0.3)];
    const stream = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (stream.set(p, at), at + p.length), 0);
    // The detector the CLI runs, on the same samples: the stream's end closes the second turn.
    const vad = new VoiceActivityDetector(16000);
    const expected = [...vad.push(stream), vad.flush()].filter((t) => t !== null);
    expect(expected).toHaveLength(2);
    const pcm = Buffer.alloc(stream.length * 2);
    stream.forEach((x, i) => pcm.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(x * 32768))), 2 * i));
    const r = spawnSync(process.execPath, [LFM_BIN, "agent", "--tools", toolsModule("tools4.mjs", join(dir, "live.jsonl")), "--pcm", "-", "--json", "--max-tokens", "8", "--max-tool-rounds", "0"], {
      input: pcm,
      encoding: "utf8",
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const list = events(r.stdout);
    expect(list.filter((e) => e.type === "transcript").map((e) => e.turn)).toEqual([1, 2]);
    const timings = list.filter((e) => e.type === "timings");
    expect(timings.map((e) => e.turn)).toEqual([1, 2]);
    // Turn 2 continues the text model's state from turn 1 instead of re-reading the conversation.
    expect(timings.map((e) => (e.reused_tokens as number) > 0)).toEqual([false, true]);

    const quiet = spawnSync(process.execPath, [LFM_BIN, "agent", "--tools", toolsModule("tools5.mjs", join(dir, "quiet.jsonl")), "--pcm", "-"], {
      input: Buffer.alloc(16000 * 2 * 2),
      encoding: "utf8",
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      timeout: 120_000,
    });
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(quiet.stdout).toBe("");
    expect(quiet.stderr).toContain("the stream ended without any speech (no turn).");
  }, 180_000);

  it("--pcm -: speech while the reply is spoken stops it (barge-in) and becomes the next turn", async () => {
    const clip = await readAudioFile(CLIP);
    const s16 = (...parts: Float32Array[]) => {
      const n = parts.reduce((k, p) => k + p.length, 0);
      const buf = Buffer.alloc(n * 2);
      let at = 0;
      for (const p of parts) for (const x of p) buf.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(x * 32768))), 2 * at++);
      return buf;
    };
    const silence = (s: number) => new Float32Array(Math.round(16000 * s));
    const out = join(dir, "barge");
    const child = spawn(process.execPath, [LFM_BIN, "agent", "--tools", toolsModule("tools7.mjs", join(dir, "barge.jsonl")), "--pcm", "-", "--json", "--out-dir", out, "--max-frames", "100", "--max-tokens", "8", "--max-tool-rounds", "0"], {
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const lines: Record<string, unknown>[] = [];
    let pending = "";
    let interrupted = false;
    child.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const line of parts) {
        const e = JSON.parse(line) as Record<string, unknown>;
        lines.push(e);
        // The reply is being spoken: the user talks over it, then stops (the stream ends).
        if (!interrupted && e.type === "audio_chunk" && e.turn === 1) {
          interrupted = true;
          child.stdin.end(s16(clip.samples, silence(1.2)));
        }
      }
    });
    child.stdin.write(s16(silence(1), clip.samples, silence(1.2)));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code, stderr).toBe(0);
    expect(interrupted).toBe(true);
    const types = lines.map((e) => `${e.type}:${e.turn}`);
    const barge = lines.find((e) => e.type === "barge_in")!;
    expect(barge, types.join(" ")).toMatchObject({ turn: 1 });
    // Turn 1 ends at the barge-in (no timings); its speech, cut short, is a valid WAV.
    expect(types).not.toContain("timings:1");
    expect(types.indexOf("barge_in:1")).toBeLessThan(types.indexOf("transcript:2"));
    expect(types.at(-1)).toBe("timings:2");
    // Stopped within 200 ms of audio (24 kHz) after the speech was heard, and quickly.
    expect(barge.samples_after as number).toBeLessThanOrEqual(0.2 * 24000);
    expect(barge.spoken_seconds as number).toBeLessThan(100 * 0.08);
    expect(statSync(join(out, "turn-1.wav")).size).toBe(44 + Math.round((barge.spoken_seconds as number) * 24000) * 2);
  }, 180_000);

  it("--pcm-out -: the spoken reply as raw 24 kHz s16le on stdout, the text on stderr", () => {
    const r = spawnSync(process.execPath, [LFM_BIN, "agent", "--tools", toolsModule("tools6.mjs", join(dir, "pcm.jsonl")), "--audio", CLIP, "--pcm-out", "-", "--max-frames", "4", "--max-tokens", "8", "--max-tool-rounds", "0", "--seed", "3"], {
      env: { ...process.env, LFM_CACHE_DIR: TEST_CACHE },
      timeout: 120_000,
    });
    expect(r.status, r.stderr.toString()).toBe(0);
    // Seeded: unseeded, the speech sampling (temperature 0.8) may draw the end of audio before frame 4.
    expect(r.stdout.length).toBe(4 * 1920 * 2); // 4 Mimi frames of 1920 samples, 2 bytes each
    const pcm = new Int16Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length / 2);
    expect(pcm.some((x) => x !== 0)).toBe(true);
    expect(r.stderr.toString()).toMatch(/\[turn 1\] heard: /);
  }, 120_000);

  it("a tools module that fails to import, or whose schema cannot be enforced, is a typed error before any model loads", () => {
    const syntax = join(dir, "broken.mjs");
    writeFileSync(syntax, "export default [ {;");
    const r1 = runLfm(["agent", "--tools", syntax, "--audio", CLIP]);
    expect(r1.status).toBe(2);
    expect(r1.stderr).toMatch(/^error \[TOOLS_INVALID\]: cannot import the tools module .*broken\.mjs: SyntaxError/m);

    const schema = join(dir, "schema.mjs");
    writeFileSync(schema, `export default [{ name: "find", parameters: { type: "object", properties: { q: { type: "string", format: "email" } } }, run: () => 1 }];`);
    const r2 = runLfm(["agent", "--tools", schema, "--audio", CLIP]);
    expect(r2.status).toBe(2);
    expect(r2.stderr).toMatch(/^error \[SCHEMA_UNSUPPORTED\]: .*tool "find".*format/m);

    const notTools = join(dir, "object.mjs");
    writeFileSync(notTools, "export default { name: 'x' };");
    expect(runLfm(["agent", "--tools", notTools, "--audio", CLIP]).stderr).toMatch(/^error \[TOOLS_INVALID\]: .*object\.mjs must be a non-empty array/m);

    const tools = toolsModule("tools3.mjs", join(dir, "never.jsonl"));
    expect(runLfm(["agent", "--tools", tools, "--tool-choice", "nope", "--audio", CLIP]).stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --tool-choice must be required, auto or one of the tools' names \(log_reading, set_valve\)/m);
    expect(runLfm(["agent", "--tools", tools, "--audio-model", dir, "--audio", CLIP]).stderr).toMatch(/^error \[MODEL_REQUIRED\]: give --model/m);
    expect(runLfm(["agent", "--tools", tools]).stderr).toMatch(/^error \[INVALID_ARGUMENT\]: pass each turn's recording with --audio FILE/m);
    expect(runLfm(["agent", "--tools", tools, "--audio", CLIP, "--tool-timeout", "0"]).stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --tool-timeout must be a number above 0/m);
    expect(runLfm(["agent", "--tools", tools, "--audio", CLIP, "--pcm-out", "-", "--json"]).stderr).toMatch(/^error \[INVALID_ARGUMENT\]: --pcm-out - and --json both need standard output/m);
    expect(runLfm(["agent", "--tools", tools, "--audio", CLIP, "--pcm", "-"]).stderr).toMatch(/^error \[INVALID_ARGUMENT\]: give --audio files or a --pcm stream, not both/m);
  }, 60_000);
});
