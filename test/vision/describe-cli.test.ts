import { beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lfm2Tokenizer } from "../../text-core/tokenizer.ts";
import { runLfm, runLfmJson } from "../helpers/cli.ts";
import { FIXTURES, readJson } from "../helpers/reference.ts";

interface VisionReference {
  images: Array<{ file: string; input_ids: number[]; greedy_new_ids?: number[] }>;
  two_images: { files: string[]; input_ids: number[] };
}

const MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");
const IMAGES = join(FIXTURES, "vision/images");
const EXACT = ["--temperature", "0", "--precision", "fp32", "--threads", "2", "--json"];

describe("lfm describe", () => {
  const ref = readJson<VisionReference>("vision/reference.json");
  let tokenizer: Lfm2Tokenizer;
  beforeAll(async () => {
    tokenizer = await Lfm2Tokenizer.fromDir(MODEL);
  });
  /** The printed text is the printed ids decoded as the library does (special tokens skipped), and not empty. */
  const expectTextOfIds = (out: { ids: number[]; text: string }) => {
    const decoded = tokenizer.decode(out.ids, { skipSpecialTokens: true });
    expect(decoded.length).toBeGreaterThan(0);
    expect(out.text).toBe(decoded);
  };

  it("--json prints the expanded prompt ids and the greedy ids HF gives", () => {
    const im = ref.images[0];
    const out = runLfmJson<{ prompt_ids: number[]; ids: number[]; text: string }>([
      "describe", "--model", MODEL, join(IMAGES, im.file), "--prompt", "Describe the document.", "--max-tokens", "8", ...EXACT,
    ]);
    expect(out.prompt_ids).toEqual(im.input_ids);
    expect(out.ids).toEqual(im.greedy_new_ids);
    expectTextOfIds(out);
  });

  it("a tiled image through --image gives the reference prompt and continuation", () => {
    const im = ref.images.find((i) => i.file.startsWith("doc_")) as VisionReference["images"][number];
    const out = runLfmJson<{ prompt_ids: number[]; ids: number[] }>([
      "describe", "--model", MODEL, "--image", join(IMAGES, im.file), "--prompt", "Describe the document.", "--max-tokens", "8", ...EXACT,
    ]);
    expect(out.prompt_ids).toEqual(im.input_ids);
    expect(out.ids).toEqual(im.greedy_new_ids);
  });

  it("accepts lfm chat's flags: --image FILE --message TEXT", () => {
    const im = ref.images[1];
    const out = runLfmJson<{ prompt_ids: number[]; ids: number[] }>([
      "describe", "--model", MODEL, "--image", join(IMAGES, im.file), "--message", "Describe the document.", "--max-tokens", "8", ...EXACT,
    ]);
    expect(out.prompt_ids).toEqual(im.input_ids);
    expect(out.ids).toEqual(im.greedy_new_ids);
  });

  it("--messages takes a conversation with image parts", () => {
    const dir = mkdtempSync(join(tmpdir(), "lfm-describe-"));
    const file = join(dir, "messages.json");
    const [a, b] = ref.two_images.files;
    writeFileSync(file, JSON.stringify([{ role: "user", content: [{ type: "image", image: join(IMAGES, a) }, { type: "text", text: "and" }, { type: "image", image: join(IMAGES, b) }, { type: "text", text: "Compare." }] }]));
    const out = runLfmJson<{ prompt_ids: number[] }>(["describe", "--model", MODEL, "--messages", file, "--max-tokens", "2", ...EXACT]);
    expect(out.prompt_ids).toEqual(ref.two_images.input_ids);
  });

  it("streams text without --json", () => {
    const r = runLfm(["describe", "--model", MODEL, join(IMAGES, ref.images[1].file), "--max-tokens", "4", "--precision", "fp32", "--threads", "2"]);
    expect(r.status).toBe(0);
    expect(r.stdout.endsWith("\n")).toBe(true);
  });

  it("bad inputs exit 2 with a typed error", () => {
    const cases: Array<[string[], string]> = [
      [["describe", "--model", MODEL], "INVALID_ARGUMENT"],
      [["describe", "--model", MODEL, join(IMAGES, "missing.png")], "FILE_NOT_FOUND"],
      [["describe", "--model", MODEL, join(FIXTURES, "vision/reference.json")], "IMAGE_INVALID"],
      [["describe", "--model", MODEL, join(IMAGES, ref.images[0].file), "--max-input-pixels", "100"], "IMAGE_TOO_LARGE"],
      [["describe", "--model", join(FIXTURES, "text/tiny-lfm2"), join(IMAGES, ref.images[0].file)], "UNKNOWN_ARCHITECTURE"],
      [["describe", "--model", MODEL, join(IMAGES, ref.images[0].file), "--vision-precision", "q2"], "INVALID_ARGUMENT"],
    ];
    for (const [args, code] of cases) {
      const r = runLfm([...args, "--max-tokens", "1", "--threads", "2"]);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toContain(`[${code}]`);
    }
    const dir = mkdtempSync(join(tmpdir(), "lfm-describe-"));
    const file = join(dir, "bad.json");
    writeFileSync(file, JSON.stringify([{ role: "user", content: [{ type: "video", video: "x.mp4" }] }]));
    const r = runLfm(["describe", "--model", MODEL, "--messages", file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("[INVALID_ARGUMENT]");
  });

  it("lfm chat --image --message on an LFM2-VL checkpoint is the issue's scriptable contract", () => {
    const im = ref.images[2];
    const out = runLfmJson<{ prompt_ids: number[]; ids: number[]; text: string }>([
      "chat", "--model", MODEL, "--image", join(IMAGES, im.file), "--message", "Describe the document.", "--max-tokens", "8", ...EXACT,
    ]);
    expect(out.prompt_ids).toEqual(im.input_ids);
    expect(out.ids).toEqual(im.greedy_new_ids);
    expectTextOfIds(out);
  });

  it("lfm chat --image on a text-only model is a typed error", () => {
    const r = runLfm(["chat", "--model", join(FIXTURES, "text/tiny-lfm2"), "--image", join(IMAGES, ref.images[0].file), "--message", "hi", "--json"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("INVALID_ARGUMENT");
    expect(r.stderr).toContain("LFM2-VL");
  });
});
