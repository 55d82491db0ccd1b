/**
 * Stop sequences given as text (OpenAI's `stop`), applied to streamed text: generation stops ids,
 * but a stop string can span tokens or start inside one, so it is found in the text. While the
 * stream's end could still be the start of a stop string, that end is held back, so no piece of a
 * stop string is ever emitted.
 */
import { LfmError } from "./errors.ts";

/** Most stop strings per request, and longest one (OpenAI allows 4; long ones are a mistake). */
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_CHARS = 256;

export class StopTextMatcher {
  private pending = "";
  private stoppedAt = false;

  constructor(private readonly stops: readonly string[]) {
    if (stops.length > MAX_STOP_STRINGS) throw new LfmError("INVALID_ARGUMENT", `stop takes at most ${MAX_STOP_STRINGS} strings (got ${stops.length}).`);
    for (const s of stops) {
      if (typeof s !== "string" || s.length === 0 || s.length > MAX_STOP_CHARS) {
        throw new LfmError("INVALID_ARGUMENT", `each stop string must be 1 to ${MAX_STOP_CHARS} characters long.`);
      }
    }
  }

  /** Whether a stop string has been found (everything after it is dropped). */
  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** Takes the next piece of text; returns the text that is now safe to emit. */
  push(piece: string): string {
    if (this.stoppedAt) return "";
    this.pending += piece;
    let first = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.stoppedAt = true;
      const out = this.pending.slice(0, first);
      this.pending = "";
      return out;
    }
    const keep = this.heldBack();
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return out;
  }

  /** The text held back at the end of the stream (no stop string came). */
  flush(): string {
    const out = this.stoppedAt ? "" : this.pending;
    this.pending = "";
    return out;
  }

  /** Length of the longest end of `pending` that is a proper start of some stop string. */
  private heldBack(): number {
    let longest = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > longest; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
