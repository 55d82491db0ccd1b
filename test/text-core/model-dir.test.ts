import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { resolveModelDir } from "../../text-core/model-dir.ts";
import { expectCode } from "../helpers/errors.ts";

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "lfm-model-dir-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const notFoundMessage = (input: string): string => expectCode(() => resolveModelDir(input), "MODEL_NOT_FOUND").message;

/** A fake HF cache repo folder: models--Org--Name/{refs/main, snapshots/<rev>/config.json}. */
function makeCacheRepo(hub: string, repo: string, revs: string[], main?: string): string {
  const repoDir = path.join(hub, `models--${repo.replace("/", "--")}`);
  for (const rev of revs) {
    const snap = path.join(repoDir, "snapshots", rev);
    fs.mkdirSync(snap, { recursive: true });
    fs.writeFileSync(path.join(snap, "config.json"), JSON.stringify({ model_type: "lfm2", rev }));
  }
  fs.mkdirSync(path.join(repoDir, "blobs"), { recursive: true });
  if (main !== undefined) {
    fs.mkdirSync(path.join(repoDir, "refs"), { recursive: true });
    fs.writeFileSync(path.join(repoDir, "refs", "main"), `${main}\n`);
  }
  return repoDir;
}

describe("resolveModelDir", () => {
  const savedEnv = { HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HOME: process.env.HF_HOME };
  afterEach(() => {
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it("returns a plain folder with config.json as an absolute path", () => {
    expect(resolveModelDir("fixtures/text/tiny-lfm2")).toBe(path.resolve("fixtures/text/tiny-lfm2"));
  });

  it("follows refs/main in a Hugging Face cache repo folder", () => {
    const hub = fs.mkdtempSync(path.join(tmpRoot, "hub"));
    const repoDir = makeCacheRepo(hub, "LiquidAI/LFM2-350M", ["aaa111", "bbb222"], "aaa111");
    expect(resolveModelDir(repoDir)).toBe(path.join(repoDir, "snapshots", "aaa111"));
    expect(resolveModelDir(path.join(repoDir, "snapshots"))).toBe(path.join(repoDir, "snapshots", "aaa111"));
  });

  it("takes the only, else the most recent, snapshot when refs/main is missing", () => {
    const hub = fs.mkdtempSync(path.join(tmpRoot, "hub"));
    const one = makeCacheRepo(hub, "LiquidAI/LFM2-700M", ["only"]);
    expect(resolveModelDir(one)).toBe(path.join(one, "snapshots", "only"));
    const two = makeCacheRepo(hub, "LiquidAI/LFM2-1.2B", ["old", "new"]);
    const past = new Date(Date.now() - 3600_000);
    fs.utimesSync(path.join(two, "snapshots", "old"), past, past);
    expect(resolveModelDir(two)).toBe(path.join(two, "snapshots", "new"));
  });

  it("accepts a snapshots/<rev> folder itself", () => {
    const hub = fs.mkdtempSync(path.join(tmpRoot, "hub"));
    const repoDir = makeCacheRepo(hub, "LiquidAI/LFM2-350M", ["ccc333"], "ccc333");
    const snap = path.join(repoDir, "snapshots", "ccc333");
    expect(resolveModelDir(snap)).toBe(snap);
  });

  it("finds a repo id in the Hugging Face cache (HF_HUB_CACHE)", () => {
    const hub = fs.mkdtempSync(path.join(tmpRoot, "hub"));
    const repoDir = makeCacheRepo(hub, "LiquidAI/LFM2-350M", ["ddd444"], "ddd444");
    process.env.HF_HUB_CACHE = hub;
    expect(resolveModelDir("LiquidAI/LFM2-350M")).toBe(path.join(repoDir, "snapshots", "ddd444"));
    const msg = notFoundMessage("LiquidAI/LFM2-700M");
    expect(msg).toContain("not in the Hugging Face cache");
    expect(msg).toContain("hf download LiquidAI/LFM2-700M --local-dir DIR");
  });

  it("MODEL_NOT_FOUND for a path that does not exist, saying how to download", () => {
    const missing = path.join(tmpRoot, "no-such-model");
    const msg = notFoundMessage(missing);
    expect(msg).toContain(missing);
    expect(msg).toContain("hf download LiquidAI/LFM2-350M --local-dir DIR");
    expect(msg).toContain("never downloads");
  });

  it("MODEL_NOT_FOUND for a folder without config.json, listing what is there", () => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, "weights-only"));
    fs.writeFileSync(path.join(dir, "model.safetensors"), "");
    fs.mkdirSync(path.join(dir, "onnx"));
    const msg = notFoundMessage(dir);
    expect(msg).toContain("no config.json");
    expect(msg).toContain("model.safetensors, onnx/");
  });

  it("MODEL_NOT_FOUND for a file, or an incomplete cache snapshot", () => {
    expect(notFoundMessage("fixtures/text/tiny-lfm2/config.json")).toContain("is a file");
    const hub = fs.mkdtempSync(path.join(tmpRoot, "hub"));
    const repoDir = path.join(hub, "models--LiquidAI--LFM2-350M");
    fs.mkdirSync(path.join(repoDir, "snapshots", "eee555"), { recursive: true });
    expect(notFoundMessage(repoDir)).toContain("without config.json");
    expect(notFoundMessage(hub)).toContain(`pass one of its model folders, e.g. ${repoDir}`);
  });
});
