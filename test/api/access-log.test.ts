import { describe, expect, it } from 'vitest';
import { AccessLog, millis } from '../../src/api/access-log.js';

describe('access lines', () => {
  it('write durations as JSON numbers of milliseconds from whole microseconds', () => {
    expect(millis(0)).toBe('0');
    expect(millis(7)).toBe('0.007');
    expect(millis(50)).toBe('0.050');
    expect(millis(412)).toBe('0.412');
    expect(millis(1000)).toBe('1');
    expect(millis(2100)).toBe('2.100');
    expect(millis(123_456_789)).toBe('123456.789');
    for (let i = 0; i < 2000; i++) {
      const us = Math.floor(Math.random() * 10_000_000);
      expect(JSON.parse(millis(us))).toBeCloseTo(us / 1000, 9);
    }
  });

  it('are JSON whatever the request sent, and keep a caller id only when it is plain', () => {
    const lines: string[] = [];
    const log = new AccessLog({ accessLine: (m) => lines.push(`{${m}}`) });
    const odd = ['a"b', 'back\\slash', 'x'.repeat(129), 'tab\there', '', 'ü', 'rtr\n_pat'];
    for (const id of [...odd, 'req-1', 'a.b_c:d/e+f=g@h-i']) {
      const rec = log.begin(undefined, '[::1]:5000"', id, 'not a traceparent');
      rec.target = 'rotor.v1.TokenService/IntrospectToken';
      rec.ended(id === 'req-1' ? 0 : 16);
      log.write(rec, 'grpc', 0);
    }
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const [i, p] of parsed.entries()) {
      expect(p).toMatchObject({ transport: 'grpc', rpc: 'rotor.v1.TokenService/IntrospectToken', peer: '[::1]:5000"' });
      expect(p.traceparent).toBeUndefined();
      if (i < odd.length)
        expect(p.request_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
    expect(parsed.at(-2)).toMatchObject({ request_id: 'req-1', code: 'ok' });
    expect(parsed.at(-1)).toMatchObject({ request_id: 'a.b_c:d/e+f=g@h-i', code: 'unauthenticated' });
  });
});
