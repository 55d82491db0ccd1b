/** `lfm <command> --help` is current: it names every flag the command parses, and only those. */
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../../cli/commands.ts";

/** `--max-tokens`, `--prompt=-x`: a long flag as a help text writes it. */
const LONG_FLAG = /(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)/g;

function flagsIn(help: string): Set<string> {
  return new Set([...help.matchAll(LONG_FLAG)].map((m) => m[1]));
}

describe("command help", () => {
  it("every command declares the flags it parses", () => {
    for (const command of COMMANDS) expect(Object.keys(command.options).length, command.name).toBeGreaterThan(0);
  });

  for (const command of COMMANDS) {
    it(`lfm ${command.name} --help names each of its flags and no other`, () => {
      const named = flagsIn(command.help);
      // --help itself is every command's, listed by `lfm --help`.
      const missing = Object.entries(command.options)
        .filter(([name, o]) => name !== "help" && !named.has(name) && !(o.short && new RegExp(`(?<![\\w-])-${o.short}\\b`).test(command.help)))
        .map(([name]) => `--${name}`);
      expect(missing, `flags lfm ${command.name} takes but its --help does not mention`).toEqual([]);
      const unknown = [...named].filter((name) => !Object.hasOwn(command.options, name)).map((name) => `--${name}`);
      expect(unknown, `flags lfm ${command.name} --help mentions but the command refuses`).toEqual([]);
    });
  }
});
