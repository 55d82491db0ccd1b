/**
 * A file written beside its target and moved into place only when complete: a temporary
 * `.NAME.partial-PID` in the same folder, renamed over `path` by `commit()`. Until then `path` is
 * left as it was, so an interrupted run (Ctrl-C, an error, the process killed) never leaves a
 * partial or truncated file under the target's name; the temporary file goes when the process exits.
 * Opening it is the destination check: a folder, a missing folder or an unwritable one fails at
 * once (OUTPUT_UNWRITABLE), before any work.
 */
import { closeSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { LfmError } from "./errors.ts";

/** What the OUTPUT_UNWRITABLE messages advise, after "cannot write PATH: why." */
export interface PendingFileAdvice {
  /** When `path` names a folder. */
  folder: string;
  /** When the temporary file cannot be created in `path`'s folder. */
  unwritable: string;
}

export class PendingFile {
  private fd: number | null;
  /** Removes the temporary file if the process exits first (e.g. a second Ctrl-C). */
  private readonly onExit = () => {
    try {
      rmSync(this.tempPath, { force: true });
    } catch {
      // best effort at exit
    }
  };

  private constructor(
    readonly path: string,
    readonly tempPath: string,
    fd: number,
  ) {
    this.fd = fd;
    process.once("exit", this.onExit);
  }

  static open(path: string, advice: PendingFileAdvice): PendingFile {
    const folder = (why: string) => new LfmError("OUTPUT_UNWRITABLE", `cannot write ${path}: ${why}. ${advice.folder}`);
    if (path.endsWith("/") || path.endsWith(sep)) throw folder("it names a folder (it ends with a path separator)");
    let isDirectory = false;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch {
      // nothing there yet: the usual case
    }
    if (isDirectory) throw folder("it is a folder");
    const tempPath = join(dirname(path), `.${basename(path)}.partial-${process.pid}`);
    try {
      return new PendingFile(path, tempPath, openSync(tempPath, "w"));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === "ENOENT" ? `its folder ${dirname(path)} does not exist` : code === "ENOTDIR" ? `${dirname(path)} is not a folder` : code === "EACCES" || code === "EPERM" ? `its folder ${dirname(path)} is not writable` : (e as Error).message;
      throw new LfmError("OUTPUT_UNWRITABLE", `cannot write ${path}: ${why}. ${advice.unwritable}`, { cause: e });
    }
  }

  /** Writes all of `bytes` at `position` of the temporary file. */
  write(bytes: Uint8Array, position: number): void {
    if (this.fd === null) throw new LfmError("INVALID_ARGUMENT", `${this.path} is already finished.`);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, position + done);
  }

  /** Moves the temporary file to `path` (OUTPUT_UNWRITABLE, and nothing left behind, if that fails). */
  commit(): void {
    this.close();
    try {
      renameSync(this.tempPath, this.path);
    } catch (e) {
      rmSync(this.tempPath, { force: true });
      throw new LfmError("OUTPUT_UNWRITABLE", `cannot write ${this.path}: ${(e as Error).message}.`, { cause: e });
    }
  }

  /** Drops the temporary file; `path` is left as it was. */
  discard(): void {
    this.close();
    rmSync(this.tempPath, { force: true });
  }

  private close(): void {
    process.off("exit", this.onExit);
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}
