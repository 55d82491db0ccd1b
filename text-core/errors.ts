/**
 * Typed errors. Every failure a user can cause is an `LfmError` with a stable `code`
 * (tests and scripts match on it) and a message that says what was wrong and what to do.
 */
export type LfmErrorCode =
  | "MODEL_NOT_FOUND"
  | "MODEL_REQUIRED"
  | "FILE_NOT_FOUND"
  | "CONFIG_INVALID"
  | "UNKNOWN_ARCHITECTURE"
  | "TENSOR_MISSING"
  | "TENSOR_SHAPE_MISMATCH"
  | "SAFETENSORS_CORRUPT"
  | "UNSUPPORTED_DTYPE"
  | "TOKENIZER_INVALID"
  | "CHAT_TEMPLATE_INVALID"
  | "CHAT_TEMPLATE_MISSING"
  | "TOOL_CALL_PARSE_FAILED"
  | "TOOLS_INVALID"
  | "SCHEMA_INVALID"
  | "SCHEMA_UNSUPPORTED"
  | "GRAMMAR_INVALID"
  | "REGEX_INVALID"
  | "OUTPUT_INCOMPLETE"
  | "EMPTY_PROMPT"
  | "EMPTY_TEXT"
  | "PROMPT_TOO_LONG"
  | "INVALID_ARGUMENT"
  | "CACHE_UNWRITABLE"
  | "CACHE_UNREADABLE"
  | "GRAPH_CACHE_CORRUPT"
  | "ABORTED"
  | "RUNTIME_FAILED"
  | "NON_FINITE_LOGITS"
  | "INDEX_NOT_FOUND"
  | "INDEX_CORRUPT"
  | "INDEX_NEWER_VERSION"
  | "INDEX_LOCKED"
  | "INDEX_MODEL_MISMATCH"
  | "INDEX_EMPTY"
  | "INDEX_NOT_A_FOLDER"
  | "INDEX_WRITE_FAILED"
  | "DOCUMENT_UNREADABLE"
  | "UNSUPPORTED_FILE_TYPE"
  | "NOT_A_REGULAR_FILE"
  | "FILE_TOO_LARGE"
  | "FILES_SKIPPED"
  | "IMAGE_INVALID"
  | "IMAGE_TOO_LARGE"
  | "IMAGE_UNSUPPORTED_FORMAT"
  | "IMAGE_ASPECT_RATIO_UNSUPPORTED"
  | "IMAGE_COUNT_MISMATCH"
  | "WAV_INVALID"
  | "WAV_UNSUPPORTED"
  | "AUDIO_INVALID"
  | "AUDIO_EMPTY"
  | "AUDIO_TOO_SHORT"
  | "AUDIO_TOO_LONG"
  | "AUDIO_NOT_GENERATED"
  | "OUTPUT_UNWRITABLE"
  // lfm serve (server/): HTTP-only failures
  | "QUEUE_FULL"
  | "DEADLINE_EXCEEDED"
  | "UNAUTHORIZED"
  | "REQUEST_TOO_LARGE"
  | "ROUTE_NOT_FOUND"
  | "DOCUMENT_NOT_FOUND";

export class LfmError extends Error {
  readonly code: LfmErrorCode;
  constructor(code: LfmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LfmError";
    this.code = code;
  }
}

export function isLfmError(e: unknown, code?: LfmErrorCode): e is LfmError {
  return e instanceof LfmError && (code === undefined || e.code === code);
}
