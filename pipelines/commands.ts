/**
 * Commands beyond the text core's (which live in cli.ts): one import and one list entry each,
 * so every stage's command stays in its own file.
 */
import { audioChatCommand } from "./audio-chat-cli.ts";
import { cacheCommand } from "./cache-cli.ts";
import type { CliCommand } from "./cli-kit.ts";
import { describeCommand } from "./describe-cli.ts";
import { encodeCommand } from "./encode-cli.ts";
import { indexCommand, searchCommand } from "./index-cli.ts";
import { speakCommand } from "./speak-cli.ts";
import { transcribeCommand } from "./transcribe-cli.ts";

export const EXTRA_COMMANDS: CliCommand[] = [describeCommand, encodeCommand, transcribeCommand, speakCommand, audioChatCommand, indexCommand, searchCommand, cacheCommand];
