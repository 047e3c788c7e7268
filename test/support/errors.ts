import { ConnectError } from '@connectrpc/connect';
import { RotorError } from '../../src/domain/errors.js';

/** The ConnectError a call rejects with; fails the test if the call succeeds. */
export async function connectErrorOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** The RotorError an in-process call rejects with; fails the test if the call succeeds or rejects with anything else. */
export async function rotorErrorOf(p: Promise<unknown>): Promise<RotorError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RotorError) return e;
    throw e;
  }
  throw new Error('expected a RotorError, but the call succeeded');
}
