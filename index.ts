/**
 * lfm2-edge — Liquid AI's LFM2 family on a CPU, offline, from the published checkpoints.
 *
 *   const lm = await loadModel("/models/LFM2-350M");
 *   for await (const t of lm.chat([{ role: "user", content: "Hi" }], { maxTokens: 64 })) process.stdout.write(t.text);
 */
import { type LoadOptions, TextModel } from "./text-core/model.ts";
import { readConfigJson } from "./text-core/config.ts";
import { resolveModelDir } from "./text-core/model-dir.ts";
import { VlModel, type VlLoadOptions } from "./vision/vl-model.ts";
import { isLfm2VlConfig } from "./vision/vl-config.ts";

export { LfmError, isLfmError, type LfmErrorCode } from "./text-core/errors.ts";
export { TextModel, type LoadOptions, type Completion, type TextGenerateOptions } from "./text-core/model.ts";
export type { ResponseFormat, ToolChoice } from "./text-core/structured/response-format.ts";
export type { ChatMessage, ContentPart, ToolDefinition } from "./text-core/chat.ts";
export { readToolCalls, ToolCallParseError, type ToolCallsRead, type MalformedToolCall } from "./text-core/tool-calls.ts";
export { parseToolCalls, formatToolCalls, type ToolCall } from "./text-core/tool-calls.ts";
export { prefillPrefix, type GenerateOptions, type FinishReason, type GeneratedToken, type PrefilledPrefix } from "./text-core/generate.ts";
export { PromptCache, DEFAULT_PROMPT_CACHE_STATES, prefixBytes, type PromptCacheStats } from "./text-core/prompt-cache.ts";
export type { SamplingOptions } from "./text-core/sampler.ts";
export { readGenerationDefaults, type GenerationDefaults } from "./text-core/generation-config.ts";
export { StopTextMatcher, MAX_STOP_STRINGS, MAX_STOP_CHARS } from "./text-core/stop-text.ts";
export type { Lfm2Config } from "./text-core/config.ts";
export { Lfm2Tokenizer } from "./text-core/tokenizer.ts";

// LFM2-VL image preprocessing (vision/): decode → geometry → patch rows, and <image> expansion.
export { readImageProcessorConfig, parseImageProcessorConfig, type ImageProcessorConfig, type ResampleFilter } from "./vision/processor-config.ts";
export { imageGeometry, type ImageGeometry, type CropGeometry } from "./vision/tiling.ts";
export {
  preprocessImage,
  preprocessRgb,
  decodeImage,
  DEFAULT_MAX_INPUT_PIXELS,
  type ProcessedImage,
  type ImageCrop,
  type RgbImage,
  type PreprocessOptions,
  type AlphaMode,
} from "./vision/preprocess.ts";
export { imagePlaceholder, expandImagePlaceholders, encodeVisionText, renderVisionChat, type VisionPrompt } from "./vision/processor.ts";

// LFM2-VL model (vision/): SigLIP2 NaFlex tower + connector, image features into the language core.
export {
  VlModel,
  DEFAULT_DESCRIBE_PROMPT,
  type VlLoadOptions,
  type VlChatMessage,
  type VlContentPart,
  type VlChatOptions,
  type VlGenerateOptions,
  type ImageInput,
  type ImagePrompt,
} from "./vision/vl-model.ts";
export { ImageEncoder, type PatchCrop, type ImageEncoderOptions } from "./vision/image-encoder.ts";
export { loadLfm2VlConfig, parseLfm2VlConfig, type Lfm2VlConfig, type Siglip2Config } from "./vision/vl-config.ts";

// LFM2-ColBERT (retrieval/): PyLate-exact token embeddings and MaxSim.
export {
  ColbertEncoder,
  loadColbert,
  type TokenEmbeddings,
  type ColbertLoadOptions,
  type EncodeDocumentsOptions,
} from "./retrieval/colbert.ts";
export type { PylateSettings } from "./retrieval/pylate-config.ts";
export { maxSim, maxSimMatrix } from "./retrieval/maxsim.ts";
// The persistent index (retrieval/index/) and file ingest (retrieval/ingest/).
export { IndexWriter, type NewDocument, type CreateOptions, type WriterOptions, type CommitResult } from "./retrieval/index/writer.ts";
export {
  IndexReader,
  SEARCH_PRESETS,
  verifyIndex,
  readIndexStats,
  type SearchOptions,
  type SearchPreset,
  type PlaidSearchSettings,
  type HnswSearchSettings,
  type SearchHit,
  type MetadataFilter,
  type MetadataCondition,
  type ReaderOptions,
  type IndexStats,
} from "./retrieval/index/reader.ts";
export type { IndexLayout, Metadata, MetadataValue, ModelIdentity, StoredDocument } from "./retrieval/index/format.ts";
export type { CodecSettings } from "./retrieval/index/centroid-codec.ts";
export type { VectorStorage } from "./retrieval/index/vector-codec.ts";
export { modelIdentity, chooseIndexModel } from "./retrieval/index/model-identity.ts";
export { searchText, searchTexts, bestScorePerVector, type QueryEncoder, type TextSearchResult } from "./retrieval/index/search-text.ts";
export { readCalibration, CALIBRATION_FILE, type MinScoreCalibration, type ScoreSummary } from "./retrieval/index/calibration.ts";
export {
  ingestPaths,
  removePaths,
  collectFiles,
  describeSkipped,
  type TokenEncoder,
  type IngestOptions,
  type IngestReport,
  type IngestProgress,
  type SkippedFile,
  type SkipKind,
} from "./retrieval/ingest/ingest.ts";
export { DEFAULT_MAX_FILE_SIZE, parseByteSize } from "./retrieval/ingest/source-file.ts";
export { chunkText, type Chunk, type ChunkOptions } from "./retrieval/ingest/chunker.ts";
// Answers from the index with checked citations (pipelines/ask.ts).
export {
  ask,
  DEFAULT_ASK_K,
  DEFAULT_MIN_SCORE,
  MAX_ASK_K,
  type AskOptions,
  type AskResult,
  type AskPassage,
  type AskTimings,
  type AppliedMinScore,
  type Citation,
} from "./pipelines/ask.ts";
export {
  calibrateMinScore,
  chooseThreshold,
  DEFAULT_CALIBRATION_PROBES,
  DEFAULT_KEEP_ANSWERABLE,
  type CalibrateOptions,
  type CalibrationResult,
} from "./pipelines/calibrate-min-score.ts";
export { detectAskFormat, SYSTEM_TEXT as ASK_SYSTEM_TEXT, type AskFormat, type AskTurn } from "./pipelines/ask-prompt.ts";
export { CitationFilter, checkCitations, strictCitationGrammar, type CitationCheck } from "./pipelines/citations.ts";
export { detectLanguage, notCoveredAnswer, type AnswerLanguage } from "./pipelines/question-language.ts";

// LFM2-Audio input side (audio/) and transcription (pipelines/transcribe.ts).
export { Lfm2AudioModel, AudioEncoder, type AudioModelLoadOptions, type AudioEmbeddings } from "./audio/lfm2-audio-model.ts";
export {
  loadLfm2AudioConfig,
  parseLfm2AudioConfig,
  Modality,
  AUDIO_TOKENS,
  type Lfm2AudioConfig,
  type MelFrontEndConfig,
  type ConformerConfig,
  type DepthformerConfig,
} from "./audio/audio-config.ts";
export { readAudioFile, decodeAudio } from "./audio/audio-file.ts";
export { decodeWav, type AudioClip, type ReadAudioOptions } from "./audio/wav.ts";
export { resample, StreamingResampler, resampleBlocks } from "./audio/resample.ts";
export { openAudioStream, collectAudioStream, type AudioStream, type AudioStreamOptions } from "./audio/audio-stream.ts";
export { MelFrontEnd, melFrameCount, type MelFeatures } from "./audio/mel.ts";
export { AudioChatPrompt, SYSTEM_PROMPTS, type AssembledPrompt, type ChatRole } from "./audio/prompt.ts";
export { planChunks, streamWindows, mergeTranscripts, type AudioChunk, type AudioWindow, type ChunkPlanOptions, type ChunkJoin } from "./audio/chunking.ts";
export {
  transcribe,
  transcribeStream,
  transcribeWindow,
  type TranscribeOptions,
  type TranscribeStreamOptions,
  type Transcript,
  type TranscriptChunk,
  type TranscribeProgress,
  type TranscribeStreamProgress,
} from "./pipelines/transcribe.ts";
export { transcriptSegments, toText, toSrt, toVtt, type TranscriptSegment, type SegmentOptions } from "./pipelines/transcript-segments.ts";

// LFM2-Audio output side (audio/): depthformer audio head, speech generation, Mimi decoder, WAV out.
export { AudioHead, type AudioHeadLoadOptions } from "./audio/audio-head.ts";
export {
  generateSpeech,
  ModeSwitch,
  END_OF_AUDIO,
  type SpeechMode,
  type SpeechStep,
  type SpeechPrompt,
  type SpeechGenerationOptions,
  type ModalitySampling,
} from "./audio/speech-generation.ts";
export { MimiDecoder, MimiStream, type MimiLoadOptions } from "./audio/mimi-decoder.ts";
export { loadSpeechStack, type SpeechStack, type SpeechStackLoadOptions } from "./audio/speech-stack.ts";
export { locateMimi, parseMimiConfig, KYUTAI_MIMI_CONFIG, type MimiConfig } from "./audio/mimi-config.ts";
export { WavStreamWriter, type WavWriterOptions } from "./audio/wav-writer.ts";
export { Speaker, type SpeakerLoadOptions, type SpeakOptions, type SpeakEvent } from "./pipelines/speak.ts";
export { decodeCompressed, compressedFormatOf, type CompressedFormat } from "./audio/compressed.ts";
export { AudioChat, AudioConversation, type AudioChatLoadOptions, type AudioChatOptions, type AudioChatEvent } from "./pipelines/audio-chat.ts";
// The spoken agent with tools (pipelines/agent.ts, agent-tools.ts).
export { Agent, DEFAULT_AGENT_SYSTEM, DEFAULT_MAX_TOOL_ROUNDS, NOTHING_HEARD, confirmQuestion, isYes, type AgentEvent, type AgentLoadOptions, type AgentOptions, type TurnOptions } from "./pipelines/agent.ts";
export { VoiceActivityDetector, levelDb, readPcmS16le, type VadOptions } from "./pipelines/vad.ts";
export { DEFAULT_TOOL_TIMEOUT_MS, MAX_TOOL_RESULT_CHARS, checkTools, loadToolsModule, runToolCall, toolDefinition, validateArguments, type AgentTool, type ToolOutcome } from "./pipelines/agent-tools.ts";

// Document analysis (pipelines/extract.ts): photos, scans and PDFs into schema-valid JSON.
export {
  extract,
  extractDocument,
  askDocument,
  ANSWER_SCHEMA,
  type DocumentAnswer,
  collectDocuments,
  documentPages,
  type DocumentPage,
  splitPageText,
  GENERIC_SCHEMA,
  type ExtractOptions,
  type ExtractResult,
  type ExtractSuccess,
  type ExtractFailure,
  type PageRoute,
} from "./pipelines/extract.ts";
export { mergePages, type PageExtraction, type MergedExtraction, type Provenance } from "./pipelines/extract-merge.ts";
export { PdfRenderer, type RenderedPage, type RenderOptions } from "./pipelines/pdf-render.ts";

/**
 * Loads a checkpoint folder (HF layout or HF cache folder): an LFM2-VL checkpoint (config
 * `model_type` "lfm2_vl") as a `VlModel`, whose `chat` takes image parts; an LFM2 one as a
 * `TextModel`. Narrow with `instanceof VlModel` to reach the vision-only methods.
 */
export async function loadModel(path: string, opts: LoadOptions & VlLoadOptions = {}): Promise<TextModel | VlModel> {
  const dir = resolveModelDir(path);
  if (isLfm2VlConfig(readConfigJson(dir))) return VlModel.load(dir, opts);
  return TextModel.load(dir, opts);
}
