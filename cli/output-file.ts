/**
 * A text file written all at once and atomically (text-core/pending-file.ts): `path` is left as
 * it was until the whole text is there, so an interrupted run never leaves a partial file.
 */
import { LfmError } from "../text-core/errors.ts";
import { PendingFile } from "../text-core/pending-file.ts";

const ADVICE = "Pass --out FILE in a writable folder.";

export class OutputFile {
  private constructor(private readonly pending: PendingFile) {}

  /** Reserves `path` now, so that a bad destination fails (OUTPUT_UNWRITABLE) before any work. */
  static create(path: string): OutputFile {
    if (path === "") throw new LfmError("INVALID_ARGUMENT", "--out needs a file name.");
    return new OutputFile(PendingFile.open(path, { folder: ADVICE, unwritable: ADVICE }));
  }

  get path(): string {
    return this.pending.path;
  }

  /** Writes `text` as the whole file and moves it to `path`. */
  commit(text: string): void {
    try {
      this.pending.write(Buffer.from(text, "utf8"), 0);
    } catch (e) {
      this.pending.discard();
      throw new LfmError("OUTPUT_UNWRITABLE", `cannot write ${this.pending.path}: ${(e as Error).message}.`, { cause: e });
    }
    this.pending.commit();
  }

  /** Drops the temporary file; `path` is left as it was. */
  discard(): void {
    this.pending.discard();
  }
}
