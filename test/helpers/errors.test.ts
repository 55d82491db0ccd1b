/** The shared expectCode helper passes only on the expected typed error, sync or async. */
import { describe, expect, it } from "vitest";
import { LfmError } from "../../text-core/errors.ts";
import { expectCode } from "./errors.ts";

const fail = () => {
  throw new LfmError("CONFIG_INVALID", 'config.json: "x" must be an integer');
};
const failLater = async () => fail();

describe("expectCode", () => {
  it("returns the error of a function that throws it, at once", () => {
    const e = expectCode(fail, "CONFIG_INVALID", '"x"', /must be an? integer/);
    expect(e).toBeInstanceOf(LfmError);
    expect(e.code).toBe("CONFIG_INVALID");
  });

  it("awaits an async function and a promise", async () => {
    expect((await expectCode(failLater, "CONFIG_INVALID")).code).toBe("CONFIG_INVALID");
    expect((await expectCode(failLater(), "CONFIG_INVALID", "config.json")).code).toBe("CONFIG_INVALID");
  });

  it("fails on no error, another code, a raw error or a missing message part", async () => {
    expect(() => expectCode(() => 1, "CONFIG_INVALID")).toThrow(/nothing was thrown/);
    expect(() => expectCode(fail, "FILE_NOT_FOUND")).toThrow(/FILE_NOT_FOUND/);
    expect(() =>
      expectCode(() => {
        throw new TypeError("boom");
      }, "CONFIG_INVALID"),
    ).toThrow(/raw TypeError: boom/);
    expect(() => expectCode(fail, "CONFIG_INVALID", "tokenizer.json")).toThrow(/tokenizer\.json/);
    expect(() => expectCode(fail, "CONFIG_INVALID", /a float/)).toThrow();
    await expect(expectCode(Promise.resolve(1), "CONFIG_INVALID")).rejects.toThrow(/the promise resolved/);
    await expect(expectCode(failLater, "FILE_NOT_FOUND")).rejects.toThrow(/FILE_NOT_FOUND/);
  });
});
