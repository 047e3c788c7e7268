/** `RotorError` keeps what it translates as the standard `cause`, apart from the details a client may see. */
import { describe, expect, it } from 'vitest';
import { RotorError } from '../../src/domain/errors.js';

describe('RotorError', () => {
  it('exposes a cause given as ErrorOptions as e.cause, and keeps it out of the details', () => {
    const driver = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const e = new RotorError('unavailable', 'database unavailable: the connection failed; retry shortly', {
      familyId: 'fam_x',
      cause: driver,
    });
    expect(e.cause).toBe(driver);
    expect(e.details).toEqual({ familyId: 'fam_x' });
    expect(e.code).toBe('unavailable');
    expect(e.message).toBe('database unavailable: the connection failed; retry shortly');
  });

  it('has no cause unless one is given, as Error without options', () => {
    const e = new RotorError('not_found', 'token tok_x not found', { field: 'id' });
    expect(Object.hasOwn(e, 'cause')).toBe(false);
    expect(e.cause).toBeUndefined();
    expect(e.details).toEqual({ field: 'id' });
    expect(new RotorError('not_found', 'token tok_x not found').details).toEqual({});
  });
});
