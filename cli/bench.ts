/** `lfm bench`: the speed benchmark (bench/run.ts, same as `npm run bench`), in a child process. */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { LfmError } from "../text-core/errors.ts";
import { PACKAGE_ROOT } from "./bundled.ts";
import { type CliCommand, num, parse, threadsOf } from "./cli-kit.ts";
import { intRange } from "./flags.ts";

/** bench/run.ts's flags, checked here so a bad value is a typed error before the child starts. */
const BENCH_OPTIONS = {
  models: { type: "string" },
  precisions: { type: "string" },
  engines: { type: "string" },
  runs: { type: "string" },
  threads: { type: "string" },
  prompt: { type: "string" },
  decode: { type: "string" },
  context: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;
const RUNS = intRange(1, 100);
const TOKENS = intRange(1, 131_072);

const HELP = `lfm bench [--models lfm2-350m,lfm2-1.2b] [--precisions q4,q8,fp32] [--engines ours,llama] [--runs 3] [--threads 2]
          [--prompt 512] [--decode 128] [--context 1024]
  Builds random-weight checkpoints with the published shapes (fixtures/real-configs) in the cache
  folder, measures prefill/decode tokens per second, time to first token and peak RSS (medians),
  and writes bench/results/<date>-<machine>.json. Needs a clone of the repository (the npm
  package does not ship the benchmarks).
  --runs N (1 to ${RUNS.max}); --prompt N, --decode N (tokens, 1 to ${TOKENS.max}); --context N (KV positions,
  at least prompt + decode + 1); --engines: ours, llama (node-llama-cpp, a dev dependency).`;

export const benchCommand: CliCommand = {
  name: "bench",
  summary: "Speed on random-weight models with the published shapes (same as npm run bench).",
  help: HELP,
  options: BENCH_OPTIONS,
  async run(args: string[]): Promise<number> {
    const { values: v, positionals } = parse(args, BENCH_OPTIONS);
    if (positionals.length > 0) throw new LfmError("INVALID_ARGUMENT", `unexpected argument "${positionals[0]}" (lfm bench --help).`);
    num(v, "runs", RUNS);
    threadsOf(v);
    const prompt = num(v, "prompt", TOKENS) ?? 512;
    const decode = num(v, "decode", TOKENS) ?? 128;
    num(v, "context", intRange(prompt + decode + 1, 2 * TOKENS.max + 1));
    const script = join(PACKAGE_ROOT, "bench", "run.ts");
    if (!existsSync(script)) throw new LfmError("FILE_NOT_FOUND", `lfm bench runs ${script}, which this installation does not have: run it from a clone of the repository.`);
    const r = spawnSync(process.execPath, [join(PACKAGE_ROOT, "bin", "run-ts.mjs"), script, ...args], { stdio: "inherit" });
    return r.status ?? 1;
  },
};
