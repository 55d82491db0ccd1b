/** The per-model queue: one job at a time, a bounded wait in arrival order, refusals and cancellations. */
import { describe, expect, it } from "vitest";
import { ComputeQueue } from "../../server/compute-queue.ts";
import { ApiError } from "../../server/errors.ts";
import { expectCode } from "../helpers/errors.ts";

/** A job that runs until `finish()` is called; `started` says whether it began. */
function gate() {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const job = { started: false, finish: () => finish(), run: async () => ((job.started = true), await done) };
  return job;
}

const live = () => new AbortController().signal;

describe("ComputeQueue", () => {
  it("runs one job at a time, the waiting ones in arrival order", async () => {
    const q = new ComputeQueue("m", 2);
    const order: string[] = [];
    const a = gate();
    const runA = q.run(live(), async () => (await a.run(), order.push("a")));
    const runB = q.run(live(), async () => order.push("b"));
    const runC = q.run(live(), async () => order.push("c"));
    await Promise.resolve();
    expect([q.active, q.depth]).toEqual([1, 2]);
    a.finish();
    await Promise.all([runA, runB, runC]);
    expect(order).toEqual(["a", "b", "c"]);
    expect([q.active, q.depth]).toEqual([0, 0]);
  });

  it("refuses a job beyond max waiting with QUEUE_FULL and a retry time", async () => {
    const q = new ComputeQueue("m", 1);
    const a = gate();
    const runA = q.run(live(), a.run);
    const runB = q.run(live(), async () => {});
    const e = await expectCode(q.run(live(), async () => {}), "QUEUE_FULL", "--max-queue 1");
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    a.finish();
    await Promise.all([runA, runB]);
  });

  it("drops a waiting job whose client went away, without running it", async () => {
    const q = new ComputeQueue("m", 4);
    const a = gate();
    const runA = q.run(live(), a.run);
    const gone = new AbortController();
    let ran = false;
    const runB = q.run(gone.signal, async () => void (ran = true));
    gone.abort();
    await expectCode(runB, "ABORTED");
    expect(q.depth).toBe(0);
    a.finish();
    await runA;
    expect(ran).toBe(false);
    // The slot is free again.
    expect(await q.run(live(), async () => 7)).toBe(7);
  });

  it("frees the slot when a job fails", async () => {
    const q = new ComputeQueue("m", 0);
    await expect(q.run(live(), async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(q.active).toBe(0);
    expect(await q.run(live(), async () => "ok")).toBe("ok");
  });

  it("runs up to `concurrency` shared jobs together; any other job runs alone, in arrival order", async () => {
    const q = new ComputeQueue("m", 8, 3);
    const shared = { shared: true };
    const [a, b, c, d, e] = [gate(), gate(), gate(), gate(), gate()];
    const order: string[] = [];
    const track = (name: string, g: ReturnType<typeof gate>) => async () => (order.push(name), await g.run());
    const runA = q.run(live(), track("a", a), shared);
    const runB = q.run(live(), track("b", b), shared);
    const runX = q.run(live(), track("x", c)); // alone: waits for a and b, and holds up d
    const runD = q.run(live(), track("d", d), shared);
    await Promise.resolve();
    expect([q.active, q.depth]).toEqual([2, 2]);
    a.finish();
    await runA;
    expect(order).toEqual(["a", "b"]);
    b.finish();
    await runB;
    await Promise.resolve();
    expect(order).toEqual(["a", "b", "x"]);
    expect([q.active, q.depth]).toEqual([1, 1]);
    const gone = new AbortController();
    const runE = q.run(gone.signal, track("e", e), shared);
    c.finish();
    await runX;
    await Promise.resolve();
    expect(order).toEqual(["a", "b", "x", "d", "e"]);
    expect([q.active, q.depth]).toEqual([2, 0]);
    d.finish();
    e.finish();
    await Promise.all([runD, runE]);
    expect(() => new ComputeQueue("m", 1, 0)).toThrow();
  });

  it("an aborted waiter that held up shared jobs lets them start", async () => {
    const q = new ComputeQueue("m", 8, 2);
    const a = gate();
    const runA = q.run(live(), a.run, { shared: true });
    const gone = new AbortController();
    const runX = q.run(gone.signal, async () => {}); // alone: waits for a
    let started = false;
    const runB = q.run(live(), async () => void (started = true), { shared: true });
    await Promise.resolve();
    expect(started).toBe(false);
    gone.abort();
    await expectCode(runX, "ABORTED");
    await runB;
    expect(started).toBe(true);
    a.finish();
    await runA;
  });
});
