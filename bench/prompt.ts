import { spawnSync } from "node:child_process";

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
