/** Size and CRC-32 of an open file, read in 64 MiB pieces (see file-checksum.mjs). */
export function describeOpenFile(fd: number): { bytes: number; crc32: number };
