// Calls to the server's API: the API key when one is set, OpenAI's error JSON turned into an
// ApiFailure the page shows, and server-sent events read as they arrive.

const KEY_STORAGE = "lfm-api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) ?? "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** An error the server answered (its `error.code` and message), or a network failure. */
export class ApiFailure extends Error {
  constructor(status, code, message, param = null) {
    super(message);
    this.name = "ApiFailure";
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

/** The server's error JSON as an ApiFailure (a body that is not ours keeps the HTTP status). */
async function failure(res) {
  let body;
  try {
    body = await res.json();
  } catch {
    return new ApiFailure(res.status, `HTTP_${res.status}`, `the server answered ${res.status} ${res.statusText}.`);
  }
  const e = body?.error;
  if (e && typeof e.message === "string") return new ApiFailure(res.status, e.code ?? `HTTP_${res.status}`, e.message, e.param ?? null);
  return new ApiFailure(res.status, `HTTP_${res.status}`, `the server answered ${res.status}.`);
}

/** fetch with the key; a non-2xx answer throws its ApiFailure, a network error one with code NETWORK. */
export async function request(path, { method = "GET", json, form, signal, accept } = {}) {
  const init = { method, signal, headers: headers(accept ? { accept } : {}) };
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) init.body = form;
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiFailure(0, "NETWORK", `the server cannot be reached (${e.message}). Is lfm serve still running?`);
  }
  if (!res.ok) throw await failure(res);
  return res;
}

export async function getJson(path, opts) {
  return (await request(path, opts)).json();
}

/**
 * POSTs `body` with `stream: true` and calls `onEvent(data)` for each server-sent event's JSON until
 * `[DONE]`. An error event in the stream throws its ApiFailure.
 */
export async function streamEvents(path, body, onEvent, signal) {
  const res = await request(path, { method: "POST", json: body, signal, accept: "text/event-stream" });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    // Events end with a blank line; a partial one waits for the rest.
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data === "") continue;
      if (data === "[DONE]") return;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new ApiFailure(200, parsed.error.code ?? "STREAM_ERROR", parsed.error.message ?? "the stream failed.", parsed.error.param ?? null);
      onEvent(parsed);
    }
  }
}
