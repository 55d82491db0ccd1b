/**
 * Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` at
 * the end. Headers go out with the first event, so an error before it (model load, prompt check)
 * can still be a plain JSON error with its status; after it, an error is an event of its own
 * (`data: {"error": {...}}`), as OpenAI's stream does, and the stream ends.
 */
import type { ServerResponse } from "node:http";

export class SseWriter {
  private open = false;

  constructor(private readonly res: ServerResponse) {}

  /** Whether the headers (and so the 200 status) have gone out. */
  get started(): boolean {
    return this.open;
  }

  /** Whether the client is gone (a write now would be lost). */
  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Sends one event; resolves once the socket took it (back-pressure: a slow reader slows the writer, not memory). */
  async send(data: unknown): Promise<void> {
    this.start();
    if (this.closed) return;
    if (!this.res.write(`data: ${JSON.stringify(data)}\n\n`)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.res.off("drain", done);
          this.res.off("close", done);
          resolve();
        };
        this.res.on("drain", done);
        this.res.on("close", done);
      });
    }
  }

  /** Ends the stream with OpenAI's terminator. */
  end(): void {
    this.start();
    if (!this.closed) this.res.end("data: [DONE]\n\n");
  }

  private start(): void {
    if (this.open) return;
    this.open = true;
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no", // a proxy in front must not hold events back
    });
  }
}
