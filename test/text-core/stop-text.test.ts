/** Stop strings found in streamed text, across piece boundaries, with nothing of them emitted. */
import { describe, expect, it } from "vitest";
import { StopTextMatcher } from "../../text-core/stop-text.ts";
import { expectCode } from "../helpers/errors.ts";

function run(stops: string[], pieces: string[]): { out: string; stopped: boolean } {
  const m = new StopTextMatcher(stops);
  let out = "";
  for (const p of pieces) out += m.push(p);
  out += m.flush();
  return { out, stopped: m.stopped };
}

describe("StopTextMatcher", () => {
  it("cuts at a stop string inside one piece", () => {
    expect(run(["END"], ["abcENDdef"])).toEqual({ out: "abc", stopped: true });
  });

  it("finds a stop string split over pieces and never emits its start", () => {
    const m = new StopTextMatcher(["</answer>"]);
    expect(m.push("42 </an")).toBe("42 ");
    expect(m.push("swer> more")).toBe("");
    expect(m.stopped).toBe(true);
  });

  it("releases held-back text that did not become a stop string", () => {
    const m = new StopTextMatcher(["</answer>"]);
    expect(m.push("a </a")).toBe("a ");
    expect(m.push("b")).toBe("</ab");
    expect(run(["xyz"], ["ab", "cx"])).toEqual({ out: "abcx", stopped: false });
  });

  it("stops at the earliest of several stop strings", () => {
    expect(run(["world", "lo"], ["hello world"]).out).toBe("hel");
  });

  it("refuses empty and too many stop strings", () => {
    expectCode(() => new StopTextMatcher([""]), "INVALID_ARGUMENT");
    expectCode(() => new StopTextMatcher(Array.from({ length: 17 }, (_, i) => `s${i}`)), "INVALID_ARGUMENT", "at most 16");
  });
});
