/**
 * Error messages quote what the user gave (file names, flag values): their control characters
 * reach the terminal as visible escapes, never as sequences a terminal acts on.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runLfm } from "../helpers/cli.ts";

describe("error messages on stderr", () => {
  it("a missing file whose name carries an OSC sequence is named with the escape shown", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-error-escapes-"));
    const r = runLfm(["generate", "--prompt-file", join(dir, "report\x1b]0;pwned\x07.txt")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error \[FILE_NOT_FOUND\]: /m);
    expect(r.stderr).toContain("report\\x1b]0;pwned\\x07.txt");
    expect(r.stderr).not.toMatch(/[\x07\x1b]/);
  });

  it("a flag value with a CSI sequence is quoted escaped", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-error-escapes-"));
    writeFileSync(join(dir, "p.txt"), "x");
    const r = runLfm(["generate", "--prompt-file", join(dir, "p.txt"), "--precision", "q4\x1b[2J"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("q4\\x1b[2J");
    expect(r.stderr).not.toContain("\x1b");
  });
});
