import { ConnectError } from '@connectrpc/connect';

/** The ConnectError a call rejects with; fails the test if the call succeeds. */
export async function connectErrorOf(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error('expected the call to fail, but it succeeded');
}
