/**
 * A loaded LFM2-Audio checkpoint (liquid-audio folder: `config.json` with preprocessor / encoder /
 * lfm / depthformer blocks, `model.safetensors` with `lfm.*`, `conformer.*`, `audio_adapter.*`,
 * `audio_embedding.*`, `depth*` tensors, the tokenizer files).
 *
 * The input side lives here: mel front end → encoder + adapter graph → LM input rows, the prompt
 * builder, and the LM itself (text-core's LFM2 graph over the `lfm.` tensors; audio rows enter
 * through `forward`'s `overrides`). Text logits are the tied head (`h · embed_tokensᵀ`), exactly
 * liquid-audio's text step. Pass `exposeHidden: true` for the final-normed hidden state
 * (`hidden.<numLayers>` in `forward`'s `extraOutputs`), which the depthformer reads.
 */
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { type Lfm2AudioConfig, loadLfm2AudioConfig } from "./audio-config.ts";
import { ENCODER_IO, buildAudioEncoderGraph, relativePositionTable } from "./fastconformer.ts";
import { MelFrontEnd, type MelFeatures } from "./mel.ts";
import { AudioChatPrompt } from "./prompt.ts";
import { resample } from "./resample.ts";
import type { AudioClip } from "./wav.ts";
import { subsampledLength } from "./audio-config.ts";
import { LfmError } from "../text-core/errors.ts";
import { builderFingerprint, openCachedGraph } from "../text-core/graph-cache.ts";
import { type Precision, precisionOption, promptEncoderPrecision } from "../text-core/graph/precision.ts";
import { buildRuntime, withCheckpoint } from "../text-core/model.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import { type Lfm2Runtime, createSession } from "../text-core/runtime.ts";
import { Checkpoint } from "../text-core/checkpoint.ts";
import { Lfm2Tokenizer } from "../text-core/tokenizer.ts";

export interface AudioModelLoadOptions {
  /** Precision of the LM's big MatMuls: "q4" (default), "q8" or "fp32". */
  precision?: Precision;
  /**
   * Precision of the encoder's Linears: default "fp32" when `precision` is, else "q8". Not q4 by
   * default: the encoder runs once per window (not per token), and 4-bit weights cost it far more
   * accuracy (tiny fixture, adapter output relative L2: q8 0.5 %, q4 8 %).
   */
  encoderPrecision?: Precision;
  threads?: number;
  /** Where built graphs are cached; `false` builds in a temporary folder removed after loading. */
  cacheDir?: string | false;
  /** Adds the LM's per-layer hidden outputs (`hidden.k`), e.g. the final one for the depthformer. */
  exposeHidden?: boolean;
  onProgress?: (stage: string) => void;
}

/** The code that decides the encoder graph: part of its cache key. */
const ENCODER_BUILDER_SOURCES = ["fastconformer", "audio-config"];

/** Audio-in rows for the LM: one per 80 ms of audio. */
export interface AudioEmbeddings {
  /** [count, lmHidden] row-major. */
  rows: Float32Array;
  count: number;
  /** The mel features they came from. */
  mel: MelFeatures;
}

/** The encoder + adapter graph in an onnxruntime session. */
export class AudioEncoder {
  constructor(
    readonly session: ort.InferenceSession,
    readonly config: Lfm2AudioConfig,
  ) {}

  /**
   * Encodes the valid frames of `mel` (`mel.validFrames`: the reference feeds the encoder the
   * L // hop frames the front end computed from samples, not the zeroed terminal frame).
   * Returns the adapter rows and the conformer output, both [T', ·] with T' = ceil(valid / 8).
   */
  async encode(mel: MelFeatures): Promise<{ embeddings: Float32Array; encoderOut: Float32Array; frames: number }> {
    const enc = this.config.encoder;
    if (mel.melBins !== enc.featIn) {
      throw new LfmError("INVALID_ARGUMENT", `the encoder takes ${enc.featIn} mel bins, got ${mel.melBins}.`);
    }
    const T = mel.validFrames;
    const features = new Float32Array(enc.featIn * T);
    for (let m = 0; m < enc.featIn; m++) features.set(mel.data.subarray(m * mel.frames, m * mel.frames + T), m * T);
    const frames = subsampledLength(T, enc.subsamplingStages);
    if (frames > enc.posEmbMaxLen) {
      throw new LfmError(
        "AUDIO_TOO_LONG",
        `${((T * this.config.preprocessor.hopSamples) / this.config.preprocessor.sampleRateHz).toFixed(0)} s of audio is more than the encoder's ${enc.posEmbMaxLen} positions; transcribe() splits long recordings into chunks.`,
      );
    }
    const feeds = {
      [ENCODER_IO.features]: new ort.Tensor("float32", features, [1, enc.featIn, T]),
      [ENCODER_IO.positions]: new ort.Tensor("float32", relativePositionTable(frames, enc.dModel), [2 * frames - 1, enc.dModel]),
    };
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run(feeds);
    } catch (e) {
      throw new LfmError("RUNTIME_FAILED", `onnxruntime failed while running the audio encoder: ${(e as Error).message}`, { cause: e });
    }
    return {
      embeddings: out[ENCODER_IO.embeddings].data as Float32Array,
      encoderOut: out[ENCODER_IO.encoderOut].data as Float32Array,
      frames,
    };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export class Lfm2AudioModel {
  private constructor(
    readonly dir: string,
    readonly config: Lfm2AudioConfig,
    readonly tokenizer: Lfm2Tokenizer,
    readonly lm: Lfm2Runtime,
    readonly encoder: AudioEncoder,
    readonly frontEnd: MelFrontEnd,
    /** Open for the audio-out embedding rows, read a frame at a time. */
    private readonly checkpoint: Checkpoint,
  ) {}

  static async load(path: string, opts: AudioModelLoadOptions = {}): Promise<Lfm2AudioModel> {
    const dir = resolveModelDir(path);
    const progress = opts.onProgress ?? (() => {});
    const config = loadLfm2AudioConfig(dir);
    const tokenizer = await Lfm2Tokenizer.fromDir(dir);
    const precision = precisionOption(opts.precision, "q4");
    const encoderPrecision = precisionOption(opts.encoderPrecision, promptEncoderPrecision(precision), "encoderPrecision");
    const lm = await buildRuntime(dir, config.lfm, { precision, head: "logits", exposeHidden: opts.exposeHidden ?? false }, opts, progress);
    let encoder: AudioEncoder;
    try {
      encoder = await loadEncoder(dir, config, encoderPrecision, opts, progress);
    } catch (e) {
      await lm.release();
      throw e;
    }
    const checkpoint = Checkpoint.open(dir);
    return new Lfm2AudioModel(dir, config, tokenizer, lm, encoder, new MelFrontEnd(config.preprocessor), checkpoint);
  }

  /** Log-mel features of a clip at any sample rate (resampled to the front end's rate first). */
  features(clip: Pick<AudioClip, "samples" | "sampleRateHz">): MelFeatures {
    const rate = this.config.preprocessor.sampleRateHz;
    return this.frontEnd.compute(resample(clip.samples, clip.sampleRateHz, rate));
  }

  /** Audio → LM input rows (mel → FastConformer → adapter). */
  async embedAudio(clip: Pick<AudioClip, "samples" | "sampleRateHz">): Promise<AudioEmbeddings> {
    const mel = this.features(clip);
    const { embeddings, frames } = await this.encoder.encode(mel);
    return { rows: embeddings, count: frames, mel };
  }

  /**
   * The LM input row of one generated audio frame: Σₖ audio_embedding[codeₖ + 2049·k] (a plain
   * sum, no norm — liquid-audio `_prefill` and the generation loops).
   */
  audioFrameEmbedding(codes: readonly number[]): Float32Array {
    const { codebooks, audioVocabSize } = this.config;
    if (codes.length !== codebooks || codes.some((c) => !Number.isInteger(c) || c < 0 || c >= audioVocabSize)) {
      throw new LfmError("INVALID_ARGUMENT", `an audio frame is ${codebooks} codes in 0..${audioVocabSize - 1}, got [${codes.join(", ")}].`);
    }
    const D = this.config.lfm.hiddenSize;
    const sum = new Float32Array(D);
    for (let k = 0; k < codebooks; k++) {
      const row = this.checkpoint.readFloat32Rows("audio_embedding.embedding.weight", codes[k] + audioVocabSize * k, 1);
      for (let d = 0; d < D; d++) sum[d] += row[d];
    }
    return sum;
  }

  /** A new conversation (liquid-audio `ChatState`): starts with `<|startoftext|>`. */
  newPrompt(): AudioChatPrompt {
    return new AudioChatPrompt(this.tokenizer, this.config.lfm.hiddenSize, (codes) => this.audioFrameEmbedding(codes), this.config.lfm.padTokenId);
  }

  async release(): Promise<void> {
    this.checkpoint.close();
    await Promise.all([this.lm.release(), this.encoder.release()]);
  }
}

/** Builds (or finds in the cache) the encoder graph and opens it. */
async function loadEncoder(dir: string, config: Lfm2AudioConfig, precision: Precision, opts: AudioModelLoadOptions, progress: (stage: string) => void): Promise<AudioEncoder> {
  return withCheckpoint(dir, (weights, files) =>
    openCachedGraph({
      kind: "lfm2-audio-encoder",
      files,
      options: { precision, builder: builderFingerprint(import.meta.dirname, ENCODER_BUILDER_SOURCES) },
      build: () => buildAudioEncoderGraph(config.encoder, weights, config.lfm.hiddenSize, { precision }),
      open: async (graphDir) => new AudioEncoder(await createSession(join(graphDir, "model.onnx"), { threads: opts.threads }), config),
      cacheDir: opts.cacheDir,
      progress,
      stages: {
        build: "building the audio encoder graph",
        load: "loading the audio encoder into onnxruntime",
        rebuild: "the cached audio encoder is unreadable; rebuilding it",
      },
    }),
  );
}
