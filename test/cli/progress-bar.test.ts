/** The progress line: counts, context (files beside passages), rate and ETA; silent when disabled. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ProgressBar } from "../../cli/progress-bar.ts";

function sink() {
  const writes: string[] = [];
  const out = { write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { out, writes };
}

afterEach(() => vi.useRealTimers());

describe("ProgressBar", () => {
  it("shows files and passages done, the rate and the ETA of the passages", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { out, writes } = sink();
    const bar = new ProgressBar(out, true);
    bar.update("indexing", 0, 100, "passages", "0/3 files");
    vi.advanceTimersByTime(2000);
    bar.update("indexing", 50, 100, "passages", "1/3 files");
    expect(writes.at(-1)).toBe("\r\x1b[2Kindexing   ██████████░░░░░░░░░░  50%  1/3 files  50/100 passages  25/s  ETA 0:02");
    bar.done();
    expect(writes.at(-1)).toBe("\r\x1b[2K");
  });

  it("writes nothing when disabled (stderr not a terminal, or --json)", () => {
    const { out, writes } = sink();
    const bar = new ProgressBar(out, false);
    bar.update("indexing", 1, 2, "passages", "0/1 files");
    bar.status("committing…");
    bar.done();
    expect(writes).toEqual([]);
  });
});
