/**
 * `npm run bench:serve` — `lfm serve` under load, measured as its users see it: the server is a
 * child process (`--port 0`) over a models folder holding one checkpoint, and the clients are the
 * official `openai` npm client, streaming.
 *
 * (a) Throughput with 1, 2, 4, 8 concurrent streaming clients: each asks for `--max-tokens` new
 *     tokens at temperature 0 (random weights almost never pick EOS, so replies run to the limit;
 *     the token counts come from the streamed `usage` and are reported, so a reply that ended early
 *     shows). Total generated tokens/s over the round's wall time, and per-client tokens/s (each
 *     client's tokens over its own request time); medians over `--runs` rounds.
 * (b) Time to the first token of the 10th turn of a 10-turn chat, with the prompt cache on (the
 *     server's default `--prompt-cache-mb`) and off (`--prompt-cache-mb 0`): the server's own
 *     `timings` (queue + prompt processing) and the client's time to the first content; medians
 *     over `--runs` conversations (each its own, so none reuses another's states).
 *
 * Peak server RSS (VmHWM of the child) for each server started. Writes
 * bench/results/<date>-<machine>-serve.json and prints one JSON line with the medians.
 *
 * The model is LFM2-1.2B's shape with random weights (`lfm2BenchCheckpoint`, the plain-words
 * tokenizer so replies decode to text and stream as content), symlinked into a temporary models
 * folder; `--model tiny` takes the bundled tiny fixture instead (a quick smoke run), `--model DIR`
 * any checkpoint folder.
 *
 *   npm run bench:serve -- [--model lfm2-1.2b|tiny|DIR] [--precision q4] [--threads 2] [--clients 1,2,4,8]
 *                          [--max-tokens 64] [--runs 3] [--turns 10] [--turn-tokens 32]
 *                          [--max-batch N[,M…]] [--serve-args "--flag value ..."]
 *
 * `--max-batch` is handed to `lfm serve` (decode-step batching); a list such as `1,4` measures the
 * concurrency rounds once per value, each on its own server, in the same run (the prompt-cache part
 * runs at the last value). `--serve-args` passes any other serve flags.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import OpenAI from "openai";
import { ROOT, benchCacheDir, formatLoad, lfm2BenchCheckpoint, machineInfo, median, writeResults } from "./bench-kit.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "lfm2-1.2b" },
    precision: { type: "string", default: "q4" },
    threads: { type: "string", default: "2" },
    clients: { type: "string", default: "1,2,4,8" },
    "max-tokens": { type: "string", default: "64" },
    runs: { type: "string", default: "3" },
    turns: { type: "string", default: "10" },
    "turn-tokens": { type: "string", default: "32" },
    "max-batch": { type: "string" },
    "serve-args": { type: "string", default: "" },
  },
});
const settings = {
  model: values.model,
  precision: values.precision,
  threads: Number(values.threads),
  clients: values.clients.split(",").map(Number),
  maxTokens: Number(values["max-tokens"]),
  runs: Number(values.runs),
  turns: Number(values.turns),
  turnTokens: Number(values["turn-tokens"]),
  /** One server per value for the concurrency rounds; [undefined]: the server's default. */
  maxBatches: values["max-batch"] === undefined ? [undefined] : values["max-batch"].split(",").map(Number),
  serveArgs: values["serve-args"],
};
if (settings.clients.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`--clients wants a list of counts such as 1,2,4,8 (got ${values.clients})`);
if (settings.maxBatches.some((b) => b !== undefined && (!Number.isInteger(b) || b < 1))) throw new Error(`--max-batch wants counts such as 1,4 (got ${values["max-batch"]})`);
if (settings.turns < 1) throw new Error("--turns must be at least 1");

const loadStart = loadavg();
const MODEL_ID = "bench-model";
const modelDir = (() => {
  if (values.model === "tiny") return join(ROOT, "fixtures/text/tiny-lfm2");
  if (values.model === "lfm2-1.2b" || values.model === "lfm2-350m" || values.model === "lfm2-700m") return lfm2BenchCheckpoint(values.model, "words").dir;
  return values.model;
})();
const modelsDir = mkdtempSync(join(tmpdir(), "lfm-bench-serve-"));
symlinkSync(modelDir, join(modelsDir, MODEL_ID));

interface Server {
  url: string;
  child: ChildProcess;
  /** Peak resident memory of the server process (MiB), read from /proc (0 elsewhere). */
  peakRssMb(): number;
  stop(): Promise<void>;
}

/** Starts `lfm serve` on a free port with `extra` flags; resolves once it is listening. */
function startServe(extra: string[], maxBatch: number | undefined): Promise<Server> {
  const args = [
    join(ROOT, "bin/lfm.mjs"),
    "serve",
    "--port",
    "0",
    "--models-dir",
    modelsDir,
    "--precision",
    settings.precision,
    "--threads",
    String(settings.threads),
    "--max-queue",
    "64",
    ...(maxBatch === undefined ? [] : ["--max-batch", String(maxBatch)]),
    ...settings.serveArgs.split(/\s+/).filter(Boolean),
    ...extra,
  ];
  const child = spawn(process.execPath, args, { env: { ...process.env, LFM_CACHE_DIR: benchCacheDir }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`lfm serve exited (${code}): ${stderr}`)));
    child.stdout!.on("data", (d) => {
      stdout += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(stdout);
      if (!m) return;
      resolve({
        url: m[1],
        child,
        peakRssMb: () => {
          try {
            const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
            return hwm ? Math.round(Number(hwm[1]) / 1024) : 0;
          } catch {
            return 0;
          }
        },
        stop: () => {
          child.kill("SIGINT");
          return exited;
        },
      });
    });
  });
}

/** Words for prompts: distinct per client and turn, so no two requests share more than the template. */
const WORDS = "pump valve gauge boiler turbine chiller compressor filter sensor relay breaker panel motor bearing seal pipe tank duct fan coil".split(" ");
const text = (seed: number, words: number) => Array.from({ length: words }, (_, i) => WORDS[(seed * 7 + i * 13 + ((seed * i) % 5)) % WORDS.length]).join(" ");

interface StreamResult {
  tokens: number;
  /** From the request to its end, and to its first content (client side), ms. */
  totalMs: number;
  firstContentMs: number;
  /** The server's `timings` (queue_ms, prompt_ms, cached_tokens, …). */
  timings: Record<string, number>;
  content: string;
  promptTokens: number;
  cachedTokens: number;
}

async function streamOnce(client: OpenAI, messages: OpenAI.ChatCompletionMessageParam[], maxTokens: number): Promise<StreamResult> {
  const started = performance.now();
  const stream = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let firstContentMs = Number.NaN;
  let content = "";
  let usage: OpenAI.CompletionUsage | undefined;
  let timings: Record<string, number> = {};
  for await (const chunk of stream) {
    const piece = chunk.choices[0]?.delta?.content;
    if (piece) {
      if (Number.isNaN(firstContentMs)) firstContentMs = performance.now() - started;
      content += piece;
    }
    if (chunk.usage) {
      usage = chunk.usage;
      timings = (chunk as unknown as { timings: Record<string, number> }).timings;
    }
  }
  if (!usage) throw new Error("the stream carried no usage");
  return {
    tokens: usage.completion_tokens,
    totalMs: performance.now() - started,
    firstContentMs,
    timings,
    content,
    promptTokens: usage.prompt_tokens,
    cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
  };
}

const clientOf = (server: Server) => new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30 * 60_000 });

const round1 = (x: number) => Math.round(x * 10) / 10;

/** (a): rounds of `clients` concurrent streams; medians of total and per-client tokens/s. */
async function throughput(server: Server) {
  const rows = [];
  let seed = 1000;
  for (const clients of settings.clients) {
    const totals: number[] = [];
    const perClient: number[] = [];
    const tokens: number[] = [];
    const decode: number[] = [];
    const decodeInAll: number[] = [];
    for (let run = 0; run < settings.runs; run++) {
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: clients }, () => {
          const s = seed++;
          // The request number makes every prompt unique: a prompt seen before would continue from the
          // prompt cache's state and skip its prefill, which is not what these rounds measure.
          return streamOnce(clientOf(server), [{ role: "user", content: `Request ${s}: write about ${text(s, 24)}` }], settings.maxTokens);
        }),
      );
      const wallS = (performance.now() - started) / 1000;
      const generated = results.reduce((sum, r) => sum + r.tokens, 0);
      totals.push(generated / wallS);
      perClient.push(median(results.map((r) => r.tokens / (r.totalMs / 1000))));
      tokens.push(generated / clients);
      decode.push(median(results.map((r) => r.timings.tokens_per_s)));
      decodeInAll.push(results.reduce((sum, r) => sum + r.timings.tokens_per_s, 0));
      if (results.some((r) => r.cachedTokens > 0)) throw new Error("a throughput request reused the prompt cache: its prompts must be unique");
      process.stderr.write(`  ${clients} client(s), run ${run + 1}: ${round1(generated / wallS)} tokens/s in all\n`);
    }
    rows.push({ clients, totalTokensPerS: round1(median(totals)), perClientTokensPerS: round1(median(perClient)), serverDecodeTokensPerS: round1(median(decode)), serverDecodeTokensPerSInAll: round1(median(decodeInAll)), tokensPerReply: median(tokens) });
  }
  return rows;
}

/** (b): `--turns`-turn chats; the last turn's time to first token, medians over `--runs` conversations. */
async function lastTurnFirstToken(server: Server) {
  const serverMs: number[] = [];
  const clientMs: number[] = [];
  const cached: number[] = [];
  const prompt: number[] = [];
  for (let run = 0; run < settings.runs; run++) {
    const history: OpenAI.ChatCompletionMessageParam[] = [{ role: "system", content: `Conversation ${run}: the plant's maintenance assistant.` }];
    let last: StreamResult | undefined;
    for (let turn = 0; turn < settings.turns; turn++) {
      history.push({ role: "user", content: `Turn ${turn}: ${text(run * 100 + turn, 40)}?` });
      last = await streamOnce(clientOf(server), history, settings.turnTokens);
      history.push({ role: "assistant", content: last.content });
    }
    serverMs.push(last!.timings.queue_ms + last!.timings.prompt_ms);
    clientMs.push(last!.firstContentMs);
    cached.push(last!.cachedTokens);
    prompt.push(last!.promptTokens);
  }
  return { promptTokens: median(prompt), cachedTokens: median(cached), firstTokenMs: round1(median(serverMs)), clientFirstContentMs: round1(median(clientMs.filter((x) => !Number.isNaN(x)))) };
}

async function withServer<T>(extra: string[], maxBatch: number | undefined, measure: (server: Server) => Promise<T>): Promise<T & { peakRssMb: number }> {
  const server = await startServe(extra, maxBatch);
  try {
    // Loads the model (and builds its graphs on a first run) before anything is timed.
    await streamOnce(clientOf(server), [{ role: "user", content: "Warm up." }], 4);
    const result = await measure(server);
    return { ...result, peakRssMb: server.peakRssMb() };
  } finally {
    await server.stop();
  }
}

try {
  process.stderr.write(`serving ${modelDir} (${settings.precision}, ${settings.threads} threads)\n`);
  const concurrency = [];
  for (const maxBatch of settings.maxBatches) {
    process.stderr.write(`concurrency rounds, --max-batch ${maxBatch ?? "(default)"}…\n`);
    const measured = await withServer([], maxBatch, async (server) => ({ rows: await throughput(server) }));
    concurrency.push({ maxBatch: maxBatch ?? "default", rows: measured.rows, peakRssMb: measured.peakRssMb });
  }
  const cacheBatch = settings.maxBatches[settings.maxBatches.length - 1];
  process.stderr.write("10-turn chat, prompt cache on…\n");
  const cacheOn = await withServer([], cacheBatch, lastTurnFirstToken);
  process.stderr.write("10-turn chat, prompt cache off…\n");
  const cacheOff = await withServer(["--prompt-cache-mb", "0"], cacheBatch, lastTurnFirstToken);
  const summary = {
    bench: "serve",
    ...settings,
    concurrency,
    lastTurn: { cacheOn, cacheOff, firstTokenSpeedup: round1(cacheOff.firstTokenMs / cacheOn.firstTokenMs) },
  };
  const file = writeResults("serve", {
    settings,
    loadStart,
    notes: [
      `model ${values.model} (${modelDir}), random weights: replies are noise, their cost is real`,
      "concurrency: medians over runs of total generated tokens/s (all clients' tokens over the round's wall time) and per-client tokens/s (a client's tokens over its own request time)",
      `lastTurn: time to the first token of turn ${settings.turns} (server timings queue_ms + prompt_ms; clientFirstContentMs is the client's wait for the first content), prompt cache on vs --prompt-cache-mb 0`,
      `uptime load at the start ${formatLoad(loadStart)}`,
    ],
    results: [summary],
  });
  process.stderr.write(`results in ${file}\n`);
  console.log(JSON.stringify({ ...summary, machine: machineInfo() }));
} finally {
  rmSync(modelsDir, { recursive: true, force: true });
}
