/**
 * `GET /metrics` in Prometheus's text format (version 0.0.4): counters and gauges with labels,
 * kept in plain maps — the handful of series a local server has needs no client library.
 * Tokens per second is `rate(lfm_completion_tokens_total[1m])`.
 */

type Labels = Record<string, string>;

interface Family {
  help: string;
  type: "counter" | "gauge";
  series: Map<string, { labels: Labels; value: number }>;
}

/** A label value escaped as the format asks (backslash, quote, newline). */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length > 0 ? `{${parts.join(",")}}` : "";
}

export class Metrics {
  private readonly families = new Map<string, Family>();
  /** Gauges read when scraped (queue depth, model memory). */
  private readonly collectors: (() => void)[] = [];

  private family(name: string, type: Family["type"], help: string): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { help, type, series: new Map() };
      this.families.set(name, f);
    }
    return f;
  }

  inc(name: string, help: string, labels: Labels = {}, by = 1): void {
    const f = this.family(name, "counter", help);
    const key = labelText(labels);
    const s = f.series.get(key);
    if (s) s.value += by;
    else f.series.set(key, { labels, value: by });
  }

  /** Replaces every series of gauge `name` with `values` (a gauge that lists what exists now). */
  setGauge(name: string, help: string, values: readonly { labels: Labels; value: number }[]): void {
    const f = this.family(name, "gauge", help);
    f.series.clear();
    for (const v of values) f.series.set(labelText(v.labels), { labels: v.labels, value: v.value });
  }

  /** `collect` runs before each scrape, to set gauges from live state. */
  addCollector(collect: () => void): void {
    this.collectors.push(collect);
  }

  /** A counter's current value (tests, and the server's own log). */
  value(name: string, labels: Labels = {}): number {
    return this.families.get(name)?.series.get(labelText(labels))?.value ?? 0;
  }

  /** The exposition text. */
  render(): string {
    for (const collect of this.collectors) collect();
    const lines: string[] = [];
    for (const [name, f] of this.families) {
      lines.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`);
      for (const s of f.series.values()) lines.push(`${name}${labelText(s.labels)} ${s.value}`);
    }
    return `${lines.join("\n")}\n`;
  }
}
