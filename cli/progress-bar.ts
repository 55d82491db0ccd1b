/**
 * A one-line progress bar with rate and ETA for long CLI operations, redrawn in place on a
 * terminal (stderr) at most 10 times a second; silent when stderr is not a TTY.
 *
 *   indexing  ██████████░░░░░░░░░░  52%  3/7 files  130/250 passages  4.1/s  ETA 0:29
 */
export class ProgressBar {
  private phase = "";
  private phaseStart = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly enabled: boolean = Boolean(process.stderr.isTTY),
  ) {}

  /**
   * Shows `context  done/total unit` of `label` (`context`: other counts, e.g. "3/7 files"); the
   * rate and ETA (of `done`) restart when the label changes.
   */
  update(label: string, done: number, total: number, unit = "", context = ""): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (label !== this.phase) {
      this.phase = label;
      this.phaseStart = now;
    } else if (now - this.lastDraw < 100 && done < total) return;
    this.lastDraw = now;
    const width = 20;
    const share = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(share * width);
    const seconds = (now - this.phaseStart) / 1000;
    const rate = seconds > 0.5 ? done / seconds : 0;
    const eta = rate > 0 && total > done ? `  ETA ${clock((total - done) / rate)}` : "";
    const rateText = rate > 0 ? `  ${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)}/s` : "";
    const line = `${label.padEnd(10)} ${"█".repeat(filled)}${"░".repeat(width - filled)} ${String(Math.round(share * 100)).padStart(3)}%  ${context ? `${context}  ` : ""}${done}/${total}${unit ? ` ${unit}` : ""}${rateText}${eta}`;
    this.out.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  /** A status line without a bar (e.g. a stage of a commit). */
  status(text: string): void {
    if (!this.enabled) return;
    this.out.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }

  /** Ends the bar's line so normal output follows on a fresh line. */
  done(): void {
    if (this.enabled && this.drawn) this.out.write("\r\x1b[2K");
    this.drawn = false;
    this.phase = "";
  }
}

function clock(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}
