/**
 * A checkpoint's weights as one name → tensor map: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json` (each checked to exist and to hold what the index maps to it).
 * Opening reads headers only; a missing tensor is `TENSOR_MISSING` with the names closest to it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { LfmError } from "./errors.ts";
import { SafetensorsFile, type TensorInfo, corrupt, fileNotFound, similarNamesHint } from "./safetensors.ts";

export const SINGLE_FILE_NAME = "model.safetensors";
export const INDEX_FILE_NAME = "model.safetensors.index.json";

/**
 * A checkpoint's safetensors file(s) as one name → tensor map. Opening reads headers only; each
 * `readRaw`/`readFloat32` reads exactly one tensor from disk.
 */
export class Checkpoint {
  /** The files, in the order they were opened. */
  readonly files: readonly string[];
  readonly #byName: Map<string, SafetensorsFile>;
  readonly #open: SafetensorsFile[];

  private constructor(files: SafetensorsFile[], byName: Map<string, SafetensorsFile>) {
    this.#open = files;
    this.files = files.map((f) => f.path);
    this.#byName = byName;
  }

  /**
   * Opens `dir/model.safetensors.index.json` (sharded), else `dir/model.safetensors`; or
   * `opts.file` (relative to `dir`, or absolute) when given.
   */
  static open(dir: string, opts?: { file?: string }): Checkpoint {
    if (opts?.file !== undefined) {
      const file = SafetensorsFile.open(path.resolve(dir, opts.file));
      return Checkpoint.#fromFiles([file]);
    }
    const indexPath = path.join(dir, INDEX_FILE_NAME);
    if (fs.existsSync(indexPath)) return Checkpoint.#fromIndex(dir, indexPath);
    const single = path.join(dir, SINGLE_FILE_NAME);
    if (fs.existsSync(single)) return Checkpoint.#fromFiles([SafetensorsFile.open(single)]);

    let others: string[] = [];
    try {
      others = fs.readdirSync(dir).filter((f) => f.endsWith(".safetensors"));
    } catch (e) {
      throw fileNotFound(dir, e);
    }
    const hint =
      others.length > 0
        ? ` It has ${others.map((f) => `"${f}"`).join(", ")}; pass the one holding the model's weights explicitly.`
        : " Download the full checkpoint (config.json, tokenizer files and the safetensors weights).";
    throw new LfmError("FILE_NOT_FOUND", `${dir} has neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}.${hint}`);
  }

  static #fromFiles(files: SafetensorsFile[]): Checkpoint {
    const byName = new Map<string, SafetensorsFile>();
    for (const f of files) for (const n of f.names()) if (!byName.has(n)) byName.set(n, f);
    return new Checkpoint(files, byName);
  }

  static #fromIndex(dir: string, indexPath: string): Checkpoint {
    let index: unknown;
    try {
      index = JSON.parse(fs.readFileSync(indexPath, "utf8"));
    } catch {
      throw corrupt(indexPath, "is not valid JSON");
    }
    const weightMap =
      typeof index === "object" && index !== null ? (index as Record<string, unknown>).weight_map : undefined;
    if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
      throw corrupt(indexPath, `has no "weight_map" object`);
    }
    const entries = Object.entries(weightMap as Record<string, unknown>);
    const shardNames: string[] = [];
    for (const [name, shard] of entries) {
      if (typeof shard !== "string" || shard === "" || path.isAbsolute(shard) || shard.split(/[\\/]/).includes("..")) {
        throw corrupt(indexPath, `weight_map entry ${JSON.stringify(shard)} is not a file name in the checkpoint folder`, name);
      }
      if (!shardNames.includes(shard)) shardNames.push(shard);
    }

    const opened = new Map<string, SafetensorsFile>();
    try {
      for (const shard of shardNames) {
        const shardPath = path.join(dir, shard);
        if (!fs.existsSync(shardPath)) {
          throw new LfmError(
            "FILE_NOT_FOUND",
            `${indexPath} lists shard "${shard}", but ${shardPath} does not exist. The download is incomplete; download the missing shard(s) again.`,
          );
        }
        opened.set(shard, SafetensorsFile.open(shardPath));
      }
      const byName = new Map<string, SafetensorsFile>();
      for (const [name, shard] of entries) {
        const file = opened.get(shard as string) as SafetensorsFile;
        if (!file.has(name)) throw corrupt(file.path, `${INDEX_FILE_NAME} maps the tensor here, but the file does not hold it`, name);
        byName.set(name, file);
      }
      // Tensors a shard holds beyond the index are loaded too, as transformers does.
      for (const file of opened.values()) for (const n of file.names()) if (!byName.has(n)) byName.set(n, file);
      return new Checkpoint([...opened.values()], byName);
    } catch (e) {
      for (const f of opened.values()) f.close();
      throw e;
    }
  }

  /** All tensor names, file by file in file order. */
  names(): string[] {
    return [...this.#byName.keys()].sort((a, b) => {
      const ia = this.info(a);
      const ib = this.info(b);
      return ia.file === ib.file ? ia.start - ib.start : this.files.indexOf(ia.file) - this.files.indexOf(ib.file);
    });
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  #file(name: string): SafetensorsFile {
    const file = this.#byName.get(name);
    if (file === undefined) {
      const where = this.files.length === 1 ? this.files[0] : `the checkpoint (${this.files.length} files)`;
      throw new LfmError(
        "TENSOR_MISSING",
        `Tensor "${name}" is missing from ${where}${similarNamesHint(name, this.#byName.keys())} ` +
          `The weights do not belong to the architecture in config.json, or the download is incomplete; re-download the checkpoint.`,
      );
    }
    return file;
  }

  /** Where `name` lives; `TENSOR_MISSING` (with similar names) if absent. */
  info(name: string): TensorInfo {
    return this.#file(name).info(name);
  }

  readRaw(name: string): Uint8Array {
    return this.#file(name).readRaw(name);
  }

  readFloat32(name: string): Float32Array {
    return this.#file(name).readFloat32(name);
  }

  readFloat32Rows(name: string, start: number, count: number): Float32Array {
    return this.#file(name).readFloat32Rows(name, start, count);
  }

  /**
   * Checks that `name` exists with exactly `shape` and returns its info; `TENSOR_MISSING` or
   * `TENSOR_SHAPE_MISMATCH` otherwise.
   */
  expectShape(name: string, shape: number[]): TensorInfo {
    const info = this.info(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new LfmError(
        "TENSOR_SHAPE_MISMATCH",
        `Tensor "${name}" in ${info.file} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]. ` +
          `The config.json probably does not match these weights; use the config that came with the checkpoint.`,
      );
    }
    return info;
  }

  close(): void {
    for (const f of this.#open) f.close();
  }
}
