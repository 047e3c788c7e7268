import { describe, expect, it } from 'vitest';
import { createLogger, redactSecrets } from '../../src/runtime/logger.js';

const SECRET = 'rtr_pat_' + 'A'.repeat(43) + 'bcdef0';

describe('logger', () => {
  it('masks anything shaped like a Rotor secret by default', () => {
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l)).info('oops', { token: SECRET });
    expect(lines.join('')).not.toContain(SECRET);
    expect(lines.join('')).toContain('rtr_pat_[redacted]');
    expect(redactSecrets(`a ${SECRET} b`)).toBe('a rtr_pat_[redacted] b');
  });

  it('masks signed JWTs by default', () => {
    const jwt = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ3ZWIiLCJzY29wZSI6InJlYWQifQ.' + 'S'.repeat(86);
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l)).info('oops', { token: jwt });
    expect(lines.join('')).not.toContain(jwt.split('.')[1]);
    expect(redactSecrets(`Bearer ${jwt}!`)).toBe('Bearer [redacted JWT]!');
  });

  it('writes raw lines when redaction is off (tests use this so their leak checks can fail)', () => {
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l), { redact: false }).info('oops', { token: SECRET });
    expect(lines.join('')).toContain(SECRET);
  });

  it('drops lines below the level', () => {
    const lines: string[] = [];
    const log = createLogger('warn', (l) => void lines.push(l));
    log.info('hidden');
    log.warn('shown', { n: 1 });
    expect(lines.map((l) => JSON.parse(l) as { level: string; msg: string })).toEqual([expect.objectContaining({ level: 'warn', msg: 'shown' })]);
  });
});
