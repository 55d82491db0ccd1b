import { describe, expect, it } from "vitest";
import { errorResponse, statusOf } from "../../server/errors.ts";
import { LfmError } from "../../text-core/errors.ts";

describe("error code → HTTP status", () => {
  it("a damaged index on the server is a 500, a refused commit a 507, the request's own faults 4xx", () => {
    expect(statusOf("INDEX_CORRUPT")).toBe(500);
    expect(statusOf("INDEX_NEWER_VERSION")).toBe(500);
    expect(statusOf("INDEX_WRITE_FAILED")).toBe(507);
    expect(statusOf("INDEX_NOT_FOUND")).toBe(404);
    expect(statusOf("INDEX_LOCKED")).toBe(409);
    expect(statusOf("INVALID_ARGUMENT")).toBe(400);
    const full = errorResponse(new LfmError("INDEX_WRITE_FAILED", "no space left; the index is intact"));
    expect(full.status).toBe(507);
    expect(full.body.error).toMatchObject({ type: "server_error", code: "INDEX_WRITE_FAILED" });
  });
});
