/**
 * `lfm serve` under load, on loopback: a real server process (the bundled tiny models, a small
 * --max-queue) and 16 clients streaming for LFM_LOAD_SECONDS seconds (default 60; set it lower to
 * try the test quickly). Clients hold multi-turn chats (the prompt cache at work), abort some
 * replies mid-stream, and get 429 when the queue is full, which they honour (Retry-After) and retry.
 *
 * Checked: no 5xx nor any status but 200 and 429; the server alive afterwards; its resident memory
 * after the run (once settled) within a stated bound of what it was after a warm-up under the same
 * load; and once every client has gone, its CPU time stops growing: cancelled generations stop,
 * queued ones never start. Nothing here asserts a speed, so a loaded machine only makes it slower.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { startServe } from "./serve-process.ts";

const SECONDS = Number(process.env.LFM_LOAD_SECONDS ?? 60);
const CLIENTS = 16;
const MAX_QUEUE = 3;
/** How much resident memory may grow from after the warm-up to after the run: a leak of a few KiB per request over thousands of requests shows, allocator noise does not. */
const RSS_GROWTH_BOUND = 128 * 1024 ** 2;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** User + system CPU time of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat, after the command name). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

async function cacheBytes(url: string): Promise<number> {
  const line = (await (await fetch(`${url}/metrics`)).text()).split("\n").find((l) => l.startsWith('lfm_prompt_cache_bytes{model="tiny-lfm2"} '));
  return line ? Number(line.split(" ")[1]) : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Tally {
  statuses: Map<number, number>;
  completed: number;
  aborted: number;
  retryAfterMissing: number;
  errorsInStream: number;
}

/** One streamed chat request; aborts after the first content when `abortEarly`. Returns the reply text (empty when aborted or refused). */
async function chatOnce(url: string, messages: { role: string; content: string }[], maxTokens: number, abortEarly: boolean, tally: Tally): Promise<{ status: number; text: string; retryAfter?: number }> {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny-lfm2", messages, max_tokens: maxTokens, temperature: 0.7, stream: true }),
    signal: abort.signal,
  });
  tally.statuses.set(res.status, (tally.statuses.get(res.status) ?? 0) + 1);
  if (res.status !== 200) {
    const header = res.headers.get("retry-after");
    if (res.status === 429 && !(header && /^\d+$/.test(header) && Number(header) >= 1)) tally.retryAfterMissing++;
    await res.text();
    return { status: res.status, text: "", retryAfter: header ? Number(header) : undefined };
  }
  let text = "";
  let buffered = "";
  const decoder = new TextDecoder();
  try {
    for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(bytes, { stream: true });
      for (let nl = buffered.indexOf("\n\n"); nl >= 0; nl = buffered.indexOf("\n\n")) {
        const event = buffered.slice(0, nl).replace(/^data: /, "");
        buffered = buffered.slice(nl + 2);
        if (event === "[DONE]") continue;
        const data = JSON.parse(event) as { error?: unknown; choices?: { delta?: { content?: string } }[] };
        if (data.error) tally.errorsInStream++;
        const piece = data.choices?.[0]?.delta?.content;
        if (piece) {
          text += piece;
          if (abortEarly) {
            abort.abort();
            tally.aborted++;
            return { status: 200, text: "" };
          }
        }
      }
    }
  } catch (e) {
    if (!abort.signal.aborted) throw e;
    return { status: 200, text: "" };
  }
  tally.completed++;
  return { status: 200, text };
}

/** A client: chats of a few turns, until `until`; every third request of odd clients is abandoned mid-stream. */
async function client(url: string, index: number, until: number, tally: Tally): Promise<void> {
  let request = 0;
  while (Date.now() < until) {
    const history: { role: string; content: string }[] = [{ role: "system", content: `Client ${index}, shift log.` }];
    for (let turn = 0; turn < 4 && Date.now() < until; turn++) {
      history.push({ role: "user", content: `Reading ${turn} of line ${index}?` });
      const abortEarly = index % 2 === 1 && request++ % 3 === 0;
      const r = await chatOnce(url, history, 8 + ((index * 7 + turn * 11) % 40), abortEarly, tally);
      if (r.status === 429) {
        // Honour Retry-After, capped so a short local run still cycles.
        await sleep(Math.min(r.retryAfter ?? 1, 2) * 1000 * (0.5 + Math.random() / 2));
        turn--;
        history.pop();
        continue;
      }
      if (r.status !== 200) return;
      history.push({ role: "assistant", content: r.text });
    }
  }
}

async function runClients(url: string, seconds: number, tally: Tally): Promise<void> {
  const until = Date.now() + seconds * 1000;
  await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(url, i, until, tally)));
}

const newTally = (): Tally => ({ statuses: new Map(), completed: 0, aborted: 0, retryAfterMissing: 0, errorsInStream: 0 });

describe.skipIf(process.platform !== "linux")("lfm serve under load (/proc is read for memory and CPU time)", () => {
  it(
    `${CLIENTS} streaming clients for ${SECONDS} s: no 5xx, 429 with Retry-After when full, no leaked memory, cancellations free the CPU`,
    async () => {
      const server = await startServe(["--port", "0", "--max-queue", String(MAX_QUEUE), "--prompt-cache-mb", "32", "--threads", "1"], 120_000);
      const pid = server.child.pid!;
      try {
        // Warm-up under the same mix (graphs loaded, allocator and prompt cache at their working size).
        const warm = newTally();
        await runClients(server.url, Math.max(3, SECONDS / 6), warm);
        await sleep(1000);
        const rssWarm = rssBytes(pid);
        const cacheWarm = await cacheBytes(server.url);

        const tally = newTally();
        await runClients(server.url, SECONDS, tally);
        const statuses = Object.fromEntries(tally.statuses);
        expect(tally.statuses.get(200) ?? 0).toBeGreaterThan(0);
        for (const status of tally.statuses.keys()) expect([200, 429], `statuses seen: ${JSON.stringify(statuses)}`).toContain(status);
        expect(tally.statuses.get(429) ?? 0, "a queue of 3 for 16 clients fills").toBeGreaterThan(0);
        expect(tally.retryAfterMissing).toBe(0);
        expect(tally.errorsInStream).toBe(0);
        expect(tally.completed).toBeGreaterThan(0);
        expect(tally.aborted).toBeGreaterThan(0);

        // Every client goes at once, mid-stream or waiting in the queue, from replies that would run for many seconds.
        const aborts = Array.from({ length: CLIENTS }, () => new AbortController());
        const started = aborts.map(async (a, i) => {
          try {
            const res = await fetch(`${server.url}/v1/chat/completions`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ model: "tiny-lfm2", messages: [{ role: "user", content: `Tell the whole story, client ${i}.` }], max_tokens: 4000, temperature: 0.7, stream: true }),
              signal: a.signal,
            });
            for await (const _ of res.body as unknown as AsyncIterable<Uint8Array>) {
              /* reading until aborted */
            }
          } catch {
            /* aborted */
          }
        });
        await sleep(1500);
        for (const a of aborts) a.abort();
        await Promise.all(started);
        // The queue took 1 + MAX_QUEUE of them (the rest got 429): uncancelled, 4000 tokens each would
        // keep the server busy for tens of seconds; cancelled, it goes quiet: a 1 s window with under
        // 10 clock ticks (0.1 s at Linux's usual 100 Hz) of CPU time, found within a few seconds.
        let quietAfterMs: number | undefined;
        const abortedAt = Date.now();
        while (quietAfterMs === undefined && Date.now() - abortedAt < 8000) {
          const before = cpuTicks(pid);
          await sleep(1000);
          if (cpuTicks(pid) - before < 10) quietAfterMs = Date.now() - abortedAt;
        }
        expect(quietAfterMs, "the server's CPU time kept growing after every client had gone").toBeDefined();

        await sleep(2000);
        const rssAfter = rssBytes(pid);
        const cacheAfter = await cacheBytes(server.url);
        expect(rssAfter, `RSS after warm-up ${Math.round(rssWarm / 2 ** 20)} MiB, after the run ${Math.round(rssAfter / 2 ** 20)} MiB`).toBeLessThan(rssWarm + RSS_GROWTH_BOUND);

        const health = await fetch(`${server.url}/health`);
        expect(health.status).toBe(200);
        const after = await fetch(`${server.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "tiny-lfm2", messages: [{ role: "user", content: "Still there?" }], max_tokens: 4 }),
        });
        expect(after.status).toBe(200);
        console.log(`load: ${JSON.stringify(statuses)}, ${tally.completed} completed, ${tally.aborted} abandoned; RSS ${Math.round(rssWarm / 2 ** 20)} → ${Math.round(rssAfter / 2 ** 20)} MiB; quiet ${quietAfterMs} ms after the last client left; prompt cache ${mib(cacheWarm)} → ${mib(cacheAfter)} MiB`);
      } finally {
        expect(await server.stop()).toBe(0);
      }
    },
    (SECONDS * 1.2 + 180) * 1000,
  );
});
