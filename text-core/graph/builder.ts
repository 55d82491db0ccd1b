/**
 * A small ONNX graph builder: every network in the toolkit is written against it and run by
 * onnxruntime-node. Values are plain strings named after checkpoint paths, so any intermediate can
 * be promoted to a graph output and compared with the reference fixtures.
 *
 * Weights are registered as lazy initializers (a function that produces the bytes) and are
 * streamed into an external-data file one at a time by `saveModel`, so building a 1 GB model never
 * holds more than one tensor's worth of converted weights in JavaScript memory.
 */
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type OnnxProto from "onnx-proto";

let onnxModule: typeof OnnxProto | undefined;
/** onnx-proto's schema, loaded when a graph is first serialised (~70 ms that a cached start skips). */
function onnxSchema(): typeof OnnxProto.onnx {
  onnxModule ??= createRequire(import.meta.url)("onnx-proto") as typeof OnnxProto;
  return onnxModule.onnx;
}

/** ONNX TensorProto element types used here. */
export const ElemType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

export type Dim = number | string;
/** Attribute values: a plain number is an INT, `{ f }` a FLOAT, a number array INTS. */
export type AttrValue = number | { f: number } | string | number[] | { floats: number[] } | { tensor: ConstTensor };

interface ConstTensor {
  elemType: ElemType;
  dims: number[];
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
}

interface Initializer {
  name: string;
  elemType: ElemType;
  dims: number[];
  /** Produces the raw little-endian bytes; called once, when the model is written. */
  bytes: () => Uint8Array;
}

interface NodeSpec {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs: Record<string, AttrValue>;
}

interface ValueSpec {
  name: string;
  elemType: ElemType;
  dims: Dim[];
}

function asBytes(a: Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export class GraphBuilder {
  private readonly nodes: NodeSpec[] = [];
  private readonly inits = new Map<string, Initializer>();
  private readonly inputs: ValueSpec[] = [];
  private readonly outputs: ValueSpec[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private readonly domains = new Map<string, number>([["", 21]]);
  private readonly sideFiles = new Map<string, (fd: number) => void>();

  constructor(readonly graphName: string) {}

  /** A fresh value name based on `base` (checkpoint-path style); suffixes keep names unique. */
  fresh(base: string): string {
    if (!this.used.has(base)) {
      this.used.add(base);
      return base;
    }
    for (let i = 1; ; i++) {
      const candidate = `${base}_${i}`;
      if (!this.used.has(candidate)) {
        this.used.add(candidate);
        return candidate;
      }
    }
  }

  useDomain(domain: string, version: number): void {
    this.domains.set(domain, version);
  }

  input(name: string, elemType: ElemType, dims: Dim[]): string {
    if (this.used.has(name)) throw new Error(`graph value ${name} already defined`);
    this.used.add(name);
    this.inputs.push({ name, elemType, dims });
    return name;
  }

  /** Marks an existing value as a graph output under `name` (an Identity when renamed). */
  output(value: string, name: string, elemType: ElemType, dims: Dim[]): void {
    if (value !== name) {
      if (this.used.has(name)) throw new Error(`graph value ${name} already defined`);
      this.used.add(name);
      this.nodes.push({ opType: "Identity", domain: "", inputs: [value], outputs: [name], name: `${name}/Identity`, attrs: {} });
    }
    this.outputs.push({ name, elemType, dims });
  }

  /** A file saved beside the graph (e.g. the embedding table), written by `write` at save time. */
  sideFile(name: string, write: (fd: number) => void): void {
    if (name.startsWith("model.onnx")) throw new Error(`side file ${name} would clash with the graph's own files`);
    this.sideFiles.set(name, write);
  }

  hasInitializer(name: string): boolean {
    return this.inits.has(name);
  }

  /** Registers a weight. `bytes` runs once, at save time. */
  initializer(name: string, elemType: ElemType, dims: number[], bytes: () => Uint8Array): string {
    if (this.inits.has(name)) return name;
    if (this.used.has(name)) throw new Error(`graph value ${name} already defined`);
    this.used.add(name);
    this.inits.set(name, { name, elemType, dims, bytes });
    return name;
  }

  floatInitializer(name: string, dims: number[], data: () => Float32Array): string {
    return this.initializer(name, ElemType.FLOAT, dims, () => asBytes(data()));
  }

  /** A small constant, deduplicated by value. */
  constFloat(values: number[] | number, dims?: number[]): string {
    const arr = Array.isArray(values) ? values : [values];
    const shape = dims ?? (Array.isArray(values) ? [arr.length] : []);
    const key = `f:${shape.join(",")}:${arr.join(",")}`;
    return this.cachedConst(key, "const_f", ElemType.FLOAT, shape, () => asBytes(new Float32Array(arr)));
  }

  constInt32(values: number[] | number, dims?: number[]): string {
    const arr = Array.isArray(values) ? values : [values];
    const shape = dims ?? (Array.isArray(values) ? [arr.length] : []);
    const key = `i32:${shape.join(",")}:${arr.join(",")}`;
    return this.cachedConst(key, "const_i32", ElemType.INT32, shape, () => asBytes(Int32Array.from(arr)));
  }

  constInt64(values: number[] | number, dims?: number[]): string {
    const arr = Array.isArray(values) ? values : [values];
    const shape = dims ?? (Array.isArray(values) ? [arr.length] : []);
    const key = `i:${shape.join(",")}:${arr.join(",")}`;
    return this.cachedConst(key, "const_i", ElemType.INT64, shape, () => asBytes(BigInt64Array.from(arr.map((v) => BigInt(v)))));
  }

  private cachedConst(key: string, base: string, elemType: ElemType, dims: number[], bytes: () => Uint8Array): string {
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh(base);
    this.used.delete(name);
    this.initializer(name, elemType, dims, bytes);
    this.constCache.set(key, name);
    return name;
  }

  /** Adds a node with one output named `outName` (made unique); returns the output name. */
  op(opType: string, inputs: string[], outName: string, attrs: Record<string, AttrValue> = {}, domain = ""): string {
    return this.opMulti(opType, inputs, [outName], attrs, domain)[0];
  }

  /** Adds a node with several outputs; returns their (unique) names. */
  opMulti(opType: string, inputs: string[], outNames: string[], attrs: Record<string, AttrValue> = {}, domain = ""): string[] {
    const outputs = outNames.map((n) => this.fresh(n));
    this.nodes.push({ opType, domain, inputs, outputs, name: `${outputs[0]}/${opType}`, attrs });
    return outputs;
  }

  /** Serialises the graph; initializers larger than `inlineLimit` bytes go to `dataFile`. */
  private toProto(writeExternal: ((bytes: Uint8Array) => number) | null, dataFileName: string, inlineLimit: number) {
    const valueInfo = (v: ValueSpec) => ({
      name: v.name,
      type: {
        tensorType: {
          elemType: v.elemType,
          shape: { dim: v.dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
    const initializer = [];
    for (const init of this.inits.values()) {
      const bytes = init.bytes();
      const base = { name: init.name, dims: init.dims, dataType: init.elemType };
      if (writeExternal && bytes.byteLength > inlineLimit) {
        const offset = writeExternal(bytes);
        initializer.push({
          ...base,
          dataLocation: onnxSchema().TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: "location", value: dataFileName },
            { key: "offset", value: String(offset) },
            { key: "length", value: String(bytes.byteLength) },
          ],
        });
      } else {
        // Copy: the proto must not alias a buffer the producer may reuse.
        initializer.push({ ...base, rawData: bytes.slice() });
      }
    }
    const node = this.nodes.map((n) => ({
      opType: n.opType,
      domain: n.domain,
      input: n.inputs,
      output: n.outputs,
      name: n.name,
      attribute: Object.entries(n.attrs).map(([name, v]) => attributeProto(name, v)),
    }));
    return onnxSchema().ModelProto.create({
      irVersion: 8,
      producerName: "lfm2-edge",
      opsetImport: [...this.domains.entries()].map(([domain, version]) => ({ domain, version })),
      graph: {
        name: this.graphName,
        node,
        initializer,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
    });
  }

  /** The whole model as bytes with weights inline (small models only: protobuf caps at 2 GB). */
  toBytes(): Uint8Array {
    return onnxSchema().ModelProto.encode(this.toProto(null, "", 0)).finish();
  }

  /**
   * Writes `dir/model.onnx`, `dir/model.onnx.data` and the side files. Written into a temporary sibling folder
   * and renamed into place, so an interrupted build never leaves a half-written model behind.
   */
  save(dir: string): void {
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const dataName = "model.onnx.data";
    const fd = openSync(join(tmp, dataName), "w");
    let offset = 0;
    try {
      const proto = this.toProto(
        (bytes) => {
          // Page-aligned offsets let onnxruntime map the weights instead of copying them.
          const aligned = Math.ceil(offset / 4096) * 4096;
          writeSync(fd, bytes, 0, bytes.byteLength, aligned);
          offset = aligned + bytes.byteLength;
          return aligned;
        },
        dataName,
        1024,
      );
      writeFileSync(join(tmp, "model.onnx"), onnxSchema().ModelProto.encode(proto).finish());
      for (const [name, write] of this.sideFiles) {
        const sideFd = openSync(join(tmp, name), "w");
        try {
          write(sideFd);
        } finally {
          closeSync(sideFd);
        }
      }
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    closeSync(fd);
    publishDir(tmp, dir);
  }

  get nodeCount(): number {
    return this.nodes.length;
  }
}

/**
 * Moves a completed temporary folder into place. If another process published the same folder
 * meanwhile, theirs is kept (it is identical) and ours discarded, so a reader never sees a folder
 * vanish under it.
 */
export function publishDir(tmp: string, dir: string): void {
  try {
    renameSync(tmp, dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
    rmSync(tmp, { recursive: true, force: true });
  }
}

function attributeProto(name: string, v: AttrValue) {
  const T = onnxSchema().AttributeProto.AttributeType;
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer; use { f: ${v} } for floats`);
    return { name, type: T.INT, i: v };
  }
  if (typeof v === "string") return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ("f" in v) return { name, type: T.FLOAT, f: v.f };
  if ("floats" in v) return { name, type: T.FLOATS, floats: v.floats };
  return {
    name,
    type: T.TENSOR,
    t: { dims: v.tensor.dims, dataType: v.tensor.elemType, rawData: asBytes(v.tensor.data).slice() },
  };
}
