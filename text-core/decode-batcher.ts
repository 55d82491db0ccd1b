/**
 * Decode-step batching: several generations on one model share each decode call. A forward pass
 * with B rows of one token costs far less than B passes of one row (the weights are read once per
 * call; LFM2-1.2B q4, 2 threads: 58 ms for 1 row, 102 ms for 4), so concurrent requests get more
 * tokens per second in total than they would one after another.
 *
 * How a generation uses it (`GenerateOptions.batcher`, generate.ts): its prompt runs alone on its
 * own one-row state, in pieces of `prefillChunk` tokens taken between batch steps (`prefill`), so a
 * long prompt holds the others up for one piece at a time, not for all of it. The state then
 * `join`s; each `step` hands in the row's next token(s) and resolves with that row's logits.
 * The batcher runs one forward call over every row that has a token waiting. `leave` takes the row
 * out again, and can give back its own one-row state (what `onState("end")` keeps).
 *
 * Rows are only ever moved between states whole, with `DecodeState.gather`: a state never holds a
 * padding position in the middle of a row (which LFM2's short convolutions would not ignore: a
 * masked step still shifts a zero into the conv window). When the set of rows in a step changes
 * (a row joins, leaves, or has not handed in its token in time) the batched state is re-laid:
 * every row right-aligned to the longest, shorter ones left-padded, which is exactly neutral (see
 * `DecodeState.gather`). So every row computes what it would alone, up to the floating-point
 * differences of a matrix multiplication over several rows instead of one:
 * - fp32: the same tokens (greedy and seeded sampling) and logits within ~1e-5 of the alone run
 *   on the tiny model, 8e-5 on the LFM2-350M shape (test/text-core/decode-batcher.test.ts holds
 *   them to DESIGN.md's tolerances).
 * - q4 (and q8): the quantised MatMuls round their activations to int8, which turns a
 *   rounding-level difference into a whole quantum wherever a value sits at a rounding boundary,
 *   and later layers carry it on. Batching makes two rounding-level differences: MatMulNBits takes
 *   another path for a one-row call than for a several-row one (~3e-6 after one layer), and
 *   attention's result for a row moves by ~1e-6 with the left padding the other rows' lengths give
 *   it. Measured (bench/decode-batch.ts and by hand): tiny model, a step's logits within ~1e-5 of
 *   the alone run's but now and then one moved by ~0.16, greedy replies the same; LFM2-1.2B shape
 *   (random weights), hidden states up to 0.2 apart after 16 layers, last logits up to ~2 apart
 *   (they span ±60), and some greedy replies of 4 and 8 concurrent runs differed from their alone
 *   runs. So at q4 a reply depends on what ran beside it (as q4's jump-forward and prefix-state reuse
 *   already differ from one token at a time); at fp32 it does not.
 *
 * A step waits for every row of the previous step to hand in its next token: sampling between
 * steps takes a millisecond or so. A row whose consumer is slow (a client reading with
 * back-pressure) is not waited for longer than `idleMs`: the step runs without it, and the row
 * moves out of the batched state until it hands its token in. Steps, prompt pieces and re-layouts
 * run one at a time, in arrival order (`exclusive`).
 */
import { LfmError } from "./errors.ts";
import { DecodeState, type ForwardRequest, type Lfm2Runtime } from "./runtime.ts";

export interface DecodeBatcherOptions {
  /** How long a step waits for a row of the previous step to hand in its next token, ms (default 25). */
  idleMs?: number;
}

/** KV positions a re-laid batched state has room for beyond its longest row (it grows by half beyond). */
const BATCH_HEADROOM = 256;

/** One generation's place in a `DecodeBatcher`. */
export class BatchRow {
  /** The row's own one-row state while it is not in the batched state. */
  state: DecodeState | undefined;
  /** Tokens handed in and not yet run (more than one for a forced run: one per step). */
  queue: number[] = [];
  waiter: { resolve: (logits: Float32Array) => void; reject: (e: unknown) => void } | undefined;
  /** Set once `leave` has been called. */
  leaving = false;
  /** Why the row cannot go on: a step it was in failed (its state went with the batched one). */
  failure: unknown;

  constructor(
    private readonly batcher: DecodeBatcher,
    state: DecodeState,
  ) {
    this.state = state;
  }

  /** Runs `ids` (one per step) after what the row holds; resolves with the logits after the last one [V]. */
  step(ids: readonly number[]): Promise<Float32Array> {
    return this.batcher.submit(this, ids);
  }

  /**
   * Takes the row out of the batcher (a second call does nothing). With `keepState`, resolves
   * with its own one-row state: the prompt and every token run, as if it had run alone.
   */
  leave(keepState = false): Promise<DecodeState | undefined> {
    return this.batcher.leave(this, keepState);
  }
}

export class DecodeBatcher {
  private readonly idleMs: number;
  /** Every row that has joined and not left. */
  private readonly rows = new Set<BatchRow>();
  /** The rows of `batch`, in its row order. */
  private members: BatchRow[] = [];
  private batch: DecodeState | undefined;
  /** The end of the chain of exclusive work (steps, prompt pieces, leaves). */
  private tail: Promise<void> = Promise.resolve();
  private stepQueued = false;
  private timer: NodeJS.Timeout | undefined;
  /** Rows in the latest step (0 when none is active). */
  private lastStepRows = 0;
  /** Steps run, rows run in them, and rows a step went without while they were still active (for measurements and tests). */
  steps = 0;
  rowSteps = 0;
  idleRows = 0;

  constructor(
    readonly runtime: Lfm2Runtime,
    opts: DecodeBatcherOptions = {},
  ) {
    const idleMs = opts.idleMs ?? 25;
    if (!(idleMs >= 0) || !Number.isFinite(idleMs)) throw new LfmError("INVALID_ARGUMENT", `idleMs must be a non-negative number of milliseconds (got ${idleMs}).`);
    this.idleMs = idleMs;
  }

  /** Rows in the latest decode step; 0 when no generation is active. */
  get batchSize(): number {
    return this.rows.size === 0 ? 0 : this.lastStepRows;
  }

  /** Generations that have joined and not left. */
  get activeRows(): number {
    return this.rows.size;
  }

  /** Runs `work` when everything handed in before it has finished, alone on the model. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work);
    this.tail = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /**
   * Runs a prompt through a one-row `state`, in pieces of the runtime's `prefillChunk` tokens taken
   * between batch steps; resolves with the last position's logits. (The pieces are those
   * `Lfm2Runtime.forward` runs a long prompt in, so the result is the same.) A prompt with
   * replaced embedding rows runs in one call. `signal` is checked between pieces.
   */
  async prefill(state: DecodeState, ids: readonly number[], overrides?: ForwardRequest["overrides"], signal?: AbortSignal): Promise<Float32Array> {
    if (state.batch !== 1) throw new LfmError("INVALID_ARGUMENT", `the decode batcher prefills one-row states (got ${state.batch} rows).`);
    if (overrides) return (await this.exclusive(() => this.runtime.forward(state, { ids: [ids.slice()], overrides }))).output;
    const chunk = this.runtime.prefillChunk;
    let logits: Float32Array | undefined;
    for (let start = 0; start < ids.length; start += chunk) {
      if (signal?.aborted) throw new LfmError("ABORTED", "generation was cancelled.");
      const piece = ids.slice(start, start + chunk);
      logits = (await this.exclusive(() => this.runtime.forward(state, { ids: [piece] }))).output;
    }
    if (!logits) throw new LfmError("EMPTY_PROMPT", "nothing to run: the token list is empty.");
    return logits;
  }

  /** Adds a sequence whose one-row `state` holds its prompt; it takes part in the steps it hands tokens in for. */
  join(state: DecodeState): BatchRow {
    if (state.batch !== 1) throw new LfmError("INVALID_ARGUMENT", `a row joins the decode batcher with a one-row state (got ${state.batch} rows).`);
    const row = new BatchRow(this, state);
    this.rows.add(row);
    return row;
  }

  /** See `BatchRow.step`. */
  submit(row: BatchRow, ids: readonly number[]): Promise<Float32Array> {
    if (row.failure !== undefined) return Promise.reject(row.failure);
    if (row.leaving || !this.rows.has(row)) return Promise.reject(new LfmError("INVALID_ARGUMENT", "this row has left the decode batcher."));
    if (row.waiter) return Promise.reject(new LfmError("INVALID_ARGUMENT", "a row hands in its next tokens only after its previous step has finished."));
    if (ids.length === 0) return Promise.reject(new LfmError("EMPTY_PROMPT", "a decode step needs at least one token."));
    return new Promise<Float32Array>((resolve, reject) => {
      row.queue = ids.slice();
      row.waiter = { resolve, reject };
      this.schedule();
    });
  }

  /** See `BatchRow.leave`. */
  leave(row: BatchRow, keepState: boolean): Promise<DecodeState | undefined> {
    if (row.leaving) return Promise.resolve(undefined);
    row.leaving = true;
    return this.exclusive(async () => {
      this.rows.delete(row);
      row.queue = [];
      const waiter = row.waiter;
      row.waiter = undefined;
      waiter?.reject(new LfmError("ABORTED", "the row left the decode batcher before its step ran."));
      const at = this.members.indexOf(row);
      const own = at >= 0 && this.batch ? DecodeState.gather([{ state: this.batch, row: at }]) : row.state;
      row.state = undefined; // a member's row stays in `batch` until the next re-layout
      if (this.rows.size === 0) {
        this.batch = undefined;
        this.members = [];
        this.lastStepRows = 0;
      }
      this.schedule(); // the others may have been waiting for this row's token
      return keepState ? own : undefined;
    });
  }

  /**
   * Starts a step when every row of the previous one has its token in, or `idleMs` after the
   * first token came in, whichever is first.
   */
  private schedule(): void {
    if (this.stepQueued) return;
    const ready = [...this.rows].some((r) => r.queue.length > 0);
    if (!ready) return;
    const waitingFor = this.members.some((r) => !r.leaving && this.rows.has(r) && r.queue.length === 0);
    if (!waitingFor) {
      this.startStep();
      return;
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.startStep();
      }, this.idleMs);
      this.timer.unref?.();
    }
  }

  private startStep(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.stepQueued) return;
    this.stepQueued = true;
    void this.exclusive(() => this.step()).finally(() => {
      this.stepQueued = false;
      this.schedule();
    });
  }

  /** One forward call over every row with a token waiting. */
  private async step(): Promise<void> {
    const live = (r: BatchRow) => !r.leaving && this.rows.has(r) && r.queue.length > 0;
    const next = [...this.members.filter(live), ...[...this.rows].filter((r) => live(r) && !this.members.includes(r))];
    if (next.length === 0) return;
    try {
      if (!this.batch || next.length !== this.members.length || next.some((r, i) => this.members[i] !== r)) this.relayout(next);
      const ids = next.map((r) => [r.queue.shift() as number]);
      const { output, width } = await this.runtime.forward(this.batch as DecodeState, { ids });
      this.steps++;
      this.rowSteps += next.length;
      this.lastStepRows = next.length;
      next.forEach((r, i) => {
        if (r.queue.length > 0) return; // a forced run: its next token goes in the next step
        const waiter = r.waiter;
        r.waiter = undefined;
        waiter?.resolve(output.slice(i * width, (i + 1) * width));
      });
    } catch (e) {
      // The batched state may be half-advanced: its rows cannot go on. Rows outside it can.
      for (const r of new Set([...this.members, ...next])) {
        if (r.state === undefined) {
          r.failure = e;
          r.queue = [];
          const waiter = r.waiter;
          r.waiter = undefined;
          waiter?.reject(e);
          this.rows.delete(r);
        }
      }
      this.batch = undefined;
      this.members = [];
    }
  }

  /**
   * Makes `next` the rows of the batched state: members that stay are copied from it, rows that
   * come in from their own state; a member still active but not in `next` gets its own state back.
   */
  private relayout(next: BatchRow[]): void {
    const batch = this.batch;
    const index = new Map(this.members.map((r, i) => [r, i] as const));
    if (batch) {
      for (const [r, i] of index) {
        if (this.rows.has(r) && !r.leaving && !next.includes(r)) {
          r.state = DecodeState.gather([{ state: batch, row: i }]);
          this.idleRows++;
        }
      }
    }
    const parts = next.map((r) => {
      const at = index.get(r);
      if (at !== undefined && batch) return { state: batch, row: at };
      if (!r.state) throw new LfmError("RUNTIME_FAILED", "a decode-batch row lost its state.");
      return { state: r.state, row: 0 };
    });
    this.batch = DecodeState.gather(parts, BATCH_HEADROOM);
    for (const r of next) r.state = undefined;
    this.members = next;
  }
}
