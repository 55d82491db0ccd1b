/**
 * Every `lfm` command, in the order `lfm --help` lists them: one import and one entry each, so
 * each stage's commands stay in their own file.
 */
import { agentCommand } from "./agent.ts";
import { askCommand } from "./ask.ts";
import { audioChatCommand } from "./audio-chat.ts";
import { benchCommand } from "./bench.ts";
import { cacheCommand } from "./cache.ts";
import type { CliCommand } from "./cli-kit.ts";
import { describeCommand } from "./describe.ts";
import { encodeCommand } from "./encode.ts";
import { askDocCommand, extractCommand } from "./extract.ts";
import { indexCommand, searchCommand } from "./index-search.ts";
import { profileCommand } from "./profile.ts";
import { serveCommand } from "./serve.ts";
import { speakCommand } from "./speak.ts";
import { chatCommand, generateCommand, tokenizeCommand } from "./text.ts";
import { transcribeCommand } from "./transcribe.ts";

export const COMMANDS: CliCommand[] = [
  tokenizeCommand,
  generateCommand,
  chatCommand,
  describeCommand,
  extractCommand,
  askDocCommand,
  encodeCommand,
  transcribeCommand,
  speakCommand,
  audioChatCommand,
  agentCommand,
  indexCommand,
  searchCommand,
  askCommand,
  serveCommand,
  cacheCommand,
  profileCommand,
  benchCommand,
];
