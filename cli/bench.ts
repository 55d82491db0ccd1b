/** `lfm bench`: the speed benchmark (bench/run.ts, same as `npm run bench`), in a child process. */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { LfmError } from "../text-core/errors.ts";
import { PACKAGE_ROOT } from "./bundled.ts";
import type { CliCommand } from "./cli-kit.ts";

const HELP = `lfm bench [--models lfm2-350m,lfm2-1.2b] [--precisions q4,q8,fp32] [--runs 3] [--threads 2] [--prompt 512] [--decode 128]
  Builds random-weight checkpoints with the published shapes (fixtures/real-configs) in the cache
  folder, measures prefill/decode tokens per second, time to first token and peak RSS (medians),
  and writes bench/results/<date>-<machine>.json. Needs a clone of the repository (the npm
  package does not ship the benchmarks).`;

export const benchCommand: CliCommand = {
  name: "bench",
  summary: "Speed on random-weight models with the published shapes (same as npm run bench).",
  help: HELP,
  async run(args: string[]): Promise<number> {
    const script = join(PACKAGE_ROOT, "bench", "run.ts");
    if (!existsSync(script)) throw new LfmError("FILE_NOT_FOUND", `lfm bench runs ${script}, which this installation does not have: run it from a clone of the repository.`);
    const r = spawnSync(process.execPath, [join(PACKAGE_ROOT, "bin", "run-ts.mjs"), script, ...args], { stdio: "inherit" });
    return r.status ?? 1;
  },
};
