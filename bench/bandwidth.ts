/**
 * Read bandwidth of main memory, measured with `Buffer.compare` (a native memcmp over two equal
 * 256 MB buffers: two read streams, no writes), best of several passes.
 */
export function measureMemoryBandwidth(bytes = 256 * 2 ** 20, passes = 6): number {
  const a = Buffer.alloc(bytes, 7);
  const b = Buffer.alloc(bytes, 7);
  let best = Infinity;
  for (let i = 0; i < passes; i++) {
    const t0 = process.hrtime.bigint();
    if (a.compare(b) !== 0) throw new Error("unreachable");
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return (2 * bytes) / best / 1e9;
}
