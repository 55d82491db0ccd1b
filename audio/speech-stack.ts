/**
 * The LFM2-Audio speech stack, loaded once for every job that speaks (`Speaker`, `AudioChat`):
 * the LM with its final hidden state exposed, the depthformer audio head that turns that state
 * into Mimi codes, optionally the audio encoder (to hear a recording) and the Mimi decoder (to turn
 * codes into sound).
 *
 * One order of checks whichever job loads it, cheapest first, so the same bad input is the same
 * error: the precision, the folder, its config, the Mimi codec's files and codebook count — all
 * before any graph is built — then the tokenizer, Mimi, the LM (with the encoder), the head. What
 * was opened is released when a later part fails.
 */
import { type Lfm2AudioConfig, loadLfm2AudioConfig } from "./audio-config.ts";
import { AudioHead } from "./audio-head.ts";
import { Lfm2AudioModel } from "./lfm2-audio-model.ts";
import { locateMimi } from "./mimi-config.ts";
import { MimiDecoder } from "./mimi-decoder.ts";
import { LfmError } from "../text-core/errors.ts";
import { type Precision, precisionOption } from "../text-core/graph/precision.ts";
import { resolveModelDir } from "../text-core/model-dir.ts";
import { buildRuntime } from "../text-core/model.ts";
import type { Lfm2Runtime } from "../text-core/runtime.ts";
import { Lfm2Tokenizer } from "../text-core/tokenizer.ts";

export interface SpeechStackLoadOptions<Listen extends boolean = boolean, Decode extends boolean = boolean> {
  /** Also load the audio encoder, to take recordings as input: the stack's `model` is then an `Lfm2AudioModel`. */
  listen: Listen;
  /** Load the Mimi decoder, to turn the generated codes into 24 kHz sound. */
  decode: Decode;
  /** Mimi codec folder or file (with `decode`); default the checkpoint folder (it ships Kyutai's Mimi). */
  mimi?: string;
  /** LM and depthformer precision: "q4" (default), "q8", "fp32". The encoder runs q8 (fp32 with fp32); Mimi fp32. */
  precision?: Precision;
  threads?: number;
  cacheDir?: string | false;
  onProgress?: (stage: string) => void;
}

export interface SpeechStack<Listen extends boolean = boolean, Decode extends boolean = boolean> {
  dir: string;
  config: Lfm2AudioConfig;
  tokenizer: Lfm2Tokenizer;
  /** The language model; its final hidden state (exposed) feeds the audio head. */
  lm: Lfm2Runtime;
  /** The input side around `lm` (audio encoder, prompts), with `listen`. */
  model: Listen extends true ? Lfm2AudioModel : undefined;
  head: AudioHead;
  mimi: Decode extends true ? MimiDecoder : undefined;
}

/** Loads the speech stack of the LFM2-Audio checkpoint at `path` (see the module comment for the order). */
export async function loadSpeechStack<Listen extends boolean, Decode extends boolean>(
  path: string,
  opts: SpeechStackLoadOptions<Listen, Decode>,
): Promise<SpeechStack<Listen, Decode>> {
  const precision = precisionOption(opts.precision, "q4");
  const dir = resolveModelDir(path);
  const progress = opts.onProgress ?? (() => {});
  const config = loadLfm2AudioConfig(dir);
  const mimiPath = opts.mimi ?? dir;
  if (opts.decode) {
    const { config: mimiConfig } = locateMimi(mimiPath);
    if (mimiConfig.numCodebooks !== config.codebooks) {
      throw new LfmError("CONFIG_INVALID", `the Mimi codec at ${mimiPath} decodes ${mimiConfig.numCodebooks} codebooks but ${config.source} generates ${config.codebooks}; use the Mimi codec published with the checkpoint.`);
    }
  }
  const shared = { threads: opts.threads, cacheDir: opts.cacheDir, onProgress: progress };
  const tokenizer = await Lfm2Tokenizer.fromDir(dir);
  const opened: { release(): Promise<void> }[] = [];
  try {
    // Mimi before the big graphs: a codec that does not load fails in seconds.
    const mimi = opts.decode ? await MimiDecoder.load(mimiPath, shared) : undefined;
    if (mimi) opened.push(mimi);
    let model: Lfm2AudioModel | undefined;
    let lm: Lfm2Runtime;
    if (opts.listen) {
      model = await Lfm2AudioModel.load(dir, { precision, exposeHidden: true, ...shared });
      opened.push(model);
      lm = model.lm;
    } else {
      lm = await buildRuntime(dir, config.lfm, { precision, head: "logits", exposeHidden: true }, shared, progress);
      opened.push(lm);
    }
    const head = await AudioHead.load(dir, config, { precision, ...shared });
    return {
      dir,
      config,
      tokenizer,
      lm,
      model: model as SpeechStack<Listen, Decode>["model"],
      head,
      mimi: mimi as SpeechStack<Listen, Decode>["mimi"],
    };
  } catch (e) {
    await Promise.all(opened.map((r) => r.release()));
    throw e;
  }
}
