/**
 * Typed errors. Every failure a user can cause is an `LfmError` with a stable `code`
 * (tests and scripts match on it) and a message that says what was wrong and what to do.
 */
export type LfmErrorCode =
  | "MODEL_NOT_FOUND"
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
  | "EMPTY_PROMPT"
  | "PROMPT_TOO_LONG"
  | "INVALID_ARGUMENT"
  | "CACHE_UNWRITABLE"
  | "ABORTED"
  | "RUNTIME_FAILED";

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
