/**
 * Text a command takes from a file or standard input instead of the command line: `--prompt-file
 * F`, `--messages -`, `cat report.txt | lfm generate`. A file must be a regular file; a text is
 * UTF-8 (a leading byte-order mark is dropped) of at most MAX_INPUT_BYTES. Standard input is read
 * only when it is not a terminal, so a command never waits on a keyboard nobody types at.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { isatty } from "node:tty";
import { LfmError } from "../text-core/errors.ts";
import { type Values, flagText } from "./flags.ts";

/** 16 MiB: far above any LFM2 context (128 k tokens ≈ 0.5 MB of text), small enough to hold at once. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** "-" as a file name: standard input. */
export const STDIN_NAME = "-";

const utf8 = new TextDecoder("utf-8", { fatal: true }); // ignoreBOM false: a leading BOM is dropped

/** Whether standard input is a terminal (checked on fd 0, without opening process.stdin). */
export function stdinIsTerminal(): boolean {
  return isatty(0);
}

/** `bytes`: the size when known (a file), else only that it passed the limit (a pipe). */
function tooLarge(what: string, bytes: number | undefined): LfmError {
  const size = bytes === undefined ? "" : `${(bytes / 2 ** 20).toFixed(1)} MiB, `;
  return new LfmError("INVALID_ARGUMENT", `${what} is ${size}over the ${MAX_INPUT_BYTES / 2 ** 20} MiB limit for text.`);
}

function decode(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new LfmError("INVALID_ARGUMENT", `${what} is not UTF-8 text; convert it first (iconv -t UTF-8).`);
  }
}

/** The file's text; FILE_NOT_FOUND when it cannot be opened, INVALID_ARGUMENT when it is not a regular UTF-8 file of bounded size. */
export function readTextFile(path: string, what: string): string {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it is refused below anyway.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : `cannot open it (${code ?? "error"})`;
    throw new LfmError("FILE_NOT_FOUND", `${what} ${path}: ${why}.`);
  }
  try {
    // The opened file itself is checked, so what is read is what was judged.
    const stat = fstatSync(fd);
    if (!stat.isFile()) {
      const kind = stat.isDirectory() ? "a folder" : stat.isFIFO() ? "a pipe" : stat.isCharacterDevice() || stat.isBlockDevice() ? "a device" : "not a regular file";
      throw new LfmError("INVALID_ARGUMENT", `${what} ${path} is ${kind}; give a regular file, or "-" to read standard input.`);
    }
    if (stat.size > MAX_INPUT_BYTES) throw tooLarge(`${what} ${path}`, stat.size);
    // Read up to one byte past the limit: a file that grows after fstat is still refused.
    const buffer = Buffer.alloc(stat.size + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.length) throw tooLarge(`${what} ${path}`, undefined);
    }
    return decode(buffer.subarray(0, length), `${what} ${path}`);
  } finally {
    closeSync(fd);
  }
}

/** All of standard input as text (INVALID_ARGUMENT on a terminal: it would wait for typing). */
export async function readStdinText(what: string): Promise<string> {
  if (stdinIsTerminal()) {
    throw new LfmError("INVALID_ARGUMENT", `${what} reads standard input, which is a terminal here; pipe the text in (… | lfm …) or give a file.`);
  }
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > MAX_INPUT_BYTES) {
      process.stdin.destroy();
      throw tooLarge(`${what} (standard input)`, undefined);
    }
    chunks.push(chunk);
  }
  return decode(Buffer.concat(chunks, length), `${what} (standard input)`);
}

/** The text of a file, or of standard input for "-". */
export function readTextInput(path: string, what: string): Promise<string> {
  return path === STDIN_NAME ? readStdinText(what) : Promise.resolve(readTextFile(path, what));
}

/** A prompt from a file or a pipe without the one line break that ends it (as `echo` and editors add). */
export function dropFinalNewline(text: string): string {
  return text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text;
}

/** One text that may come from `--<textFlag> TEXT` or `--<fileFlag> F|-` (at most one of them). */
export interface TextSource {
  /** The flag that gives the text on the command line. */
  text: string;
  /** The flag that names a file ("-": standard input) holding it. */
  file: string;
}

/**
 * The text given by one of `sources` (each a text flag and a file flag), or undefined when none
 * was; two of them given is INVALID_ARGUMENT naming both. A file's (or standard input's) final
 * line break is dropped.
 */
export async function textFromFlags(v: Values, sources: readonly TextSource[]): Promise<{ text: string; flag: string } | undefined> {
  const given = sources.flatMap((s) => [s.text, s.file]).filter((f) => typeof v[f] === "string");
  if (given.length > 1) throw new LfmError("INVALID_ARGUMENT", `give the text once: ${given.map(flagText).join(" and ")} were both given.`);
  const [flag] = given;
  if (flag === undefined) return undefined;
  const value = v[flag] as string;
  if (sources.some((s) => s.text === flag)) return { text: value, flag };
  return { text: dropFinalNewline(await readTextInput(value, flagText(flag))), flag };
}

/** Two flags may not both read standard input ("-"). */
export function checkOneStdinReader(v: Values, flags: readonly string[]): void {
  const readers = flags.filter((f) => v[f] === STDIN_NAME);
  if (readers.length > 1) throw new LfmError("INVALID_ARGUMENT", `only one flag can read standard input; ${readers.map((f) => `${flagText(f)} -`).join(" and ")} were both given.`);
}
