// Size and CRC-32 of an open file, read in 64 MiB pieces (graphs exceed 2 GiB, past one Buffer).
// Plain JavaScript so that the graph worker thread, which has no TypeScript loader, shares it
// with durable-fs.ts.
import { readSync } from "node:fs";
import { crc32 } from "node:zlib";

/** @param {number} fd @returns {{ bytes: number, crc32: number }} */
export function describeOpenFile(fd) {
  const piece = Buffer.allocUnsafeSlow(64 << 20);
  let crc = 0;
  let bytes = 0;
  for (;;) {
    const n = readSync(fd, piece, 0, piece.length, bytes);
    if (n === 0) break;
    crc = crc32(piece.subarray(0, n), crc);
    bytes += n;
  }
  return { bytes, crc32: crc };
}
