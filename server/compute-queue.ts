/**
 * One bounded compute queue per model. A model runs one job at a time (its ONNX session already
 * uses every core a decode step can use); at most `maxWaiting` more wait their turn, in arrival
 * order. A job that would exceed that is refused at once (QUEUE_FULL, HTTP 429) with a guess of when
 * to retry, rather than piling up work a client will have given up on. A waiting job whose signal
 * aborts (its client disconnected) leaves the queue without running.
 */
import { LfmError } from "../text-core/errors.ts";
import { ApiError } from "./errors.ts";

interface Waiter {
  start: () => void;
}

export class ComputeQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  /** Mean job duration (exponential moving average), ms: the basis of Retry-After. */
  private meanJobMs = 1000;

  constructor(
    readonly name: string,
    readonly maxWaiting: number,
    /** Jobs run at once (1: one generation per model at a time). */
    readonly concurrency = 1,
  ) {}

  /** Jobs waiting for their turn. */
  get depth(): number {
    return this.waiting.length;
  }

  /** Jobs running now. */
  get active(): number {
    return this.running;
  }

  /**
   * Runs `job` when its turn comes; QUEUE_FULL when `maxWaiting` jobs already wait, ABORTED when
   * `signal` aborts before its turn (a running job sees the signal itself).
   */
  async run<T>(signal: AbortSignal, job: () => Promise<T>): Promise<T> {
    if (signal.aborted) throw new LfmError("ABORTED", "the request was cancelled before it ran.");
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxWaiting) {
        const seconds = Math.max(1, Math.ceil(((this.waiting.length + 1) * this.meanJobMs) / this.concurrency / 1000));
        throw new ApiError("QUEUE_FULL", `model ${this.name} is busy: ${this.running} running and ${this.waiting.length} waiting (--max-queue ${this.maxWaiting}); retry in about ${seconds} s.`, null, seconds);
      }
      await this.waitTurn(signal);
    } else this.running++;
    const started = performance.now();
    try {
      return await job();
    } finally {
      this.meanJobMs = 0.8 * this.meanJobMs + 0.2 * (performance.now() - started);
      this.next();
    }
  }

  /** Resolves when a running job hands its slot over (the slot is then this job's). */
  private waitTurn(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new LfmError("ABORTED", "the request was cancelled while it waited in the queue."));
      };
      const waiter: Waiter = {
        start: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      this.waiting.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** A job ended: its slot goes to the first waiter, or is freed. */
  private next(): void {
    const waiter = this.waiting.shift();
    if (waiter) waiter.start();
    else this.running--;
  }
}
