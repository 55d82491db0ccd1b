import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** The benchmark's prompt: `length` token ids spread over the vocabulary (the values do not change the cost). */
export function benchPromptIds(length: number, vocabSize: number): number[] {
  return Array.from({ length }, (_, i) => 1000 + ((i * 7919) % (vocabSize - 1000)));
}

/** Index of the largest of the first `width` values (greedy decoding). */
export function argmax(values: Float32Array, width = values.length): number {
  let best = 0;
  for (let i = 1; i < width; i++) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * Flushes dirty pages to disk (best effort, `sync`): a freshly written checkpoint, GGUF or graph
 * file being written back while we measure costs CPU and memory bandwidth on small machines.
 */
export function flushWrites(): void {
  spawnSync("sync", { stdio: "ignore" });
}

/**
 * This process's peak resident set in MB: the kernel's high-water mark of its own address space
 * (`VmHWM`). Not `process.resourceUsage().maxRSS`: Linux carries that across exec, so a worker
 * started from a big parent reports at least the parent's size at fork.
 */
export function peakRssMb(): number {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}
