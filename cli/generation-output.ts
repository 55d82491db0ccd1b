/**
 * How generate, chat and describe print a reply: streamed to stdout (made visible on a terminal,
 * see `textForStream`), then one summary line on stderr — tokens, decoding speed, time to first
 * token, total time and why it ended — or, with --json, collected and printed as one object that
 * carries the same numbers as `usage` and `timings`. `--quiet` drops the stderr line.
 */
import type { ParseArgsConfig } from "node:util";
import { isLfmError } from "../text-core/errors.ts";
import type { FinishReason } from "../text-core/generate.ts";
import { textForStream } from "./terminal-text.ts";

/** The flag of the commands that print a summary line. */
export const QUIET = { quiet: { type: "boolean", short: "q" } } as const satisfies ParseArgsConfig["options"];

export const SUMMARY_HELP = `After the reply, one line on stderr: new tokens, tokens/s (decoding, after the first token),
  time to first token (prompt included), total time and the finish reason (stop, length or
  cancelled). --quiet (-q) leaves it out; with --json the same numbers are the "usage" and
  "timings" keys instead. On a terminal, control characters in the text are shown as escapes
  (\\x1b); piped or redirected output and --json keep the exact text.`;

/** Why a reply ended as the summary says it: the library's reasons, or Ctrl-C. */
export type SummaryFinish = FinishReason | "cancelled";

export interface GenerationStats {
  promptTokens: number;
  completionTokens: number;
  /** From the call to the first new token (prompt processing included); undefined when none came. */
  ttftMs: number | undefined;
  /** New tokens per second after the first one (decoding speed); undefined with fewer than two. */
  tokensPerSecond: number | undefined;
  totalMs: number;
  finishReason: SummaryFinish;
}

/** Times one reply: create it just before the generation call, `token()` at each new token. */
export class GenerationClock {
  private readonly startedAt = performance.now();
  private firstAt: number | undefined;
  private endedAt: number | undefined;
  private tokens = 0;

  /** `promptTokens` may be set later, when the clock starts before the prompt is built. */
  constructor(public promptTokens = 0) {}

  token(): void {
    this.firstAt ??= performance.now();
    this.tokens++;
  }

  /** The reply is over: what follows (writing files, releasing the model) is not its time. */
  stop(): void {
    this.endedAt ??= performance.now();
  }

  stats(finishReason: SummaryFinish): GenerationStats {
    const now = this.endedAt ?? performance.now();
    const decodeMs = this.firstAt === undefined ? 0 : now - this.firstAt;
    return {
      promptTokens: this.promptTokens,
      completionTokens: this.tokens,
      ttftMs: this.firstAt === undefined ? undefined : this.firstAt - this.startedAt,
      tokensPerSecond: this.tokens >= 2 && decodeMs > 0 ? ((this.tokens - 1) * 1000) / decodeMs : undefined,
      totalMs: now - this.startedAt,
      finishReason,
    };
  }
}

/** The summary line (no newline): `12 tokens, 48.3 tok/s, first token 85 ms, total 313 ms, finish: stop`. */
export function summaryLine(s: GenerationStats): string {
  const parts = [`${s.completionTokens} token${s.completionTokens === 1 ? "" : "s"}`];
  if (s.tokensPerSecond !== undefined) parts.push(`${s.tokensPerSecond.toFixed(1)} tok/s`);
  if (s.ttftMs !== undefined) parts.push(`first token ${formatMs(s.ttftMs)}`);
  parts.push(`total ${formatMs(s.totalMs)}`, `finish: ${s.finishReason}`);
  return parts.join(", ");
}

function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Writes the summary line to stderr (dim on a terminal) unless `quiet`. */
export function printSummary(s: GenerationStats, quiet: boolean): void {
  if (quiet) return;
  const line = summaryLine(s);
  process.stderr.write(process.stderr.isTTY ? `\x1b[2m${line}\x1b[0m\n` : `${line}\n`);
}

/** The --json keys with the summary's numbers (null where the line leaves a number out). */
export function summaryJson(s: GenerationStats): {
  usage: { prompt_tokens: number; completion_tokens: number };
  timings: { ttft_ms: number | null; tokens_per_s: number | null; total_ms: number };
} {
  const round = (x: number | undefined, digits: number) => (x === undefined ? null : Number(x.toFixed(digits)));
  return {
    usage: { prompt_tokens: s.promptTokens, completion_tokens: s.completionTokens },
    timings: { ttft_ms: round(s.ttftMs, 1), tokens_per_s: round(s.tokensPerSecond, 2), total_ms: round(s.totalMs, 1)! },
  };
}

/** A model's token stream: each new token's id and text (id -1: held-back text at the end); returns why it ended. */
export type ReplyTokens = AsyncGenerator<{ id: number; text: string }, FinishReason>;

export interface Reply {
  /** The new token ids. */
  ids: number[];
  /** The text as streamed (for --json, decode `ids` as the library's `complete` does). */
  text: string;
  finishReason: FinishReason;
  stats: GenerationStats;
}

/**
 * Runs `tokens` to its end, timing it with `clock`; with `stdout`, each piece of text is written
 * as it comes (escaped on a terminal) and the line is ended. A cancelled reply (ABORTED) still
 * ends its line and prints its summary ("cancelled") before the error goes on to the caller.
 */
export async function runReply(tokens: ReplyTokens, clock: GenerationClock, opts: { stdout: boolean; quiet: boolean }): Promise<Reply> {
  const ids: number[] = [];
  let text = "";
  try {
    // Stepped by hand: the generator's return value is the finish reason, which for-await drops.
    for (;;) {
      const step = await tokens.next();
      if (step.done) {
        if (opts.stdout) process.stdout.write("\n");
        return { ids, text, finishReason: step.value, stats: clock.stats(step.value) };
      }
      if (step.value.id >= 0) {
        ids.push(step.value.id);
        clock.token();
      }
      text += step.value.text;
      if (opts.stdout) process.stdout.write(textForStream(step.value.text, process.stdout.isTTY));
    }
  } catch (e) {
    if (opts.stdout && isLfmError(e, "ABORTED")) {
      process.stdout.write("\n");
      printSummary(clock.stats("cancelled"), opts.quiet);
    }
    throw e;
  }
}
