/**
 * Commands beyond the text core's (which live in cli.ts): one import and one list entry each,
 * so every stage's command stays in its own file.
 */
import type { CliCommand } from "./cli-kit.ts";

export const EXTRA_COMMANDS: CliCommand[] = [];
