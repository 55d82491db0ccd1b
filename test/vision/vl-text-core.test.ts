/**
 * VlModel's text side is a TextModel: the same stop ids, sampling defaults, text-only streaming,
 * and the same errors for a broken or missing chat template as the text model gives.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LfmError } from "../../text-core/errors.ts";
import { TextModel } from "../../text-core/model.ts";
import { VlModel } from "../../vision/vl-model.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";
import { expectCode } from "../helpers/errors.ts";

const TEXT_MODEL = join(FIXTURES, "text/tiny-lfm2");
const VL_MODEL = join(FIXTURES, "vision/tiny-lfm2-vl");
const LOAD = { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 } as const;

const root = mkdtempSync(join(tmpdir(), "lfm-vl-text-core-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let count = 0;
function copy(fixture: string, edit: (dir: string) => void): string {
  const dir = join(root, String(count++));
  cpSync(fixture, dir, { recursive: true });
  edit(dir);
  return dir;
}

/** The message with the checkpoint folder written as DIR, to compare two copies' errors. */
const generic = (e: LfmError, dir: string) => ({ code: e.code, message: e.message.split(dir).join("DIR") });

function removeTemplate(dir: string): void {
  rmSync(join(dir, "chat_template.jinja"));
  const file = join(dir, "tokenizer_config.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  delete config.chat_template;
  writeFileSync(file, JSON.stringify(config));
}

describe("VlModel composes TextModel", () => {
  it("a chat template that does not parse is the same CHAT_TEMPLATE_INVALID, naming the file", async () => {
    const broken = (dir: string) => writeFileSync(join(dir, "chat_template.jinja"), "{% for m in messages %}{{ m.content }");
    const textDir = copy(TEXT_MODEL, broken);
    const vlDir = copy(VL_MODEL, broken);
    const textError = await expectCode(() => TextModel.load(textDir, LOAD), "CHAT_TEMPLATE_INVALID");
    const vlError = await expectCode(() => VlModel.load(vlDir, LOAD), "CHAT_TEMPLATE_INVALID", join(vlDir, "chat_template.jinja"));
    expect(generic(vlError, vlDir)).toEqual(generic(textError, textDir));
  });

  it("a checkpoint without a chat template loads, and chat is the same CHAT_TEMPLATE_MISSING", async () => {
    const textDir = copy(TEXT_MODEL, removeTemplate);
    const vlDir = copy(VL_MODEL, removeTemplate);
    const text = await TextModel.load(textDir, LOAD);
    const vl = await VlModel.load(vlDir, LOAD);
    try {
      const messages = [{ role: "user" as const, content: "hi" }];
      const textError = expectCode(() => text.renderChat(messages), "CHAT_TEMPLATE_MISSING");
      const vlError = expectCode(() => vl.renderChat(messages), "CHAT_TEMPLATE_MISSING");
      expect(generic(vlError, vlDir)).toEqual(generic(textError, textDir));
    } finally {
      await Promise.all([text.release(), vl.release()]);
    }
  });

  it("stop ids, sampling defaults and a text-only prompt are the language core's", async () => {
    const vl = await VlModel.load(VL_MODEL, LOAD);
    try {
      expect(vl.textModel).toBeInstanceOf(TextModel);
      expect(vl.runtime).toBe(vl.textModel.runtime);
      expect(vl.tokenizer).toBe(vl.textModel.tokenizer);
      expect(vl.dir).toBe(vl.textModel.dir);
      expect(vl.stopTokenIds).toEqual(vl.textModel.stopTokenIds);
      expect(vl.stopTokenIds).toContain(vl.tokenizer.tokenToId("<|im_end|>"));
      expect(vl.generationDefaults).toEqual({ temperature: 0 });
      // A prompt without images: VlModel's path and the TextModel's give the same tokens.
      const promptIds = vl.tokenizer.encode(vl.renderChat([{ role: "user", content: "Hello there" }]), { addSpecialTokens: false });
      const viaVl = await vl.complete({ promptIds, crops: [] }, { maxTokens: 6, stopTokenIds: [] });
      const viaText = await vl.textModel.complete(promptIds, { maxTokens: 6, stopTokenIds: [] });
      expect(viaVl.ids).toHaveLength(6);
      expect(viaVl).toEqual(viaText);
    } finally {
      await vl.release();
    }
  });
});
