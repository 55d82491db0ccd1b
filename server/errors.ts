/**
 * Every error the server answers is OpenAI's error JSON,
 *
 *   {"error": {"message": "...", "type": "invalid_request_error", "param": "messages[0].content", "code": "INVALID_ARGUMENT"}}
 *
 * with our stable `LfmError` code as `code`, so a client can match on it as a CLI script does.
 * The HTTP status follows from the code: what the caller sent is a 4xx, what failed here a 5xx.
 */
import { LfmError, type LfmErrorCode } from "../text-core/errors.ts";

/** OpenAI's error `type` values that apply here. */
export type ApiErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error";

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: LfmErrorCode };
}

/** An `LfmError` with the request field it concerns (`param`) and, for 429, when to retry. */
export class ApiError extends LfmError {
  constructor(
    code: LfmErrorCode,
    message: string,
    readonly param: string | null = null,
    readonly retryAfterSeconds?: number,
  ) {
    super(code, message);
    this.name = "ApiError";
  }
}

/** A 400 naming the field: what every request check throws. */
export function badField(param: string, message: string): ApiError {
  return new ApiError("INVALID_ARGUMENT", `${param}: ${message}`, param);
}

/** Codes that mean the server or the model on disk failed, not the request (500). */
const SERVER_CODES = new Set<LfmErrorCode>([
  "CONFIG_INVALID",
  "UNKNOWN_ARCHITECTURE",
  "TENSOR_MISSING",
  "TENSOR_SHAPE_MISMATCH",
  "SAFETENSORS_CORRUPT",
  "UNSUPPORTED_DTYPE",
  "TOKENIZER_INVALID",
  "CHAT_TEMPLATE_INVALID",
  "CACHE_UNWRITABLE",
  "CACHE_UNREADABLE",
  "GRAPH_CACHE_CORRUPT",
  "RUNTIME_FAILED",
  "NON_FINITE_LOGITS",
  "OUTPUT_UNWRITABLE",
  "AUDIO_NOT_GENERATED",
  "INDEX_CORRUPT", // an index in --indexes-dir is damaged: nothing the request can change
  "INDEX_NEWER_VERSION",
]);

/** The HTTP status of an error code. */
export function statusOf(code: LfmErrorCode): number {
  switch (code) {
    case "MODEL_NOT_FOUND":
    case "INDEX_NOT_FOUND":
    case "ROUTE_NOT_FOUND":
    case "DOCUMENT_NOT_FOUND":
      return 404;
    case "UNAUTHORIZED":
      return 401;
    case "INDEX_LOCKED": // another writer holds the index: the request may be retried once it is done
      return 409;
    case "QUEUE_FULL":
      return 429;
    case "REQUEST_TOO_LARGE":
    case "FILE_TOO_LARGE":
    case "IMAGE_TOO_LARGE":
      return 413;
    case "DEADLINE_EXCEEDED":
      return 504;
    case "INDEX_WRITE_FAILED": // the disk refused the commit (full): the index holds what it held
      return 507;
    case "ABORTED":
      return 499; // nginx's "client closed request": nobody reads it, the metrics do
    default:
      return SERVER_CODES.has(code) ? 500 : 400;
  }
}

function typeOf(status: number): ApiErrorType {
  if (status === 401) return "authentication_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  return status >= 500 ? "server_error" : "invalid_request_error";
}

/**
 * Any thrown value as a status and OpenAI's error body. An unexpected error (a bug, not an
 * `LfmError`) is a 500 whose message says so without leaking a stack trace to the client.
 */
export function errorResponse(e: unknown): { status: number; body: ApiErrorBody; retryAfterSeconds?: number } {
  if (!(e instanceof LfmError)) {
    return { status: 500, body: { error: { message: "internal server error; the server log has the details.", type: "server_error", param: null, code: "RUNTIME_FAILED" } } };
  }
  const status = statusOf(e.code);
  const param = e instanceof ApiError ? e.param : null;
  return {
    status,
    body: { error: { message: e.message, type: typeOf(status), param, code: e.code } },
    retryAfterSeconds: e instanceof ApiError ? e.retryAfterSeconds : undefined,
  };
}
