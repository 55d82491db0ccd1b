/**
 * Structured output through VlModel: `responseFormat` and `tools`/`toolChoice` reach the language
 * core, so an image conversation on the tiny random-weight LFM2-VL gives JSON that parses and
 * validates, and a forced tool call that parses.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseToolCalls } from "../../text-core/tool-calls.ts";
import { VlModel, type VlChatMessage } from "../../vision/vl-model.ts";
import { FIXTURES, TEST_CACHE } from "../helpers/reference.ts";

const MODEL_DIR = join(FIXTURES, "vision/tiny-lfm2-vl");
const IMAGE = join(FIXTURES, "vision/images/photo_320x240.jpg");

const SCHEMA = {
  type: "object",
  properties: {
    pump_id: { type: "integer", minimum: 1, maximum: 500 },
    status: { enum: ["ok", "leaking", "offline"] },
    notes: { type: "string", maxLength: 12 },
  },
  required: ["pump_id", "status"],
  additionalProperties: false,
};

let model: VlModel;
beforeAll(async () => {
  model = await VlModel.load(MODEL_DIR, { cacheDir: TEST_CACHE, precision: "fp32", threads: 2 });
});
afterAll(async () => {
  await model?.release();
});

const messages: VlChatMessage[] = [{ role: "user", content: [{ type: "image", image: IMAGE }, { type: "text", text: "Inspection form as JSON." }] }];

describe("VlModel structured output", () => {
  it("chat with a json_schema gives JSON that validates, and returns the finish reason", async () => {
    const validate = new Ajv2020({ strict: true }).compile(SCHEMA);
    for (const seed of [1, 2, 3]) {
      const chat = model.chat(messages, { responseFormat: { type: "json_schema", schema: SCHEMA }, temperature: 1, seed, maxTokens: 96 });
      let text = "";
      let finish: string | undefined;
      for (;;) {
        const step = await chat.next();
        if (step.done) {
          finish = step.value;
          break;
        }
        text += step.value.text;
      }
      expect(finish, text).toBe("stop");
      const value: unknown = JSON.parse(text);
      expect(validate(value), `${text}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });

  it("complete with json_object gives a JSON object", async () => {
    const out = await model.complete(await model.prepareChat(messages), { responseFormat: { type: "json_object" }, temperature: 1, seed: 4, maxTokens: 96 });
    expect(out.finishReason, out.text).toBe("stop");
    const value: unknown = JSON.parse(out.text);
    expect(typeof value === "object" && value !== null && !Array.isArray(value)).toBe(true);
  });

  it("chat with tools and toolChoice required gives a call that parses", async () => {
    const tools = [{ name: "report_pump", parameters: { type: "object", properties: { pump_id: { type: "integer", minimum: 1, maximum: 9 } }, required: ["pump_id"] } }];
    const ids: number[] = [];
    for await (const t of model.chat(messages, { tools, toolChoice: "required", temperature: 1, seed: 5, maxTokens: 48 })) if (t.id >= 0) ids.push(t.id);
    const parsed = parseToolCalls(model.tokenizer.decode(ids));
    expect(parsed.toolCalls.length).toBeGreaterThan(0);
    for (const call of parsed.toolCalls) expect(call.name).toBe("report_pump");
  });
});
