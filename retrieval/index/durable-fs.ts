/**
 * File operations the index's crash safety rests on: every file is written once under a name
 * no committed manifest has used, fsynced, and only then referenced by a manifest that is itself
 * written to a temporary name, fsynced and renamed over the old one (rename is atomic on POSIX
 * file systems), with the folder fsynced after each rename so the new entry is durable.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { crc32 } from "node:zlib";
import { LfmError } from "../../text-core/errors.ts";
import { describeOpenFile } from "./file-checksum.mjs";

/** What a manifest records about one file: enough to detect truncation and bit rot. */
export interface FileRef {
  name: string;
  bytes: number;
  crc32: number;
}

/** Writes `parts` to `dir/name` (created or truncated) and fsyncs it; returns its reference. */
export function writeDurable(dir: string, name: string, parts: Uint8Array[]): FileRef {
  const fd = openSync(join(dir, name), "w");
  let crc = 0;
  let bytes = 0;
  try {
    for (const part of parts) {
      let off = 0;
      while (off < part.byteLength) off += writeSync(fd, part, off, part.byteLength - off);
      crc = crc32(part, crc);
      bytes += part.byteLength;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { name, bytes, crc32: crc };
}

/** Reads a whole file in 1 GiB pieces (readFileSync stops at 2 GiB; graphs of big segments are larger). */
export function readWholeFile(path: string): Buffer {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const out = Buffer.allocUnsafeSlow(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, out, off, Math.min(1 << 30, size - off), off);
      if (n === 0) break;
      off += n;
    }
    return off === size ? out : out.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** CRC-32 and size of a file, read in 64 MiB pieces (for files passed by path to hnswlib). */
export function describeFile(path: string): { bytes: number; crc32: number } {
  const fd = openSync(path, "r");
  try {
    return describeOpenFile(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes renames and new entries in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Atomically replaces `dir/name` with `data`: temporary file, fsync, rename, fsync of the folder. */
export function replaceAtomically(dir: string, name: string, data: Uint8Array): void {
  const tmp = `${name}.tmp-${process.pid}`;
  try {
    writeDurable(dir, tmp, [data]);
    renameSync(join(dir, tmp), join(dir, name));
  } catch (e) {
    rmSync(join(dir, tmp), { force: true }); // a part-written temporary file (disk full) is of no use
    throw e;
  }
  fsyncDir(dir);
}

/** Thrown when a file a manifest names is gone: a writer replaced the manifest meanwhile (readers retry). */
export class FileVanishedError extends Error {
  constructor(readonly path: string) {
    super(`${path} vanished while opening the index`);
  }
}

/** Reads a file the manifest references and checks its size and CRC-32. */
export function readVerified(dir: string, ref: FileRef, verify = true): Buffer {
  const path = join(dir, ref.name);
  let data: Buffer;
  try {
    data = readWholeFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new FileVanishedError(path);
    throw new LfmError("INDEX_CORRUPT", `cannot read index file ${path}: ${(e as Error).message}`, { cause: e });
  }
  checkRef(path, ref, data, verify);
  return data;
}

/** Checks a file read by path elsewhere (hnswlib reads graphs itself). */
export function verifyFile(dir: string, ref: FileRef, verify = true): void {
  const path = join(dir, ref.name);
  let actual: { bytes: number; crc32: number };
  try {
    actual = verify ? describeFile(path) : { bytes: fstatSize(path), crc32: ref.crc32 };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new FileVanishedError(path);
    throw new LfmError("INDEX_CORRUPT", `cannot read index file ${path}: ${(e as Error).message}`, { cause: e });
  }
  compareRef(path, ref, actual);
}

function fstatSize(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** Size always; CRC-32 when `verify`. */
export function checkRef(path: string, ref: FileRef, data: Uint8Array, verify = true): void {
  compareRef(path, ref, { bytes: data.byteLength, crc32: verify && data.byteLength === ref.bytes ? crc32(data) : ref.crc32 });
}

function compareRef(path: string, ref: FileRef, actual: { bytes: number; crc32: number }): void {
  if (actual.bytes !== ref.bytes) {
    throw new LfmError("INDEX_CORRUPT", `index file ${path} is ${actual.bytes} bytes but the manifest recorded ${ref.bytes}: it was truncated or overwritten. ${repairAdvice(path)}`);
  }
  if (actual.crc32 !== ref.crc32) {
    throw new LfmError("INDEX_CORRUPT", `index file ${path} fails its checksum (CRC-32 ${actual.crc32} ≠ ${ref.crc32} in the manifest): the file is damaged. ${repairAdvice(path)}`);
  }
}

export { crc32 };

/**
 * What to do about a damaged file of an index, as commands that work on it: a graph or a plaid
 * segment's compressed rows are rebuilt from the stored vectors by `lfm index compact` (the writer
 * reads neither); anything else
 * needs a backup, or the folder removed and the index built again (`lfm index add` refuses a
 * folder with a damaged index in it, rightly: it cannot tell what the folder held).
 */
export function repairAdvice(damagedFile: string): string {
  const dir = dirname(damagedFile);
  if (/^seg-\d{8}\.hnsw$/.test(basename(damagedFile))) {
    return `Rebuild the graphs from the stored vectors: lfm index compact --index ${shellQuote(dir)}`;
  }
  if (/^seg-\d{8}\.plaid$/.test(basename(damagedFile))) {
    return `Compress the stored vectors anew: lfm index compact --index ${shellQuote(dir)}`;
  }
  return `Restore the index folder from a backup, or build it again: rm -r ${shellQuote(dir)} && lfm index add --index ${shellQuote(dir)} FILES…`;
}

/** `path` as one shell word. */
function shellQuote(path: string): string {
  return /^[\w@%+=:,./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`;
}

/**
 * Refuses an index path that exists but is not a folder (a writer would otherwise fail to create
 * its lock inside it, and a reader find "no index"). A missing path passes: callers decide.
 */
export function checkIndexFolder(dir: string): void {
  let isFolder: boolean;
  try {
    isFolder = statSync(dir).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    if (code === "ENOTDIR") throw new LfmError("INDEX_NOT_A_FOLDER", `${dir} cannot be an index folder: a part of that path is a file, not a folder. Give --index a folder's path.`);
    throw new LfmError("INDEX_NOT_FOUND", `cannot open the index folder ${dir}: ${(e as Error).message}.`, { cause: e });
  }
  if (!isFolder) {
    throw new LfmError("INDEX_NOT_A_FOLDER", `${dir} is a file, not an index folder. An index is a folder (lfm index add --index DIR creates it): give --index a new folder's path or an existing index's.`);
  }
}
