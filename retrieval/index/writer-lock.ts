/**
 * One writer per index folder. A writer creates `writer-<pid>.lock` (exclusively), then looks
 * for other writers' lock files: one whose process is gone (same host) is stale and removed; any
 * other makes this writer back off and fail with INDEX_LOCKED. Two writers starting at the same
 * instant may both back off (both see each other), but two can never both proceed: whichever
 * lists the folder second sees the other's file.
 *
 * A stale lock is also the sign that a writer crashed: whoever finds one (the next writer, or a
 * reader before any writer came) checks every file's checksum before trusting the index
 * (`tookOverStale`, `staleWriterLocks`).
 */
import { hostname } from "node:os";
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LfmError } from "../../text-core/errors.ts";
import { processAlive } from "../../text-core/graph-cache.ts";

const LOCK_PATTERN = /^writer-(\d+)\.lock$/;

/** Folders this process holds the lock of (a second writer in the same process is refused too). */
const heldHere = new Set<string>();

interface LockInfo {
  pid: number;
  host: string;
  since: string;
}

export class WriterLock {
  private released = false;
  private constructor(
    readonly dir: string,
    readonly path: string,
    /** A crashed writer's lock was removed on the way in: the index should be verified in full. */
    readonly tookOverStale: boolean,
  ) {}

  /** `dir` must be an absolute, resolved path (it keys the in-process check). */
  static acquire(dir: string): WriterLock {
    if (heldHere.has(dir)) {
      throw new LfmError("INDEX_LOCKED", `the index ${dir} is already open for writing in this process; close that writer first (one writer per index).`);
    }
    const name = `writer-${process.pid}.lock`;
    const path = join(dir, name);
    const info: LockInfo = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
    try {
      writeFileSync(path, JSON.stringify(info), { flag: "wx" });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new LfmError("INDEX_LOCKED", `cannot create the writer lock ${path}: ${(e as Error).message}. Is the index folder writable?`, { cause: e });
      }
      // Our own pid's file: left by an earlier process that had this pid, now gone (we are alive).
      writeFileSync(path, JSON.stringify(info));
    }
    let tookOverStale = false;
    for (const other of readdirSync(dir)) {
      const m = LOCK_PATTERN.exec(other);
      if (!m || other === name) continue;
      const otherPath = join(dir, other);
      const holder = readLockInfo(otherPath, Number(m[1]));
      if (holder === null) continue; // removed meanwhile
      if (holder.host === hostname() && !processAlive(holder.pid)) {
        rmSync(otherPath, { force: true }); // stale: its writer died; its uncommitted files are garbage
        tookOverStale = true;
        continue;
      }
      rmSync(path, { force: true });
      const where = holder.host === hostname() ? `process ${holder.pid}` : `process ${holder.pid} on host ${holder.host}`;
      throw new LfmError(
        "INDEX_LOCKED",
        `the index ${dir} is being written by ${where} (since ${holder.since}). Wait for it to finish; readers (lfm search) can use the index meanwhile. If that process is not running any more, delete ${otherPath}.`,
      );
    }
    heldHere.add(dir);
    return new WriterLock(dir, path, tookOverStale);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.dir);
    rmSync(this.path, { force: true });
  }
}

/** Lock files in `dir` left by writers of this host that are no longer running (crashed or killed). */
export function staleWriterLocks(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const stale: string[] = [];
  for (const name of names) {
    const m = LOCK_PATTERN.exec(name);
    if (!m) continue;
    const holder = readLockInfo(join(dir, name), Number(m[1]));
    if (holder && holder.host === hostname() && !processAlive(holder.pid)) stale.push(join(dir, name));
  }
  return stale;
}

function readLockInfo(path: string, pidFromName: number): LockInfo | null {
  try {
    const raw = JSON.parse(readFileSync(path, "utf8")) as Partial<LockInfo>;
    return { pid: pidFromName, host: typeof raw.host === "string" ? raw.host : hostname(), since: typeof raw.since === "string" ? raw.since : "?" };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    // Being written this instant, or truncated by a crash: judge by the pid in its name.
    return { pid: pidFromName, host: hostname(), since: "?" };
  }
}
