/** An in-process `lfm serve` on port 0 over the bundled tiny models, and an OpenAI client for it. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { type RunningServer, type ServerOptions, startServer } from "../../server/app.ts";
import { Metrics } from "../../server/metrics.ts";
import { ModelRegistry, entriesOf } from "../../server/model-registry.ts";
import { runLfm } from "../helpers/cli.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

export const TINY_MODELS = [
  { id: "tiny-lfm2", dir: join(FIXTURES, "text", "tiny-lfm2") },
  { id: "tiny-lfm2-vl", dir: join(FIXTURES, "vision", "tiny-lfm2-vl") },
  { id: "tiny-lfm2-audio", dir: join(FIXTURES, "audio", "tiny-lfm2-audio"), mimi: join(FIXTURES, "audio", "tiny-mimi") },
];

export interface TestServer extends RunningServer {
  registry: ModelRegistry;
  /** A client as an app would make one (no retries, so a 429 reaches the test). */
  client(apiKey?: string): OpenAI;
}

export async function startTestServer(opts: Partial<ServerOptions> & { memoryBudgetBytes?: number } = {}): Promise<TestServer> {
  const metrics = opts.metrics ?? new Metrics();
  const registry = opts.registry ?? new ModelRegistry(entriesOf(TINY_MODELS), { cacheDir: TEST_CACHE, precision: "fp32", memoryBudgetBytes: opts.memoryBudgetBytes });
  const server = await startServer({ host: "127.0.0.1", port: 0, maxQueue: 4, bodyLimitBytes: 8 * 1024 ** 2, ...opts, registry, metrics });
  return {
    ...server,
    registry,
    client: (apiKey = opts.apiKey ?? "unused-key") => new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0, timeout: 60_000 }),
  };
}

/** The value of one series in the server's /metrics text (0 when absent). */
export async function metricValue(url: string, series: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/**
 * Writes `files` (name → text) under `dir`/docs and indexes them with `lfm index add` as
 * `dir`/indexes/`name`, as a user would; returns the indexes folder (for `--indexes-dir`).
 */
export function indexFiles(dir: string, name: string, files: Record<string, string>): string {
  const docs = join(dir, "docs");
  mkdirSync(docs);
  for (const [file, text] of Object.entries(files)) writeFileSync(join(docs, file), text);
  const indexes = join(dir, "indexes");
  mkdirSync(indexes);
  const r = runLfm(["index", "add", "--index", join(indexes, name), docs], { timeoutMs: 300_000 });
  if (r.status !== 0) throw new Error(`lfm index add failed: ${r.stderr}`);
  return indexes;
}
