/** WAV headers written by hand for tests that need files too big to build in memory (sparse, or written in pieces). */

export interface WavHeaderSpec {
  /** "RIFF" (default), or "RF64" with a ds64 chunk holding the 64-bit sizes. */
  container?: "RIFF" | "RF64";
  /** WAVE format code: 1 PCM (default), 3 IEEE float. */
  format?: number;
  channels?: number;
  rate?: number;
  bits?: number;
  /** Bytes of sample data that follow the header. */
  dataBytes: number;
  /** What the data chunk's 32-bit size field says (default: `dataBytes`, or 0xFFFFFFFF for RF64). */
  dataSizeField?: number;
}

/** The header bytes; the data chunk starts right after them. */
export function wavHeader(spec: WavHeaderSpec): Buffer {
  const { container = "RIFF", format = 1, channels = 1, rate = 16000, bits = 16, dataBytes } = spec;
  const ds64 = container === "RF64" ? 8 + 28 : 0;
  const header = Buffer.alloc(12 + ds64 + 8 + 16 + 8);
  const blockAlign = (channels * bits) / 8;
  const riffSize = header.length - 8 + dataBytes;
  header.write(container, 0, "ascii");
  header.writeUInt32LE(container === "RF64" || riffSize > 0xffffffff ? 0xffffffff : riffSize, 4);
  header.write("WAVE", 8, "ascii");
  let at = 12;
  if (container === "RF64") {
    header.write("ds64", at, "ascii");
    header.writeUInt32LE(28, at + 4);
    header.writeBigUInt64LE(BigInt(riffSize), at + 8);
    header.writeBigUInt64LE(BigInt(dataBytes), at + 16);
    header.writeBigUInt64LE(BigInt(dataBytes / blockAlign), at + 24);
    header.writeUInt32LE(0, at + 32);
    at += ds64;
  }
  header.write("fmt ", at, "ascii");
  header.writeUInt32LE(16, at + 4);
  header.writeUInt16LE(format, at + 8);
  header.writeUInt16LE(channels, at + 10);
  header.writeUInt32LE(rate, at + 12);
  header.writeUInt32LE(rate * blockAlign, at + 16);
  header.writeUInt16LE(blockAlign, at + 20);
  header.writeUInt16LE(bits, at + 22);
  header.write("data", at + 24, "ascii");
  header.writeUInt32LE(spec.dataSizeField ?? (container === "RF64" ? 0xffffffff : dataBytes), at + 28);
  return header;
}
