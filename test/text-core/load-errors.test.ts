/**
 * Bad inputs through the whole loader: `TextModel.load` on broken copies of fixtures/text/tiny-lfm2
 * must reject with an `LfmError` of a stable code whose message names what is wrong — never a raw
 * fs / onnxruntime exception, never a half-written graph left in the cache. Plus the layouts that
 * must load: sharded, F16 / F32 copies, the Hugging Face cache, and the on-disk graph cache.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LfmError, type LfmErrorCode } from "../../text-core/errors.ts";
import { type LoadOptions, TextModel } from "../../text-core/model.ts";
import { type TensorToWrite, writeSafetensors } from "../../bench/safetensors-writer.ts";
import { float32ToF16 } from "../../text-core/float-bits.ts";
import { SafetensorsFile } from "../../text-core/safetensors.ts";
import { expectCode } from "../helpers/errors.ts";

const FIXTURE = path.resolve(import.meta.dirname, "..", "..", "fixtures", "text", "tiny-lfm2");
const PROMPT = [[1, 6, 594, 799]];

const root = fs.mkdtempSync(path.join(os.tmpdir(), "lfm-load-errors-"));
/** Graph cache shared by the failing cases (each must leave nothing half-written in it). */
const errorCache = path.join(root, "cache-errors");
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let count = 0;
/** A fresh copy of the fixture checkpoint. */
function copyFixture(label: string): string {
  const dir = path.join(root, `${count++}-${label}`);
  fs.cpSync(FIXTURE, dir, { recursive: true });
  return dir;
}

/** The fixture's tensors, as `writeSafetensors` takes them (raw bytes, original dtype). */
function fixtureTensors(): TensorToWrite[] {
  const f = SafetensorsFile.open(path.join(FIXTURE, "model.safetensors"));
  try {
    return f.names().map((name) => {
      const info = f.info(name);
      return { name, dtype: info.dtype, shape: info.shape, data: f.readRaw(name) };
    });
  } finally {
    f.close();
  }
}

function fixtureFloat32(name: string): Float32Array {
  const f = SafetensorsFile.open(path.join(FIXTURE, "model.safetensors"));
  try {
    return f.readFloat32(name);
  } finally {
    f.close();
  }
}

/** Rewrites `dir/model.safetensors` with `edit` applied to the fixture's tensors. */
function rewriteWeights(dir: string, edit: (tensors: TensorToWrite[]) => TensorToWrite[]): void {
  writeSafetensors(path.join(dir, "model.safetensors"), edit(fixtureTensors()), { format: "pt" });
}

function editConfig(dir: string, edit: (config: Record<string, unknown>) => void): void {
  const file = path.join(dir, "config.json");
  const config = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  edit(config);
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
}

async function load(dir: string, opts: LoadOptions = {}): Promise<TextModel> {
  return TextModel.load(dir, { cacheDir: errorCache, precision: "fp32", threads: 1, ...opts });
}

/** Folders in the cache that a build left behind half-done. */
function leftovers(cacheDir: string): string[] {
  if (!fs.existsSync(cacheDir)) return [];
  return fs
    .readdirSync(cacheDir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && (e.name.includes(".tmp-") || !fs.existsSync(path.join(cacheDir, e.name, "model.onnx"))))
    .map((e) => e.name);
}

/** Loading `dir` rejects with an LfmError of `code` whose message contains every part. */
async function expectLoadError(dir: string, code: LfmErrorCode, ...messageParts: string[]): Promise<LfmError> {
  // A model that loads after all is released before the failure is reported.
  const e = await expectCode(async () => (await load(dir)).release(), code, ...messageParts);
  expect(leftovers(errorCache)).toEqual([]);
  return e;
}

/** Logits of every position of PROMPT. */
async function logitsOf(dir: string, opts: LoadOptions = {}): Promise<Float32Array> {
  const model = await load(dir, opts);
  try {
    const out = await model.runtime.forward(model.runtime.newState(1), { ids: PROMPT, keep: PROMPT[0].length });
    return out.output.slice();
  } finally {
    await model.release();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

let reference: Float32Array;
beforeAll(async () => {
  reference = await logitsOf(FIXTURE, { cacheDir: path.join(root, "cache-reference") });
  expect(reference.length).toBe(PROMPT[0].length * 1024);
});

describe("the model folder and its files", () => {
  it("a path that does not exist is MODEL_NOT_FOUND", async () => {
    await expectLoadError(path.join(root, "no-such-model"), "MODEL_NOT_FOUND", "no-such-model", "does not exist");
  });

  it("a folder without config.json is MODEL_NOT_FOUND", async () => {
    const dir = copyFixture("no-config");
    fs.rmSync(path.join(dir, "config.json"));
    await expectLoadError(dir, "MODEL_NOT_FOUND", "config.json", "model.safetensors");
  });

  it("a folder without model.safetensors is FILE_NOT_FOUND", async () => {
    const dir = copyFixture("no-weights");
    fs.rmSync(path.join(dir, "model.safetensors"));
    await expectLoadError(dir, "FILE_NOT_FOUND", "model.safetensors");
  });

  it("a folder without tokenizer.json is FILE_NOT_FOUND", async () => {
    const dir = copyFixture("no-tokenizer");
    fs.rmSync(path.join(dir, "tokenizer.json"));
    await expectLoadError(dir, "FILE_NOT_FOUND", "tokenizer.json");
  });

  it("a tokenizer.json that is a folder is FILE_NOT_FOUND, not a raw EISDIR", async () => {
    const dir = copyFixture("tokenizer-dir");
    fs.rmSync(path.join(dir, "tokenizer.json"));
    fs.mkdirSync(path.join(dir, "tokenizer.json"));
    await expectLoadError(dir, "FILE_NOT_FOUND", "tokenizer.json");
  });

  it("a chat_template.jinja that is a folder is FILE_NOT_FOUND, not a raw EISDIR", async () => {
    const dir = copyFixture("template-dir");
    fs.rmSync(path.join(dir, "chat_template.jinja"));
    fs.mkdirSync(path.join(dir, "chat_template.jinja"));
    await expectLoadError(dir, "FILE_NOT_FOUND", "chat_template.jinja");
  });

  it("a chat template that does not parse is CHAT_TEMPLATE_INVALID", async () => {
    const dir = copyFixture("bad-template");
    fs.writeFileSync(path.join(dir, "chat_template.jinja"), "{% for m in messages %}{{ m.content }");
    await expectLoadError(dir, "CHAT_TEMPLATE_INVALID", "chat_template.jinja");
  });

  it("a model.safetensors that is a folder is FILE_NOT_FOUND", async () => {
    const dir = copyFixture("weights-dir");
    fs.rmSync(path.join(dir, "model.safetensors"));
    fs.mkdirSync(path.join(dir, "model.safetensors"));
    await expectLoadError(dir, "FILE_NOT_FOUND", "model.safetensors");
  });
});

describe("config.json", () => {
  it("not JSON is CONFIG_INVALID", async () => {
    const dir = copyFixture("config-not-json");
    fs.writeFileSync(path.join(dir, "config.json"), '{ "model_type": "lfm2", ');
    await expectLoadError(dir, "CONFIG_INVALID", "config.json", "not valid JSON");
  });

  it("a Llama config is UNKNOWN_ARCHITECTURE", async () => {
    const dir = copyFixture("llama");
    editConfig(dir, (c) => {
      c.model_type = "llama";
      c.architectures = ["LlamaForCausalLM"];
    });
    await expectLoadError(dir, "UNKNOWN_ARCHITECTURE", "config.json", "llama", "LlamaForCausalLM");
  });

  it("hidden_size 96 against 64-wide weights is TENSOR_SHAPE_MISMATCH", async () => {
    const dir = copyFixture("hidden-96");
    editConfig(dir, (c) => {
      c.hidden_size = 96;
    });
    await expectLoadError(dir, "TENSOR_SHAPE_MISMATCH", "model.embed_tokens.weight", "[1024, 64]", "[1024, 96]");
  });

  it("7 layers where the weights have 6 is TENSOR_MISSING naming layer 6", async () => {
    const dir = copyFixture("seven-layers");
    editConfig(dir, (c) => {
      c.num_hidden_layers = 7;
      c.layer_types = [...(c.layer_types as string[]), "conv"];
    });
    await expectLoadError(dir, "TENSOR_MISSING", "model.layers.6.");
  });
});

describe("tensors", () => {
  it("a missing tensor is TENSOR_MISSING naming it", async () => {
    const dir = copyFixture("missing-tensor");
    const name = "model.layers.2.self_attn.k_layernorm.weight";
    rewriteWeights(dir, (ts) => ts.filter((t) => t.name !== name));
    await expectLoadError(dir, "TENSOR_MISSING", name, "model.layers.2.self_attn.q_layernorm.weight");
  });

  it("a tensor of the wrong shape is TENSOR_SHAPE_MISMATCH naming it", async () => {
    const dir = copyFixture("w1-160");
    const name = "model.layers.1.feed_forward.w1.weight";
    rewriteWeights(dir, (ts) =>
      ts.map((t) => (t.name === name ? { ...t, shape: [160, 64], data: (t.data as Uint8Array).subarray(0, 160 * 64 * 2) } : t)),
    );
    await expectLoadError(dir, "TENSOR_SHAPE_MISMATCH", name, "[160, 64]", "[192, 64]");
  });

  it("a tensor stored as I32 is UNSUPPORTED_DTYPE naming it", async () => {
    const dir = copyFixture("i32");
    const name = "model.layers.3.conv.out_proj.weight";
    rewriteWeights(dir, (ts) =>
      ts.map((t) => (t.name === name ? { ...t, dtype: "I32", data: new Uint8Array(t.shape[0] * t.shape[1] * 4) } : t)),
    );
    await expectLoadError(dir, "UNSUPPORTED_DTYPE", name, "I32");
  });
});

describe("corrupt safetensors through the whole loader", () => {
  const weights = (dir: string) => path.join(dir, "model.safetensors");

  it("a file truncated in the middle of the data is SAFETENSORS_CORRUPT", async () => {
    const dir = copyFixture("truncated");
    const size = fs.statSync(weights(dir)).size;
    fs.truncateSync(weights(dir), Math.floor(size / 2));
    await expectLoadError(dir, "SAFETENSORS_CORRUPT", "model.safetensors", "run past the end");
  });

  it("a header length bigger than the file is SAFETENSORS_CORRUPT", async () => {
    const dir = copyFixture("header-too-long");
    const bytes = fs.readFileSync(weights(dir));
    bytes.writeBigUInt64LE(BigInt(bytes.length + 100), 0);
    fs.writeFileSync(weights(dir), bytes);
    await expectLoadError(dir, "SAFETENSORS_CORRUPT", "model.safetensors", "header length");
  });

  it("a 3-byte file is SAFETENSORS_CORRUPT", async () => {
    const dir = copyFixture("three-bytes");
    fs.writeFileSync(weights(dir), Buffer.from([1, 2, 3]));
    await expectLoadError(dir, "SAFETENSORS_CORRUPT", "model.safetensors", "only 3 bytes");
  });

  it("two tensors sharing a byte range is SAFETENSORS_CORRUPT", async () => {
    const dir = copyFixture("overlap");
    const bytes = fs.readFileSync(weights(dir));
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as Record<string, { data_offsets: number[] }>;
    const a = "model.layers.2.self_attn.q_layernorm.weight";
    const b = "model.layers.2.self_attn.k_layernorm.weight";
    header[b].data_offsets = [...header[a].data_offsets];
    // A new, valid header length; the data section after it is unchanged.
    const json = Buffer.from(JSON.stringify(header));
    const padded = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(padded.length));
    fs.writeFileSync(weights(dir), Buffer.concat([prefix, padded, bytes.subarray(8 + n)]));
    await expectLoadError(dir, "SAFETENSORS_CORRUPT", "model.safetensors", "overlap", "q_layernorm", "k_layernorm");
  });
});

describe("layouts that load", () => {
  function writeSharded(dir: string): { shards: string[] } {
    fs.rmSync(path.join(dir, "model.safetensors"));
    const tensors = fixtureTensors();
    const half = Math.ceil(tensors.length / 2);
    const shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    const parts = [tensors.slice(0, half), tensors.slice(half)];
    const weightMap: Record<string, string> = {};
    let total = 0;
    parts.forEach((part, i) => {
      writeSafetensors(path.join(dir, shards[i]), part, { format: "pt" });
      for (const t of part) {
        weightMap[t.name] = shards[i];
        total += (t.data as Uint8Array).byteLength;
      }
    });
    fs.writeFileSync(
      path.join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
    );
    return { shards };
  }

  it("a sharded checkpoint gives the same logits as the single file", async () => {
    const dir = copyFixture("sharded");
    writeSharded(dir);
    expect(maxAbsDiff(await logitsOf(dir), reference)).toBe(0);
  });

  it("an index naming a missing shard is FILE_NOT_FOUND naming the shard", async () => {
    const dir = copyFixture("missing-shard");
    const { shards } = writeSharded(dir);
    fs.rmSync(path.join(dir, shards[1]));
    await expectLoadError(dir, "FILE_NOT_FOUND", shards[1], "model.safetensors.index.json");
  });

  it("F16 and F32 copies give the BF16 original's logits (within F16 rounding / exactly)", async () => {
    for (const [dtype, tolerance] of [
      ["F16", 1e-2],
      ["F32", 1e-5],
    ] as const) {
      const dir = copyFixture(dtype);
      rewriteWeights(dir, (ts) =>
        ts.map((t) => {
          const f32 = fixtureFloat32(t.name);
          const data = dtype === "F32" ? new Uint8Array(f32.buffer) : new Uint8Array(float32ToF16(f32).buffer);
          return { ...t, dtype, data };
        }),
      );
      const f = SafetensorsFile.open(path.join(dir, "model.safetensors"));
      expect(new Set(f.names().map((n) => f.info(n).dtype))).toEqual(new Set([dtype]));
      f.close();
      expect(maxAbsDiff(await logitsOf(dir), reference), dtype).toBeLessThanOrEqual(tolerance);
    }
  });

  it("a Hugging Face cache folder (blobs + snapshots/<rev> symlinks + refs/main) loads", async () => {
    const repo = path.join(root, "hub", "models--LiquidAI--Tiny");
    const rev = "0123456789abcdef0123456789abcdef01234567";
    const snapshot = path.join(repo, "snapshots", rev);
    fs.mkdirSync(path.join(repo, "blobs"), { recursive: true });
    fs.mkdirSync(snapshot, { recursive: true });
    fs.mkdirSync(path.join(repo, "refs"));
    fs.writeFileSync(path.join(repo, "refs", "main"), rev);
    for (const [i, name] of fs.readdirSync(FIXTURE).entries()) {
      const blob = path.join(repo, "blobs", `blob${i}`);
      fs.copyFileSync(path.join(FIXTURE, name), blob);
      fs.symlinkSync(path.relative(snapshot, blob), path.join(snapshot, name));
    }
    // An older snapshot without weights must not be picked.
    fs.mkdirSync(path.join(repo, "snapshots", "old"));
    fs.copyFileSync(path.join(FIXTURE, "config.json"), path.join(repo, "snapshots", "old", "config.json"));

    const model = await load(repo);
    try {
      expect(model.dir).toBe(snapshot);
      const out = await model.runtime.forward(model.runtime.newState(1), { ids: PROMPT, keep: PROMPT[0].length });
      expect(maxAbsDiff(out.output, reference)).toBe(0);
    } finally {
      await model.release();
    }
  });
});

describe("the graph cache", () => {
  // Graph folders only (the cache also keeps a content-hash memo file).
  const entries = (dir: string) => fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();

  it("builds once per checkpoint, and again when a weight file changes", async () => {
    const dir = copyFixture("cache");
    const cacheDir = path.join(root, "cache-once");
    const first = await logitsOf(dir, { cacheDir });
    const built = entries(cacheDir);
    expect(built).toHaveLength(1);
    const onnx = path.join(cacheDir, built[0], "model.onnx");
    const mtime = fs.statSync(onnx).mtimeMs;

    expect(await logitsOf(dir, { cacheDir })).toEqual(first);
    expect(entries(cacheDir)).toEqual(built);
    expect(fs.statSync(onnx).mtimeMs).toBe(mtime);

    // Same size and header, different values: the key still changes (size + mtime + header).
    const name = "model.embedding_norm.weight";
    rewriteWeights(dir, (ts) => ts.map((t) => (t.name === name ? { ...t, data: new Uint8Array((t.data as Uint8Array).length) } : t)));
    const future = new Date(Date.now() + 5_000);
    fs.utimesSync(path.join(dir, "model.safetensors"), future, future);
    const changed = await logitsOf(dir, { cacheDir });
    const after = entries(cacheDir);
    expect(after).toHaveLength(2);
    expect(after).toEqual(expect.arrayContaining(built));
    expect(maxAbsDiff(changed, first)).toBeGreaterThan(0);
  });

  it("a build interrupted earlier (a <key>.tmp-* folder left behind) does not stop the next load", async () => {
    const dir = copyFixture("interrupted");
    const probe = path.join(root, "cache-probe");
    await (await load(dir, { cacheDir: probe })).release();
    const [key] = entries(probe);

    const cacheDir = path.join(root, "cache-interrupted");
    // A dead builder's half-written folder (pid far above pid_max) and a live one's (our own pid).
    const dead = path.join(cacheDir, `${key}.tmp-999999999-1700000000000`);
    const live = path.join(cacheDir, `${key}.tmp-${process.pid}-1700000000000`);
    const anHourAgo = new Date(Date.now() - 3_600_000);
    for (const tmp of [dead, live]) {
      fs.mkdirSync(tmp, { recursive: true });
      for (const name of ["model.onnx.data", "model.onnx"]) {
        fs.writeFileSync(path.join(tmp, name), Buffer.from("half a protobuf"));
        fs.utimesSync(path.join(tmp, name), anHourAgo, anHourAgo);
      }
      fs.utimesSync(tmp, anHourAgo, anHourAgo);
    }
    expect(maxAbsDiff(await logitsOf(dir, { cacheDir }), reference)).toBe(0);
    expect(fs.existsSync(path.join(cacheDir, key, "model.onnx"))).toBe(true);
    expect(fs.existsSync(dead)).toBe(false); // its builder is gone and it is an hour old: removed
    expect(fs.existsSync(live)).toBe(true); // its builder still runs: left alone
  });

  it("a cached graph folder that is incomplete or corrupt is rebuilt, not reported forever", async () => {
    const dir = copyFixture("poisoned");
    const probe = path.join(root, "cache-probe-2");
    await (await load(dir, { cacheDir: probe })).release();
    const [key] = entries(probe);

    // The folder exists but holds no model.onnx (e.g. written by hand or by an older version).
    const emptyCache = path.join(root, "cache-empty-entry");
    fs.mkdirSync(path.join(emptyCache, key, "junk"), { recursive: true });
    expect(maxAbsDiff(await logitsOf(dir, { cacheDir: emptyCache }), reference)).toBe(0);

    // model.onnx is there but is garbage (disk full, hand edits).
    const corruptCache = path.join(root, "cache-corrupt-entry");
    fs.cpSync(path.join(probe, key), path.join(corruptCache, key), { recursive: true });
    fs.writeFileSync(path.join(corruptCache, key, "model.onnx"), Buffer.from("not a model"));
    expect(maxAbsDiff(await logitsOf(dir, { cacheDir: corruptCache }), reference)).toBe(0);
    expect(fs.statSync(path.join(corruptCache, key, "model.onnx")).size).toBe(fs.statSync(path.join(probe, key, "model.onnx")).size);
  });

  it("a cacheDir that is a file is a typed error naming it", async () => {
    const file = path.join(root, "cache-is-a-file");
    fs.writeFileSync(file, "x");
    await expectCode(async () => (await TextModel.load(FIXTURE, { cacheDir: file, threads: 1 })).release(), "CACHE_UNWRITABLE", file, "cacheDir");
  });
});
