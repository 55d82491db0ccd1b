/** `lfm profile`: where the time goes per block type, over `profileModel` (text-core/profile.ts). */
import { LfmError } from "../text-core/errors.ts";
import { TextModel } from "../text-core/model.ts";
import { type BlockKind, type PhaseProfile, type ProfileReport, profileModel } from "../text-core/profile.ts";
import { defaultThreads } from "../text-core/runtime.ts";
import { modelOrBundled } from "./bundled.ts";
import { COMMON, type CliCommand, loadFlags, num, parse } from "./cli-kit.ts";
import { intRange } from "./flags.ts";

/** Both within the model's context together (checked once it is loaded). */
const PROMPT_TOKENS = intRange(1, 131_072);
const DECODE_STEPS = intRange(1, 131_072);

const PROFILE_OPTIONS = { ...COMMON, "prompt-tokens": { type: "string" }, "decode-steps": { type: "string" } } as const;

const HELP = `lfm profile --model DIR [--precision q4] [--prompt-tokens 512] [--decode-steps 64] [--threads N] [--json]
  Runs one prefill and some decode steps with onnxruntime's profiler and prints the time share of
  each block type (conv, attention, FFN, head, embedding), the session overhead, the top operators,
  and the peak RSS. --prompt-tokens and --decode-steps: at least 1, together within the model's
  context. Also: --cache-dir DIR (the cached graph is profiled; --no-cache is refused).`;

export const profileCommand: CliCommand = {
  name: "profile",
  summary: "Where the time goes per block type (conv, attention, FFN, head) in prefill and decode.",
  help: HELP,
  options: PROFILE_OPTIONS,
  async run(args: string[]): Promise<number> {
    const { values: v, positionals } = parse(args, PROFILE_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}" (lfm profile --help).`);
    if (v["no-cache"]) throw new LfmError("INVALID_ARGUMENT", "profile reads the cached graph; drop --no-cache.");
    const promptTokens = num(v, "prompt-tokens", PROMPT_TOKENS) ?? 512;
    const decodeSteps = num(v, "decode-steps", DECODE_STEPS) ?? 64;
    const load = loadFlags(v);
    const model = await TextModel.load(modelOrBundled(v, "text"), load);
    try {
      const graphPath = model.runtime.graphPath;
      if (!graphPath) throw new LfmError("INVALID_ARGUMENT", "this model was loaded without a graph file to profile.");
      const context = model.config.maxPositionEmbeddings;
      if (promptTokens + decodeSteps > context) {
        throw new LfmError("INVALID_ARGUMENT", `--prompt-tokens plus --decode-steps (${promptTokens + decodeSteps}) must fit the model's context of ${context} positions.`);
      }
      const threads = load.threads ?? defaultThreads();
      const report = await profileModel(model, graphPath, promptTokens, decodeSteps, threads);
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
