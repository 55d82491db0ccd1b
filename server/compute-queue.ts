/**
 * One bounded compute queue per model. A model runs one job at a time (its ONNX session already
 * uses every core a decode step can use), except that up to `concurrency` shared jobs may run
 * together: chats on a text model, whose decode steps are batched (text-core/decode-batcher.ts,
 * `lfm serve --max-batch`). Any other job has the model to itself. At most `maxWaiting` more wait
 * their turn, in arrival order (a job that must wait holds up those behind it). A job that would
 * exceed that is refused at once (QUEUE_FULL, HTTP 429) with a guess of when to retry, rather than
 * piling up work a client will have given up on. A waiting job whose signal aborts (its client
 * disconnected) leaves the queue without running.
 */
import { LfmError } from "../text-core/errors.ts";
import { ApiError } from "./errors.ts";

interface Waiter {
  /** Slots the job takes: 1 when shared, all of them when not. */
  slots: number;
  start: () => void;
}

export interface QueuedJobOptions {
  /** Runs beside other shared jobs, up to the queue's concurrency (default false: alone). */
  shared?: boolean;
}

export class ComputeQueue {
  /** Slots taken by running jobs. */
  private used = 0;
  private running = 0;
  private readonly waiting: Waiter[] = [];
  /** Mean job duration (exponential moving average), ms: the basis of Retry-After. */
  private meanJobMs = 1000;

  constructor(
    readonly name: string,
    readonly maxWaiting: number,
    /** Shared jobs run at once (1: one job per model at a time). */
    readonly concurrency = 1,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new LfmError("INVALID_ARGUMENT", `a compute queue runs at least one job at a time (got ${concurrency}).`);
  }

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
  async run<T>(signal: AbortSignal, job: () => Promise<T>, opts: QueuedJobOptions = {}): Promise<T> {
    if (signal.aborted) throw new LfmError("ABORTED", "the request was cancelled before it ran.");
    const slots = opts.shared ? 1 : this.concurrency;
    if (this.waiting.length > 0 || this.used + slots > this.concurrency) {
      if (this.waiting.length >= this.maxWaiting) {
        const seconds = Math.max(1, Math.ceil(((this.waiting.length + 1) * this.meanJobMs) / this.concurrency / 1000));
        throw new ApiError("QUEUE_FULL", `model ${this.name} is busy: ${this.running} running and ${this.waiting.length} waiting (--max-queue ${this.maxWaiting}); retry in about ${seconds} s.`, null, seconds);
      }
      await this.waitTurn(signal, slots);
    } else this.used += slots;
    this.running++;
    const started = performance.now();
    try {
      return await job();
    } finally {
      this.meanJobMs = 0.8 * this.meanJobMs + 0.2 * (performance.now() - started);
      this.running--;
      this.used -= slots;
      this.startWaiting();
    }
  }

  /** Resolves when the job's slots have been given to it by `startWaiting`. */
  private waitTurn(signal: AbortSignal, slots: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        this.startWaiting(); // it may have held up shared jobs behind it
        reject(new LfmError("ABORTED", "the request was cancelled while it waited in the queue."));
      };
      const waiter: Waiter = {
        slots,
        start: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      this.waiting.push(waiter);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Starts waiting jobs, first come first, while their slots are free. */
  private startWaiting(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0].slots <= this.concurrency) {
      const waiter = this.waiting.shift() as Waiter;
      this.used += waiter.slots;
      waiter.start();
    }
  }
}
