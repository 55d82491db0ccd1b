/**
 * A text file written all at once and atomically: a temporary file next to it, renamed over it when
 * complete. Until then `path` is left as it was, so an interrupted run (Ctrl-C, an error, the
 * process killed) never leaves a partial or truncated file there.
 */
import { closeSync, openSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, sep } from "node:path";
import { LfmError } from "../text-core/errors.ts";

export class OutputFile {
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

  /**
   * Reserves `path`: creates the temporary file now, so that a folder, a missing folder or an
   * unwritable one fails at once (OUTPUT_UNWRITABLE), before any work.
   */
  static create(path: string): OutputFile {
    if (path === "") throw new LfmError("INVALID_ARGUMENT", "--out needs a file name.");
    const unwritable = (why: string, cause?: unknown) => new LfmError("OUTPUT_UNWRITABLE", `cannot write ${path}: ${why}. Pass --out FILE in a writable folder.`, cause ? { cause } : undefined);
    if (path.endsWith("/") || path.endsWith(sep)) throw unwritable("it names a folder (it ends with a path separator)");
    let isDirectory = false;
    try {
      isDirectory = statSync(path).isDirectory();
    } catch {
      // nothing there yet: the usual case
    }
    if (isDirectory) throw unwritable("it is a folder");
    const tempPath = `${dirname(path)}${sep}.${basename(path)}.partial-${process.pid}`;
    try {
      return new OutputFile(path, tempPath, openSync(tempPath, "w"));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === "ENOENT" ? `its folder ${dirname(path)} does not exist` : code === "ENOTDIR" ? `${dirname(path)} is not a folder` : code === "EACCES" || code === "EPERM" ? `its folder ${dirname(path)} is not writable` : (e as Error).message;
      throw unwritable(why, e);
    }
  }

  /** Writes `text` as the whole file and moves it to `path`. */
  commit(text: string): void {
    try {
      writeFileSync(this.fd as number, text);
      this.close();
      renameSync(this.tempPath, this.path);
    } catch (e) {
      this.discard();
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
