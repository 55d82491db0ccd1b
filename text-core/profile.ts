/**
 * `lfm profile` — where the time goes, per block type (conv, attention, FFN, head, other), for a
 * prefill of P tokens and D decode steps, from onnxruntime's per-node profile; plus peak memory.
 * Graph values are named after checkpoint paths, so a node's layer and role come from its name.
 */
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Lfm2Config } from "../text-core/config.ts";
import { LfmError } from "../text-core/errors.ts";
import type { TextModel } from "../text-core/model.ts";
import { Lfm2Runtime, createSession } from "../text-core/runtime.ts";

export type BlockKind = "conv" | "attention" | "ffn" | "head" | "embedding" | "other";

export interface PhaseProfile {
  /** Wall time of the phase (all runs), ms. */
  wallMs: number;
  /** Sum of kernel times per block kind, ms. */
  kernelMs: Record<BlockKind, number>;
  /** Top operator types by kernel time, ms. */
  topOps: Array<{ op: string; ms: number }>;
  /** Time outside kernels: session overhead, feeding inputs, copying outputs (ms). */
  overheadMs: number;
}

export interface ProfileReport {
  promptTokens: number;
  decodeSteps: number;
  threads: number;
  prefill: PhaseProfile;
  /** Per decode step (averaged). */
  decode: PhaseProfile;
  peakRssMb: number;
}

/** Which block a graph node belongs to, from its checkpoint-path name. */
export function blockOf(nodeName: string, config: Lfm2Config): BlockKind {
  if (nodeName.includes("feed_forward") || nodeName.includes("ffn_norm")) return "ffn";
  if (nodeName.includes("lm_head") || nodeName.includes("embedding_norm") || nodeName.includes("kept_positions")) return "head";
  if (nodeName.includes("embed_tokens") || nodeName.startsWith("embeds")) return "embedding";
  if (nodeName.includes("self_attn") || nodeName.startsWith("mask.") || nodeName.startsWith("rope.")) return "attention";
  if (nodeName.includes(".conv.") || nodeName.startsWith("token_mask")) return "conv";
  const layer = /layers\.(\d+)\.(operator_norm|residual_op)/.exec(nodeName);
  if (layer) return config.layerTypes[Number(layer[1])] === "conv" ? "conv" : "attention";
  return "other";
}

interface ProfileEvent {
  cat?: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string };
}

function summarise(events: ProfileEvent[], runs: ProfileEvent[], config: Lfm2Config, divide: number): PhaseProfile {
  const kernelMs: Record<BlockKind, number> = { conv: 0, attention: 0, ffn: 0, head: 0, embedding: 0, other: 0 };
  const byOp = new Map<string, number>();
  let kernelTotal = 0;
  for (const run of runs) {
    for (const e of events) {
      if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < run.ts || e.ts > run.ts + run.dur) continue;
      const ms = e.dur / 1000;
      kernelMs[blockOf(e.name.slice(0, -"_kernel_time".length), config)] += ms / divide;
      const op = e.args?.op_name ?? "?";
      byOp.set(op, (byOp.get(op) ?? 0) + ms / divide);
      kernelTotal += ms / divide;
    }
  }
  const wallMs = runs.reduce((a, r) => a + r.dur / 1000, 0) / divide;
  const topOps = [...byOp.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([op, ms]) => ({ op, ms }));
  return { wallMs, kernelMs, topOps, overheadMs: Math.max(0, wallMs - kernelTotal) };
}

/**
 * Profiles `model`'s graph: one prefill of `promptTokens`, then `decodeSteps` single-token steps.
 * Opens a second, profiling session on the same cached graph.
 */
export async function profileModel(model: TextModel, graphPath: string, promptTokens: number, decodeSteps: number, threads: number): Promise<ProfileReport> {
  if (promptTokens < 1 || decodeSteps < 1) throw new LfmError("INVALID_ARGUMENT", "profile needs at least one prompt token and one decode step.");
  const prefix = join(tmpdir(), `lfm-profile-${process.pid}`);
  // The runtime's own session options, so the profile sees the graph as generation runs it.
  const session = await createSession(graphPath, { threads, profileFilePrefix: prefix });
  const runtime = new Lfm2Runtime(session, model.config, model.runtime.io, model.runtime.embeddings);
  const prompt = Array.from({ length: promptTokens }, (_, i) => 1000 + ((i * 7919) % Math.max(1, model.config.vocabSize - 1000)));
  const state = runtime.newState(1);
  await runtime.forward(state, { ids: [prompt] });
  for (let i = 0; i < decodeSteps; i++) await runtime.forward(state, { ids: [[1000 + i]] });
  // onnxruntime-node writes `<prefix>_<timestamp>.json` and does not return the name.
  (session as unknown as { endProfiling(): void }).endProfiling();
  await session.release();
  const written = readdirSync(tmpdir()).filter((f) => f.startsWith(basename(prefix)) && f.endsWith(".json"));
  if (written.length === 0) throw new LfmError("RUNTIME_FAILED", "onnxruntime wrote no profile file.");
  const file = join(tmpdir(), written.sort().pop() as string);
  let events: ProfileEvent[];
  try {
    events = JSON.parse(readFileSync(file, "utf8")) as ProfileEvent[];
  } finally {
    rmSync(file, { force: true });
  }
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  const prefillRuns = Math.ceil(promptTokens / runtime.prefillChunk);
  return {
    promptTokens,
    decodeSteps,
    threads,
    // A prompt runs in pieces of prefillChunk: the first that many runs are the prefill.
    prefill: summarise(events, runs.slice(0, prefillRuns), model.config, 1),
    decode: summarise(events, runs.slice(prefillRuns), model.config, runs.length - prefillRuns),
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}
