/** `lfm serve` as a user starts it: a child process on a free port, an API key, Ctrl-C. */
import { describe, expect, it } from "vitest";
import { runLfm } from "../helpers/cli.ts";
import { startServe as serve } from "./serve-process.ts";

describe("lfm serve", () => {
  it("serves on the port it prints, asks for the API key, and stops cleanly on Ctrl-C", async () => {
    const server = await serve(["--port", "0", "--api-key", "test-key-123", "--max-queue", "2"]);
    try {
      expect((await fetch(`${server.url}/health`)).status).toBe(200); // open for liveness probes
      const denied = await fetch(`${server.url}/v1/models`);
      expect(denied.status).toBe(401);
      expect(((await denied.json()) as { error: { code: string } }).error.code).toBe("UNAUTHORIZED");
      const wrong = await fetch(`${server.url}/v1/models`, { headers: { authorization: "Bearer test-key-124" } });
      expect(wrong.status).toBe(401);
      const models = await fetch(`${server.url}/v1/models`, { headers: { authorization: "Bearer test-key-123" } });
      expect(models.status).toBe(200);
      expect(((await models.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toContain("tiny-lfm2");
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(server.stderr()).toContain("bundled tiny random models");
  });

  it("refuses to bind beyond this machine without an API key, and bad flag values", () => {
    const open = runLfm(["serve", "--host", "0.0.0.0", "--port", "0"]);
    expect(open.status).toBe(2);
    expect(open.stderr).toMatch(/error \[INVALID_ARGUMENT\]: --host 0\.0\.0\.0 .*--api-key/);
    for (const [flag, value] of [["--port", "70000"], ["--max-queue", "-1"], ["--max-batch", "0"], ["--max-batch", "65"], ["--memory-budget", "lots"], ["--max-body", "0"], ["--prompt-cache-mb", "-1"], ["--prompt-cache-mb", "1.5"]]) {
      const r = runLfm(["serve", flag, value]);
      expect(r.status, `${flag} ${value}`).toBe(2);
      expect(r.stderr).toContain(flag);
    }
    const missing = runLfm(["serve", "--models-dir", "/no/such/folder"]);
    expect(missing.stderr).toContain("error [FILE_NOT_FOUND]: --models-dir");
  });
});
