/**
 * The audio output head of an LFM2-Audio checkpoint at run time: the depthformer graph
 * (`depthformer.ts`, built once and cached on disk) decoding one frame of codes from an LM hidden
 * state, and the frame embedding that feeds a generated frame back to the LM.
 */
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { EmbeddingTable } from "../text-core/embeddings.ts";
import { LfmError } from "../text-core/errors.ts";
import { builderFingerprint, openCachedGraph } from "../text-core/graph-cache.ts";
import { type Precision, precisionOption } from "../text-core/graph/precision.ts";
import { withCheckpoint } from "../text-core/model.ts";
import { KvCache, createSession } from "../text-core/runtime.ts";
import type { Lfm2AudioConfig } from "./audio-config.ts";
import {
  AUDIO_EMBEDDINGS_FILE,
  type AudioHeadShape,
  DEPTH_EMBEDDINGS_FILE,
  buildDepthformerGraph,
  depthNewKeyName,
  depthNewValueName,
  depthPastKeyName,
  depthPastValueName,
} from "./depthformer.ts";

export interface AudioHeadLoadOptions {
  /** Depthformer MatMuls: "q4" (default), "q8" or "fp32" (reference parity). */
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  onProgress?: (stage: string) => void;
}

/** The sources that decide the graph: part of the cache key, so an edited builder never runs a stale graph. */
const BUILDER_SOURCES = ["depthformer", "audio-config"];

export function audioHeadShape(config: Lfm2AudioConfig): AudioHeadShape {
  return { depthformer: config.depthformer, codebooks: config.codebooks, audioVocabSize: config.audioVocabSize, lmHidden: config.lfm.hiddenSize };
}

export class AudioHead {
  private constructor(
    readonly shape: AudioHeadShape,
    private readonly session: ort.InferenceSession,
    private readonly depthEmbeddings: EmbeddingTable,
    private readonly audioEmbeddings: EmbeddingTable,
  ) {}

  /** Builds (or finds in the cache) the depthformer of the checkpoint in `dir`. */
  static async load(dir: string, config: Lfm2AudioConfig, opts: AudioHeadLoadOptions = {}): Promise<AudioHead> {
    const progress = opts.onProgress ?? (() => {});
    const shape = audioHeadShape(config);
    const precision = precisionOption(opts.precision, "q4");
    return withCheckpoint(dir, (weights, files) =>
      openCachedGraph({
        kind: "depthformer",
        files,
        options: { precision, shape, builder: builderFingerprint(import.meta.dirname, BUILDER_SOURCES) },
        build: () => buildDepthformerGraph(weights, shape, precision),
        open: async (graphDir) => {
          const V = shape.codebooks * shape.audioVocabSize;
          const depth = EmbeddingTable.open(join(graphDir, DEPTH_EMBEDDINGS_FILE), V, shape.depthformer.dim);
          let audio: EmbeddingTable | undefined;
          try {
            audio = EmbeddingTable.open(join(graphDir, AUDIO_EMBEDDINGS_FILE), V, shape.lmHidden);
            return new AudioHead(shape, await createSession(join(graphDir, "model.onnx"), { threads: opts.threads }), depth, audio);
          } catch (e) {
            depth.close();
            audio?.close();
            throw e;
          }
        },
        cacheDir: opts.cacheDir,
        progress,
        stages: { build: "building the depthformer graph", rebuild: "the cached depthformer graph is unreadable; rebuilding it" },
      }),
    );
  }

  /**
   * One frame of codes (one per codebook, each in [0, 2048]; 2048 = end of audio) from the LM's
   * final-normed hidden state. `pick` chooses a code from codebook k's 2049 logits.
   */
  async frame(lmHidden: Float32Array, pick: (logits: Float32Array, codebook: number) => number): Promise<number[]> {
    const { depthformer: df, codebooks, lmHidden: Dlm } = this.shape;
    if (lmHidden.length !== Dlm) throw new LfmError("INVALID_ARGUMENT", `the audio head takes a hidden state of ${Dlm} values, got ${lmHidden.length}.`);
    const keys = Array.from({ length: df.layers }, () => new KvCache(1, df.numKvHeads, df.headDim, codebooks));
    const values = Array.from({ length: df.layers }, () => new KvCache(1, df.numKvHeads, df.headDim, codebooks));
    const hidden = new ort.Tensor("float32", lmHidden, [1, Dlm]);
    const prev = new Float32Array(df.dim);
    const codes: number[] = [];
    for (let k = 0; k < codebooks; k++) {
      const feeds: Record<string, ort.Tensor> = {
        lm_hidden: hidden,
        codebook: new ort.Tensor("int64", BigInt64Array.from([BigInt(k)]), [1]),
        prev_embedding: new ort.Tensor("float32", prev, [1, df.dim]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from([BigInt(k)]), [1, 1]),
      };
      const fetches = ["logits"];
      for (let i = 0; i < df.layers; i++) {
        feeds[depthPastKeyName(i)] = keys[i].tensor();
        feeds[depthPastValueName(i)] = values[i].tensor();
        fetches.push(depthNewKeyName(i), depthNewValueName(i));
      }
      let out: ort.InferenceSession.ReturnType;
      try {
        out = await this.session.run(feeds, fetches);
      } catch (e) {
        throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while running the depthformer: ${(e as Error).message}`, { cause: e });
      }
      for (let i = 0; i < df.layers; i++) {
        keys[i].append(out[depthNewKeyName(i)].data as Float32Array, 1);
        values[i].append(out[depthNewValueName(i)].data as Float32Array, 1);
      }
      const code = pick(out.logits.data as Float32Array, k);
      codes.push(code);
      if (k + 1 < codebooks) this.depthEmbeddings.lookup([k * this.shape.audioVocabSize + code], prev);
    }
    return codes;
  }

  /** The LM input for a generated frame: Σ_k audio_embedding[c_k + 2049·k] (a plain sum, as liquid-audio feeds it). */
  frameEmbedding(codes: readonly number[]): Float32Array {
    const { codebooks, audioVocabSize: V, lmHidden: D } = this.shape;
    if (codes.length !== codebooks || codes.some((c) => !Number.isInteger(c) || c < 0 || c >= V)) {
      throw new LfmError("INVALID_ARGUMENT", `an audio frame is ${codebooks} codes in [0, ${V - 1}]; got [${codes.join(", ")}].`);
    }
    const rows = new Float32Array(codebooks * D);
    this.audioEmbeddings.lookup(codes.map((c, k) => c + k * V), rows);
    const sum = new Float32Array(D);
    for (let k = 0; k < codebooks; k++) for (let i = 0; i < D; i++) sum[i] += rows[k * D + i];
    return sum;
  }

  async release(): Promise<void> {
    this.depthEmbeddings.close();
    this.audioEmbeddings.close();
    await this.session.release();
  }
}
