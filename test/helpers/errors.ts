/** The one way a test expects a typed error: an `LfmError` with a given `code` (and message parts). */
import { expect } from "vitest";
import { LfmError, type LfmErrorCode } from "../../text-core/errors.ts";

/** A part the message must hold: a string it contains, or a pattern it matches. */
export type MessagePart = string | RegExp;

function describeThrown(e: unknown): string {
  if (e instanceof Error) return `a raw ${e.stack ?? `${e.name}: ${e.message}`}`; // the stack starts with name: message
  return `${typeof e} ${String(e)}`;
}

function checkThrown(e: unknown, code: LfmErrorCode, parts: readonly MessagePart[]): LfmError {
  if (!(e instanceof LfmError)) throw new Error(`expected LfmError ${code}, got ${describeThrown(e)}`);
  expect(e.code, e.message).toBe(code);
  for (const part of parts) {
    if (typeof part === "string") expect(e.message).toContain(part);
    else expect(e.message).toMatch(part);
  }
  return e;
}

const isThenable = (x: unknown): x is PromiseLike<unknown> => typeof (x as PromiseLike<unknown> | null)?.then === "function";

/** What expectCode returns for a function returning R: a promise of the error when R is one (async). */
export type ErrorOf<R> = [R] extends [never] ? LfmError : R extends PromiseLike<unknown> ? Promise<LfmError> : LfmError;

/**
 * Expects `run` (a function, or a promise) to fail with an `LfmError` of `code` whose message
 * holds every part; returns the error. A function that throws is checked at once and its error
 * returned as is; a promise, or a function that returns one (async), gives a promise of the
 * error: await it. Nothing thrown, another code or a raw error fails the test.
 */
export function expectCode(run: PromiseLike<unknown>, code: LfmErrorCode, ...parts: MessagePart[]): Promise<LfmError>;
export function expectCode<R>(run: () => R, code: LfmErrorCode, ...parts: MessagePart[]): ErrorOf<R>;
export function expectCode(run: PromiseLike<unknown> | (() => unknown), code: LfmErrorCode, ...parts: MessagePart[]): LfmError | Promise<LfmError> {
  let result: unknown;
  try {
    result = typeof run === "function" ? run() : run;
  } catch (e) {
    return checkThrown(e, code, parts);
  }
  if (isThenable(result)) {
    return Promise.resolve(result).then(
      () => {
        throw new Error(`expected LfmError ${code}, but the promise resolved`);
      },
      (e: unknown) => checkThrown(e, code, parts),
    );
  }
  throw new Error(`expected LfmError ${code}, nothing was thrown`);
}
