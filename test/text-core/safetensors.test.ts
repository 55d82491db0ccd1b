import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { expectCode } from "../helpers/errors.ts";
import { writeSafetensors } from "../../bench/safetensors-writer.ts";
import { Checkpoint } from "../../text-core/checkpoint.ts";
import { float32ToBf16, float32ToF16 } from "../../text-core/float-bits.ts";
import { SafetensorsFile, decodeFloat32, dtypeBits, type SafetensorsDType } from "../../text-core/safetensors.ts";

const FIXTURE_DIR = "fixtures/text/tiny-lfm2";
const FIXTURE = path.join(FIXTURE_DIR, "model.safetensors");

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "lfm-safetensors-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let tmpCount = 0;
function tmpPath(name = "t.safetensors"): string {
  const dir = path.join(tmpRoot, String(tmpCount++));
  fs.mkdirSync(dir);
  return path.join(dir, name);
}

/** A file from a header (object, or raw JSON text) and a data section, without our writer. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0)): string {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const file = tmpPath();
  fs.writeFileSync(file, Buffer.concat([prefix, json, data]));
  return file;
}

/** Reference half → number, straight from the IEEE definition. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

describe("SafetensorsFile on the tiny LFM2 fixture", () => {
  it("lists every tensor with its dtype and shape", () => {
    const f = SafetensorsFile.open(FIXTURE);
    try {
      const names = f.names();
      expect(names).toHaveLength(2 + 4 * 8 + 2 * 11) // globals + 4 conv layers + 2 attention layers;
      expect(names[0]).toBe("model.embed_tokens.weight");
      expect(f.metadata).toEqual({ format: "pt" });
      expect(f.info("model.embed_tokens.weight")).toMatchObject({ dtype: "BF16", shape: [1024, 64] });
      expect(f.info("model.layers.0.feed_forward.w1.weight").shape).toEqual([192, 64]);
      expect(f.info("model.layers.2.self_attn.k_proj.weight").shape).toEqual([32, 64]);
      expect(f.info("model.layers.0.conv.conv.weight").shape).toEqual([64, 1, 3]);
      expect(f.has("lm_head.weight")).toBe(false);
    } finally {
      f.close();
    }
  });

  it("gives absolute byte offsets and reads exactly those bytes", () => {
    const f = SafetensorsFile.open(FIXTURE);
    const whole = fs.readFileSync(FIXTURE);
    const headerLength = Number(whole.readBigUInt64LE(0));
    const info = f.info("model.embedding_norm.weight");
    expect(info.start).toBe(8 + headerLength + 131072);
    expect(info.end - info.start).toBe(128);
    expect(Buffer.from(f.readRaw(info.name)).equals(whole.subarray(info.start, info.end))).toBe(true);
    f.close();
  });

  it("converts BF16 exactly (bits << 16)", () => {
    const f = SafetensorsFile.open(FIXTURE);
    const name = "model.layers.2.self_attn.q_proj.weight";
    const raw = f.readRaw(name);
    const floats = f.readFloat32(name);
    expect(floats).toHaveLength(64 * 64);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const check = new DataView(new ArrayBuffer(4));
    const wrong: number[] = [];
    for (let i = 0; i < floats.length; i++) {
      check.setUint32(0, view.getUint16(2 * i, true) << 16, true);
      if (!Object.is(floats[i], check.getFloat32(0, true))) wrong.push(i);
    }
    expect(wrong).toEqual([]);
    expect(floats.some((x) => x !== 0)).toBe(true);
    // Norm weights are random here but finite and non-zero.
    const norm = f.readFloat32("model.embedding_norm.weight");
    expect(norm.every((x) => Number.isFinite(x))).toBe(true);
    f.close();
  });

  it("reads F32 and I64 tensors of the reference file", () => {
    const f = SafetensorsFile.open("fixtures/text/reference.safetensors");
    expect(f.info("forward.input_ids")).toMatchObject({ dtype: "I64", shape: [1, 93] });
    const logits = f.info("forward.logits");
    expect(logits).toMatchObject({ dtype: "F32", shape: [93, 1024] });
    const values = f.readFloat32("forward.logits");
    const raw = f.readRaw("forward.logits");
    expect(Buffer.from(values.buffer).equals(Buffer.from(raw.buffer))).toBe(true);
    expectCode(() => f.readFloat32("forward.input_ids"), "UNSUPPORTED_DTYPE", "forward.input_ids", "I64");
    f.close();
  });

  it("names the missing tensor and similar ones", () => {
    const f = SafetensorsFile.open(FIXTURE);
    expectCode(() => f.readRaw("model.layers.0.feed_forward.w9.weight"), "TENSOR_MISSING", "w9", "model.layers.0.feed_forward.w1.weight");
    f.close();
  });
});

describe("float conversions", () => {
  it("decodes every F16 value exactly, subnormals, ±inf and NaN included", () => {
    const halves = new Uint16Array(65536).map((_, i) => i);
    const floats = decodeFloat32(new Uint8Array(halves.buffer), "F16");
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = halfToNumber(h);
      if (Number.isNaN(want) ? !Number.isNaN(floats[h]) : !Object.is(floats[h], want)) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it("float32ToF16 inverts the decoder on all 65536 halves (NaN payloads kept)", () => {
    const halves = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToF16(decodeFloat32(new Uint8Array(halves.buffer), "F16"));
    expect(Buffer.from(back.buffer).equals(Buffer.from(halves.buffer))).toBe(true);
  });

  it("float32ToF16 rounds to nearest even, with subnormals and overflow", () => {
    const cases: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65519, 0x7bff], // below the halfway point to 65536
      [65520, 0x7c00], // halfway: rounds to even = inf
      [1e6, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
      [3 * 2 ** -26, 0x0001], // 0.75 ulp → 1
      [3 * 2 ** -25, 0x0002], // 1.5 ulp: tie → even 2
      [1 + 2 ** -11, 0x3c00], // tie → even (mantissa 0)
      [1 + 3 * 2 ** -11, 0x3c02], // tie → even (mantissa 2)
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up into the smallest normal
      [-0, 0x8000],
      [1e-10, 0x0000],
    ];
    const out = float32ToF16(Float32Array.from(cases.map(([x]) => x)));
    cases.forEach(([x, bits], i) => expect([x, out[i]]).toEqual([x, bits]));
    expect(float32ToF16(Float32Array.of(NaN))[0] & 0x7fff).toBeGreaterThan(0x7c00);
  });

  it("float32ToBf16 rounds to nearest even and keeps NaN a NaN", () => {
    const bf = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToBf16(decodeFloat32(new Uint8Array(bf.buffer), "BF16"));
    expect(Buffer.from(back.buffer).equals(Buffer.from(bf.buffer))).toBe(true);
    const bits = new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff, 0x7f800001, 0xffc00000]);
    const out = float32ToBf16(new Float32Array(bits.buffer));
    expect([...out]).toEqual([0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x7fc0, 0xffc0]);
  });
});

describe("writeSafetensors", () => {
  const values = Float32Array.from([0, 1, -2.5, 3.140625, 65504, -1e-3, 7, 0.5, 1e-7, -0]);

  it.each<[SafetensorsDType, (v: Float32Array) => Uint8Array]>([
    ["F32", (v) => new Uint8Array(v.buffer.slice(0))],
    ["F64", (v) => new Uint8Array(Float64Array.from(v).buffer)],
    ["F16", (v) => new Uint8Array(float32ToF16(v).buffer)],
    ["BF16", (v) => new Uint8Array(float32ToBf16(v).buffer)],
  ])("round-trips %s through the reader", (dtype, encode) => {
    const file = tmpPath();
    writeSafetensors(file, [{ name: "w", dtype, shape: [2, 5], data: encode(values) }], { format: "pt" });
    const f = SafetensorsFile.open(file);
    expect(f.metadata).toEqual({ format: "pt" });
    expect(f.info("w")).toMatchObject({ dtype, shape: [2, 5] });
    const got = f.readFloat32("w");
    const want = dtype === "F16" ? decodeFloat32(encode(values), "F16") : dtype === "BF16" ? decodeFloat32(encode(values), "BF16") : values;
    expect(Array.from(got)).toEqual(Array.from(want));
    f.close();
  });

  it("writes a header padded with spaces to 8 bytes, widest dtypes first, data aligned", () => {
    const file = tmpPath();
    writeSafetensors(file, [
      { name: "b", dtype: "U8", shape: [3], data: Uint8Array.of(1, 2, 3) },
      { name: "a", dtype: "BF16", shape: [1], data: Uint8Array.of(0x80, 0x3f) },
      { name: "c", dtype: "I64", shape: [1], data: () => new Uint8Array(8).fill(9) },
      { name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array(0) },
    ]);
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = bytes.subarray(8, 8 + n).toString();
    expect(text).toBe(text.trimEnd() + " ".repeat(n - text.trimEnd().length));
    expect(Object.keys(JSON.parse(text))).toEqual(["c", "empty", "a", "b"]);
    const f = SafetensorsFile.open(file);
    expect(f.names()).toEqual(["c", "empty", "a", "b"]);
    expect([...f.readRaw("b")]).toEqual([1, 2, 3]);
    expect([...f.readRaw("c")]).toEqual(new Array(8).fill(9));
    expect(f.readFloat32("a")[0]).toBe(1);
    expect(f.readFloat32("empty")).toHaveLength(0);
    for (const name of f.names()) expect(f.info(name).start % (dtypeBits(f.info(name).dtype) / 8)).toBe(0);
    f.close();
    expect(fs.readdirSync(path.dirname(file))).toEqual(["t.safetensors"]); // no temporary left behind
  });

  it("rejects data whose length does not match dtype × shape, and leaves no file", () => {
    const file = tmpPath();
    expectCode(
      () => writeSafetensors(file, [{ name: "w", dtype: "F32", shape: [3], data: new Uint8Array(8) }]),
      "INVALID_ARGUMENT",
      "needs 12",
    );
    expect(fs.readdirSync(path.dirname(file))).toEqual([]);
    expectCode(
      () =>
        writeSafetensors(file, [
          { name: "w", dtype: "U8", shape: [1], data: new Uint8Array(1) },
          { name: "w", dtype: "U8", shape: [1], data: new Uint8Array(1) },
        ]),
      "INVALID_ARGUMENT",
      "twice",
    );
  });
});

describe("SafetensorsFile rejects corrupt files with SAFETENSORS_CORRUPT", () => {
  const f32 = (n: number) => new Uint8Array(4 * n);

  it("a file shorter than 8 bytes", () => {
    const file = tmpPath();
    fs.writeFileSync(file, Uint8Array.of(1, 2, 3));
    expectCode(() => SafetensorsFile.open(file), "SAFETENSORS_CORRUPT", file, "re-download");
  });

  it("a header length past the end of the file", () => {
    const file = tmpPath();
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    fs.writeFileSync(file, b);
    expectCode(() => SafetensorsFile.open(file), "SAFETENSORS_CORRUPT", "past the end");
  });

  it("an absurd header length", () => {
    const file = tmpPath();
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(2n ** 62n);
    fs.writeFileSync(file, b);
    expectCode(() => SafetensorsFile.open(file), "SAFETENSORS_CORRUPT", "absurd");
  });

  it("a header that is not JSON, or not an object", () => {
    expectCode(() => SafetensorsFile.open(rawFile("{not json")), "SAFETENSORS_CORRUPT", "JSON");
    expectCode(() => SafetensorsFile.open(rawFile("[1,2]")), "SAFETENSORS_CORRUPT", "not a JSON object");
  });

  it("entries without dtype/shape/data_offsets, or with bad values", () => {
    expectCode(() => SafetensorsFile.open(rawFile({ w: { dtype: "F32", shape: [1] } }, f32(1))), "SAFETENSORS_CORRUPT", `"w"`);
    expectCode(
      () => SafetensorsFile.open(rawFile({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, f32(1))),
      "SAFETENSORS_CORRUPT",
      "shape",
    );
    expectCode(
      () => SafetensorsFile.open(rawFile({ w: { dtype: "F32", shape: [1], data_offsets: [0, 4.5] } }, f32(2))),
      "SAFETENSORS_CORRUPT",
      "data_offsets",
    );
    expectCode(
      () => SafetensorsFile.open(rawFile({ w: { dtype: "F32", shape: [0], data_offsets: [4, 0] } }, f32(1))),
      "SAFETENSORS_CORRUPT",
      "end before",
    );
    expectCode(() => SafetensorsFile.open(rawFile({ __metadata__: { a: 1 } })), "SAFETENSORS_CORRUPT", "__metadata__");
  });

  it("an unknown dtype", () => {
    expectCode(
      () => SafetensorsFile.open(rawFile({ w: { dtype: "F12", shape: [1], data_offsets: [0, 4] } }, f32(1))),
      "SAFETENSORS_CORRUPT",
      `unknown dtype "F12"`,
      `"w"`,
    );
  });

  it("offsets past the end of the data section", () => {
    expectCode(
      () => SafetensorsFile.open(rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, f32(2))),
      "SAFETENSORS_CORRUPT",
      "past the end",
      `"w"`,
    );
  });

  it("overlapping ranges", () => {
    const header = {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    };
    expectCode(() => SafetensorsFile.open(rawFile(header, f32(3))), "SAFETENSORS_CORRUPT", "overlap", `"a"`, `"b"`);
  });

  it("a byte length that does not match dtype × shape", () => {
    expectCode(
      () => SafetensorsFile.open(rawFile({ w: { dtype: "BF16", shape: [3], data_offsets: [0, 8] } }, f32(2))),
      "SAFETENSORS_CORRUPT",
      "needs 6",
    );
  });

  it("a truncated data section (file cut in the middle of the last tensor)", () => {
    const full = tmpPath();
    writeSafetensors(full, [
      { name: "a", dtype: "F32", shape: [8], data: f32(8) },
      { name: "z", dtype: "F32", shape: [8], data: f32(8) },
    ]);
    const bytes = fs.readFileSync(full);
    const cut = tmpPath();
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 10));
    expectCode(() => SafetensorsFile.open(cut), "SAFETENSORS_CORRUPT", cut, `"z"`, "truncated");
    // Same with the fixture: cut in the middle of its last tensor.
    const fixture = fs.readFileSync(FIXTURE);
    const cutFixture = tmpPath();
    fs.writeFileSync(cutFixture, fixture.subarray(0, fixture.length - 64));
    expectCode(() => SafetensorsFile.open(cutFixture), "SAFETENSORS_CORRUPT", "model.layers.5.operator_norm.weight");
  });

  it("a missing file is FILE_NOT_FOUND", () => {
    expectCode(() => SafetensorsFile.open(path.join(tmpRoot, "nope.safetensors")), "FILE_NOT_FOUND", "nope.safetensors");
  });
});

describe("Checkpoint", () => {
  it("opens the fixture folder through model.safetensors and checks shapes", () => {
    const ckpt = Checkpoint.open(FIXTURE_DIR);
    try {
      expect(ckpt.files).toEqual([path.join(FIXTURE_DIR, "model.safetensors")]);
      expect(ckpt.names()).toHaveLength(2 + 4 * 8 + 2 * 11) // globals + 4 conv layers + 2 attention layers;
      expect(ckpt.has("model.layers.4.self_attn.q_layernorm.weight")).toBe(true);
      expect(ckpt.expectShape("model.embed_tokens.weight", [1024, 64]).dtype).toBe("BF16");
      expect(ckpt.readFloat32("model.layers.4.self_attn.q_layernorm.weight")).toHaveLength(16);
      expectCode(
        () => ckpt.expectShape("model.layers.0.feed_forward.w1.weight", [256, 64]),
        "TENSOR_SHAPE_MISMATCH",
        "[192, 64]",
        "[256, 64]",
        "config",
      );
      expectCode(() => ckpt.expectShape("model.layers.2.conv.in_proj.weight", [192, 64]), "TENSOR_MISSING", "model.layers.0.conv.in_proj.weight");
      expectCode(() => ckpt.readRaw("embed_tokens.weight"), "TENSOR_MISSING", "model.embed_tokens.weight");
    } finally {
      ckpt.close();
    }
  });

  it("opens an explicit file name", () => {
    const ckpt = Checkpoint.open("fixtures/text", { file: "reference.safetensors" });
    expect(ckpt.has("forward.logits")).toBe(true);
    ckpt.close();
  });

  function writeSharded(dir: string, weightMap?: Record<string, string>): void {
    const t = (name: string, v: number) => ({
      name,
      dtype: "F32" as const,
      shape: [2],
      data: new Uint8Array(Float32Array.of(v, -v).buffer),
    });
    writeSafetensors(path.join(dir, "model-00001-of-00002.safetensors"), [t("a", 1), t("b", 2)]);
    writeSafetensors(path.join(dir, "model-00002-of-00002.safetensors"), [t("c", 3)]);
    const map = weightMap ?? { a: "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" };
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 24 }, weight_map: map }));
  }

  it("reads a sharded checkpoint through its index", () => {
    const dir = path.dirname(tmpPath());
    writeSharded(dir);
    const ckpt = Checkpoint.open(dir);
    expect(ckpt.files).toHaveLength(2);
    expect(ckpt.names()).toEqual(["a", "b", "c"]);
    expect(Array.from(ckpt.readFloat32("c"))).toEqual([3, -3]);
    expect(ckpt.info("c").file).toBe(path.join(dir, "model-00002-of-00002.safetensors"));
    expect(Array.from(ckpt.readFloat32("a"))).toEqual([1, -1]);
    ckpt.close();
  });

  it("reads a tensor from disk only when asked for", () => {
    const dir = path.dirname(tmpPath());
    writeSharded(dir);
    const ckpt = Checkpoint.open(dir);
    // Change "c"'s bytes on disk after opening: the read must see the new bytes.
    const info = ckpt.info("c");
    const fd = fs.openSync(info.file, "r+");
    fs.writeSync(fd, new Uint8Array(Float32Array.of(5, 6).buffer), 0, 8, info.start);
    fs.closeSync(fd);
    expect(Array.from(ckpt.readFloat32("c"))).toEqual([5, 6]);
    ckpt.close();
  });

  it("an index naming a missing shard is FILE_NOT_FOUND", () => {
    const dir = path.dirname(tmpPath());
    writeSharded(dir, { a: "model-00001-of-00002.safetensors", x: "model-00003-of-00003.safetensors" });
    expectCode(() => Checkpoint.open(dir), "FILE_NOT_FOUND", "model-00003-of-00003.safetensors", "download");
  });

  it("an index naming a tensor its shard lacks is SAFETENSORS_CORRUPT", () => {
    const dir = path.dirname(tmpPath());
    writeSharded(dir, { a: "model-00001-of-00002.safetensors", c: "model-00001-of-00002.safetensors" });
    expectCode(() => Checkpoint.open(dir), "SAFETENSORS_CORRUPT", `"c"`, "model-00001-of-00002.safetensors");
  });

  it("an index that is not JSON, or escapes the folder, is SAFETENSORS_CORRUPT", () => {
    const dir = path.dirname(tmpPath());
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), "{");
    expectCode(() => Checkpoint.open(dir), "SAFETENSORS_CORRUPT", "model.safetensors.index.json");
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../x.safetensors" } }));
    expectCode(() => Checkpoint.open(dir), "SAFETENSORS_CORRUPT", "../x.safetensors");
  });

  it("a folder without weights is FILE_NOT_FOUND, naming other safetensors files", () => {
    const dir = path.dirname(tmpPath());
    expectCode(() => Checkpoint.open(dir), "FILE_NOT_FOUND", "model.safetensors");
    writeSafetensors(path.join(dir, "mimi.safetensors"), []);
    expectCode(() => Checkpoint.open(dir), "FILE_NOT_FOUND", "mimi.safetensors");
  });
});
