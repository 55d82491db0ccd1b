/** `lfm profile`: where the time goes per block type, over `profileModel` (text-core/profile.ts). */
import { LfmError } from "../text-core/errors.ts";
import { TextModel } from "../text-core/model.ts";
import { type BlockKind, type PhaseProfile, type ProfileReport, profileModel } from "../text-core/profile.ts";
import { defaultThreads } from "../text-core/runtime.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, loadFlags, num, parse } from "./cli-kit.ts";

const HELP = `lfm profile --model DIR [--precision q4] [--prompt-tokens 512] [--decode-steps 64] [--threads N] [--json]
  Runs one prefill and some decode steps with onnxruntime's profiler and prints the time share of
  each block type (conv, attention, FFN, head, embedding), the session overhead, the top operators,
  and the peak RSS.`;

export const profileCommand: CliCommand = {
  name: "profile",
  summary: "Where the time goes per block type (conv, attention, FFN, head) in prefill and decode.",
  help: HELP,
  async run(args: string[]): Promise<number> {
    const { values: v } = parse(args, { ...COMMON, "prompt-tokens": { type: "string" }, "decode-steps": { type: "string" } });
    if (v["no-cache"]) throw new LfmError("INVALID_ARGUMENT", "profile reads the cached graph; drop --no-cache.");
    const model = await TextModel.load(modelOrBundled(v, "text"), loadFlags(v));
    try {
      const graphPath = model.runtime.graphPath;
      if (!graphPath) throw new LfmError("INVALID_ARGUMENT", "this model was loaded without a graph file to profile.");
      const threads = num(v, "threads", "int") ?? defaultThreads();
      const report = await profileModel(model, graphPath, num(v, "prompt-tokens", "int") ?? 512, num(v, "decode-steps", "int") ?? 64, threads);
      console.log(v.json ? JSON.stringify(report) : formatProfile(report));
      return 0;
    } finally {
      await model.release();
    }
  },
};

function formatProfile(r: ProfileReport): string {
  const kinds: BlockKind[] = ["conv", "attention", "ffn", "head", "embedding", "other"];
  const lines: string[] = [];
  const phase = (title: string, p: PhaseProfile) => {
    const total = p.wallMs;
    lines.push(`${title}: ${total.toFixed(2)} ms`);
    for (const k of kinds) lines.push(`  ${k.padEnd(10)} ${p.kernelMs[k].toFixed(2).padStart(9)} ms  ${((100 * p.kernelMs[k]) / total).toFixed(1).padStart(5)}%`);
    lines.push(`  ${"overhead".padEnd(10)} ${p.overheadMs.toFixed(2).padStart(9)} ms  ${((100 * p.overheadMs) / total).toFixed(1).padStart(5)}%   (session run, inputs, output copies)`);
    lines.push(`  top ops: ${p.topOps.map((o) => `${o.op} ${o.ms.toFixed(2)}`).join(", ")}`);
  };
  phase(`prefill (${r.promptTokens} tokens)`, r.prefill);
  phase(`decode (per step, ${r.decodeSteps} steps)`, r.decode);
  lines.push(`peak RSS ${r.peakRssMb.toFixed(0)} MB, ${r.threads} threads`);
  return lines.join("\n");
}
