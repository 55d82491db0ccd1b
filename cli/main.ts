/**
 * `lfm` — the command-line interface. Each command (commands.ts) parses its flags, calls the
 * library and prints either human-readable output or, with --json, one JSON object (the
 * scriptable contract). Errors are printed as `error [CODE]: message` with exit status 2;
 * Ctrl-C cancels cleanly (a second one exits at once).
 */
import { LfmError } from "../text-core/errors.ts";
import { COMMANDS } from "./commands.ts";
import { withFlagNames } from "./flags.ts";
import { terminalText } from "./terminal-text.ts";

const HELP = `lfm — Liquid AI LFM2 models on this CPU, offline.

Usage: lfm <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)} ${c.summary}\n`).join("")}
Common options:
  --model DIR          Checkpoint folder (Hugging Face layout, or an HF cache folder models--Org--Name,
                       or Org/Name already in the HF cache). Default: the bundled tiny random model.
  --precision P        q4 (default: 4-bit weights, fastest decoding) | q8 (fastest prompts) | fp32 (matches the reference)
  --threads N          CPU threads (default: physical cores; 1 to max(16, 4 × logical cores))
  --json               Print one JSON object instead of streaming text.
  --cache-dir DIR      Where built graphs are cached (default: $LFM_CACHE_DIR or ~/.cache/lfm2-edge).
  --no-cache           Build the graph in a temporary folder and do not keep it.
  -h, --help           Help for a command: lfm <command> --help (it states each numeric flag's range)

Examples (the bundled tiny model; real checkpoints: see README):
  lfm tokenize --json "Hello world"
  lfm generate --prompt "The pump" --max-tokens 16
  lfm chat --message "Status of pump 7?" --max-tokens 24
  cat report.txt | lfm generate --max-tokens 64      (long text: a pipe, or --prompt-file F)
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    if (name === undefined || name === "-h" || name === "--help" || name === "help") {
      console.log(HELP);
      return 0;
    }
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) throw new LfmError("INVALID_ARGUMENT", `unknown command "${name}". Commands: ${COMMANDS.map((c) => c.name).join(", ")} (lfm --help).`);
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(command.help);
      return 0;
    }
    return await command.run(rest, controller.signal);
  } catch (e) {
    if (e instanceof LfmError) {
      // The library's messages name its options (topP, maxInputPixels); a CLI user gives flags.
      // Messages quote file names and document text: their control characters are shown, not sent.
      process.stderr.write(`error [${e.code}]: ${terminalText(withFlagNames(e.message))}\n`);
      return e.code === "ABORTED" ? 130 : 2;
    }
    process.stderr.write(`internal error: ${(e as Error)?.stack ?? String(e)}\nPlease report this with the command you ran.\n`);
    return 1;
  } finally {
    process.off("SIGINT", onSigint);
  }
}
