/**
 * Reading a file to index: regular files only, never more than a size cap. A FIFO named `x.txt`
 * would block the read forever and a link to `/dev/zero` would never end, so the file is opened
 * without blocking (a FIFO opens at once that way), checked on the open descriptor (no race with a
 * rename between a check and the read) and read up to the cap only.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { LfmError } from "../../text-core/errors.ts";

/** 256 MiB: far above any real manual or page; a text this big already takes hours to encode. */
export const DEFAULT_MAX_FILE_SIZE = 256 * 1024 ** 2;
/** One Buffer (and the text decoded from it) must fit in memory: 2 GiB is the most a cap may say. */
export const MAX_FILE_SIZE_LIMIT = 2 * 1024 ** 3;

const READ_CHUNK = 1 << 20;

/** What `fs.Stats` and `fs.Dirent` both say of a file's type. */
export interface FileType {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
}

/** What a non-regular file is, for messages. */
export function fileKind(st: FileType): string {
  if (st.isDirectory()) return "a folder";
  if (st.isFIFO()) return "a named pipe (FIFO)";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

export function notRegular(path: string, st: FileType): LfmError {
  return new LfmError("NOT_A_REGULAR_FILE", `${path} is ${fileKind(st)}, not a regular file; only regular files (or links to them) are indexed.`);
}

export function tooLarge(path: string, bytes: number, maxBytes: number): LfmError {
  const what = bytes > MAX_FILE_SIZE_LIMIT
    ? `split the file (the limit can be raised to ${formatBytes(MAX_FILE_SIZE_LIMIT)} at most)`
    : `raise the limit (--max-file-size ${Math.ceil(bytes / 1024 ** 2)}M) or split the file`;
  return new LfmError("FILE_TOO_LARGE", `${path} is ${formatBytes(bytes)}, over the ${formatBytes(maxBytes)} limit on files to index; ${what}.`);
}

/** The bytes of the regular file `path`: NOT_A_REGULAR_FILE, FILE_TOO_LARGE, FILE_NOT_FOUND or DOCUMENT_UNREADABLE otherwise. */
export function readRegularFile(path: string, maxBytes: number): Buffer {
  return readSourceFile(path, maxBytes).bytes;
}

/** As readRegularFile, with the file's modification time (from the descriptor read). */
export function readSourceFile(path: string, maxBytes: number): { bytes: Buffer; modified: Date } {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. No effect on regular files.
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw openError(path, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegular(path, st);
    if (st.size > maxBytes) throw tooLarge(path, st.size, maxBytes);
    // Read to the end, not to st.size: the file may grow meanwhile; the cap holds either way.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, maxBytes + 1 - total));
      let n: number;
      try {
        n = readSync(fd, chunk, 0, chunk.length, null);
      } catch (e) {
        throw new LfmError("DOCUMENT_UNREADABLE", `cannot read ${path}: ${(e as Error).message}.`, { cause: e });
      }
      if (n === 0) break;
      chunks.push(n === chunk.length ? chunk : chunk.subarray(0, n));
      total += n;
      if (total > maxBytes) throw tooLarge(path, total, maxBytes);
    }
    return { bytes: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total), modified: st.mtime };
  } finally {
    closeSync(fd);
  }
}

function openError(path: string, e: unknown): LfmError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new LfmError("FILE_NOT_FOUND", `${path} does not exist.`, { cause: e });
  const why = code === "EACCES" || code === "EPERM" ? "permission denied" : (e as Error).message;
  return new LfmError("DOCUMENT_UNREADABLE", `cannot open ${path}: ${why}.`, { cause: e });
}

const UNITS: Record<string, number> = { "": 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * A byte size as a user writes it: `1048576`, `512K`, `50M`, `2G` (also `50MB`, `50MiB`, lower
 * case; K/M/G are powers of 1024), between 1 byte and MAX_FILE_SIZE_LIMIT.
 */
export function parseByteSize(raw: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$/i.exec(raw);
  if (!m) throw new LfmError("INVALID_ARGUMENT", `${flag} expects a size such as 50M, 2G or 1048576 (bytes), got "${raw}".`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2].toUpperCase()]);
  if (!(bytes >= 1 && bytes <= MAX_FILE_SIZE_LIMIT)) {
    throw new LfmError("INVALID_ARGUMENT", `${flag} must be between 1 byte and ${formatBytes(MAX_FILE_SIZE_LIMIT)}, got "${raw}".`);
  }
  return bytes;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= size) {
      const value = bytes / size;
      return `${Number.isInteger(value) ? value : value.toFixed(1)} ${unit}`;
    }
  }
  return `${bytes} bytes`;
}
