import assert from "node:assert/strict";
import { ConnectError } from "@connectrpc/connect";

/** Awaits a call that must fail and returns its ConnectError, so a test can check code and message. */
export async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}
