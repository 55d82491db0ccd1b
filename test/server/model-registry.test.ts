/** Which folders a server offers under which names, and loading under a memory budget. */
import { mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ModelRegistry, entriesOf, scanModelsDir } from "../../server/model-registry.ts";
import { expectCode } from "../helpers/errors.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { TINY_MODELS } from "./server-harness.ts";

const TEXT = join(FIXTURES, "text", "tiny-lfm2");
const VISION = join(FIXTURES, "vision", "tiny-lfm2-vl");

/** A Hugging Face cache repo folder for `source`: files as links in snapshots/<rev>/, refs/main naming it. */
function hfCacheRepo(root: string, org: string, name: string, source: string): void {
  const repo = join(root, `models--${org}--${name}`);
  const snapshot = join(repo, "snapshots", "0123abcd");
  mkdirSync(snapshot, { recursive: true });
  mkdirSync(join(repo, "refs"));
  writeFileSync(join(repo, "refs", "main"), "0123abcd");
  for (const f of readdirSync(source)) symlinkSync(join(source, f), join(snapshot, f));
}

describe("scanModelsDir", () => {
  it("names checkpoint folders by folder name and HF cache repos as Org/Name, skipping what is not a chat model", () => {
    const root = mkdtempSync(join(tmpdir(), "serve-models-"));
    symlinkSync(TEXT, join(root, "LFM2-350M"));
    hfCacheRepo(root, "LiquidAI", "LFM2-VL-450M", VISION);
    symlinkSync(join(FIXTURES, "retrieval", "tiny-lfm2-colbert"), join(root, "colbert"));
    mkdirSync(join(root, "junk"));
    writeFileSync(join(root, "notes.txt"), "not a model");
    const warnings: string[] = [];
    const entries = scanModelsDir(root, (w) => warnings.push(w));
    expect(entries.map((e) => [e.id, e.kind])).toEqual([
      ["LFM2-350M", "text"],
      ["LiquidAI/LFM2-VL-450M", "vision"],
    ]);
    expect(entries[1].dir).toContain(join("snapshots", "0123abcd"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("junk");
  });

  it("refuses a models folder that is not there", () => {
    expectCode(() => scanModelsDir(join(tmpdir(), "no-such-models-folder")), "MODEL_NOT_FOUND", "--models-dir");
  });
});

describe("ModelRegistry", () => {
  it("loads on first use, once for concurrent requests, and names the models on a miss", async () => {
    const loads: string[] = [];
    const registry = new ModelRegistry(entriesOf(TINY_MODELS), { cacheDir: TEST_CACHE, precision: "fp32", onLoad: (id) => loads.push(id) });
    try {
      expect(registry.loaded()).toEqual([]);
      const kinds = await Promise.all([registry.use("tiny-lfm2", async (m) => m.kind), registry.use("tiny-lfm2", async (m) => m.kind)]);
      expect(kinds).toEqual(["text", "text"]);
      expect(loads).toEqual(["tiny-lfm2"]);
      await expectCode(registry.use("nope", async () => 0), "MODEL_NOT_FOUND", "tiny-lfm2-vl");
    } finally {
      await registry.close();
    }
  });

  it("unloads the least recently used idle model over the memory budget, never one in use", async () => {
    const unloads: string[] = [];
    const registry = new ModelRegistry(entriesOf(TINY_MODELS), { cacheDir: TEST_CACHE, precision: "fp32", memoryBudgetBytes: 1, onUnload: (id) => unloads.push(id) });
    try {
      await registry.use("tiny-lfm2", async () => {});
      expect(registry.loaded().map((m) => m.id)).toEqual(["tiny-lfm2"]);
      await registry.use("tiny-lfm2-vl", async () => {});
      expect(registry.loaded().map((m) => m.id)).toEqual(["tiny-lfm2-vl"]);
      expect(unloads).toEqual(["tiny-lfm2"]);
      // A model in use stays loaded while another loads beside it.
      await registry.use("tiny-lfm2", async () => {
        await registry.use("tiny-lfm2-vl", async () => {
          expect(registry.loaded().map((m) => m.id).sort()).toEqual(["tiny-lfm2", "tiny-lfm2-vl"]);
        });
      });
      expect(registry.loaded().map((m) => m.id)).toEqual(["tiny-lfm2"]);
    } finally {
      await registry.close();
    }
  });

  it("counts pinned memory (the retrieval encoders) in the budget: idle models make room for it", async () => {
    const unloads: string[] = [];
    const registry = new ModelRegistry(entriesOf(TINY_MODELS), { cacheDir: TEST_CACHE, precision: "fp32", memoryBudgetBytes: 1, onUnload: (id) => unloads.push(id) });
    try {
      await registry.use("tiny-lfm2", async () => {});
      expect(registry.loaded().map((m) => m.id)).toEqual(["tiny-lfm2"]);
      // 64 MiB written (so resident): what an encoder's weights would add.
      const held = await registry.loadPinned("colbert test", TEXT, async () => Buffer.alloc(64 * 1024 ** 2, 1));
      expect(held.length).toBe(64 * 1024 ** 2);
      expect(registry.pinned()).toHaveLength(1);
      expect(registry.pinned()[0].bytes).toBeGreaterThan(0);
      expect(registry.loaded()).toEqual([]);
      expect(unloads).toEqual(["tiny-lfm2"]);
      // A model loaded later still loads (the one just loaded stays even alone over the budget).
      await registry.use("tiny-lfm2", async () => {});
      expect(registry.loaded().map((m) => m.id)).toEqual(["tiny-lfm2"]);
    } finally {
      await registry.close();
    }
  });
});
