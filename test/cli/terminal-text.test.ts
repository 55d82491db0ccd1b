import { describe, expect, it } from "vitest";
import { terminalLine, terminalText } from "../../cli/terminal-text.ts";

describe("terminal-safe text", () => {
  it("OSC, CSI (7- and 8-bit), BEL and bidi overrides become visible escapes", () => {
    expect(terminalText("x \x1b]0;pwned\x07 y")).toBe("x \\x1b]0;pwned\\x07 y");
    expect(terminalText("\x1b[2J\x9b2J")).toBe("\\x1b[2J\\x9b2J");
    expect(terminalText("abc\u202edef\u2066")).toBe("abc\\u202edef\\u2066");
    expect(terminalText("over\rwrite\x7f")).toBe("over\\rwrite\\x7f");
  });

  it("multi-line text keeps newlines and tabs, a line does not", () => {
    expect(terminalText("a\n\tb")).toBe("a\n\tb");
    expect(terminalLine("report\n2024.txt\t")).toBe("report\\n2024.txt\\t");
  });

  it("ordinary text of any script is unchanged", () => {
    const s = "Pumpe 7 — Druck 31,0 bar; 泵 7; насос №7; مضخة ٧ 🛠️";
    expect(terminalText(s)).toBe(s);
    expect(terminalLine(s)).toBe(s);
  });
});
