/** Reading the reference fixtures and comparing at the DESIGN.md tolerances. */
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { SafetensorsFile } from "../../text-core/safetensors.ts";

export const FIXTURES = join(import.meta.dirname, "..", "..", "fixtures");
/** Built graphs for tests are cached here across runs (keyed by checkpoint + options); see global-setup.ts. */
export const TEST_CACHE = process.env.LFM_TEST_GRAPH_CACHE ?? join(tmpdir(), "lfm2-edge-test-graphs");

export function readJson<T = unknown>(relPath: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, relPath), "utf8")) as T;
}

export class ReferenceTensors {
  private readonly file: SafetensorsFile;
  constructor(relPath: string) {
    this.file = SafetensorsFile.open(join(FIXTURES, relPath));
  }
  float(name: string): Float32Array {
    return this.file.readFloat32(name);
  }
  shape(name: string): number[] {
    return this.file.info(name).shape;
  }
  ints(name: string): number[] {
    const raw = this.file.readRaw(name);
    return Array.from(new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8), Number);
  }
}

export interface ErrorStats {
  maxAbs: number;
  relL2: number;
}

export function errorStats(actual: ArrayLike<number>, expected: ArrayLike<number>): ErrorStats {
  expect(actual.length).toBe(expected.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = actual[i] - expected[i];
    if (!Number.isFinite(d)) return { maxAbs: Infinity, relL2: Infinity };
    maxAbs = Math.max(maxAbs, Math.abs(d));
    num += d * d;
    den += expected[i] * expected[i];
  }
  return { maxAbs, relL2: Math.sqrt(num / (den || 1)) };
}

/** DESIGN.md: logits and hidden states max abs ≤ 1e-3 and relative L2 ≤ 1e-4. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = { maxAbs: 1e-3, relL2: 1e-4 }): ErrorStats {
  const s = errorStats(actual, expected);
  expect(s.maxAbs, `${what}: max abs error`).toBeLessThanOrEqual(tol.maxAbs);
  expect(s.relL2, `${what}: relative L2 error`).toBeLessThanOrEqual(tol.relL2);
  return s;
}
