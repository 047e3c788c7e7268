import { describe, expect, it } from 'vitest';
import { AccessLog, accessLineWriter, millis, type AccessLineWriter } from '../../src/api/access-log.js';
import { JsonLineBytes } from '../../src/api/json-line-bytes.js';

/** A writer that keeps each line's members as a JSON object's text. */
function membersOf(lines: string[]): AccessLineWriter {
  const bytes = new JsonLineBytes(16);
  return {
    openAccessLine: () => bytes,
    closeAccessLine: () => void lines.push(`{${bytes.take().toString('utf8')}}`),
  };
}

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
    const log = new AccessLog(membersOf(lines));
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

  it('are the same bytes as JSON.stringify of their fields, for any value', () => {
    const lines: string[] = [];
    const log = new AccessLog(membersOf(lines));
    const values = [
      'plain',
      'a"b',
      'back\\slash',
      'tab\there',
      'ü',
      '日本',
      '\u2028',
      '\ud800 lone',
      '😀',
      '\x7f',
      '',
      'null',
    ];
    for (const v of values) {
      const rec = log.begin(undefined, v, 'req-1', undefined);
      rec.target = `rotor.v1.${v}/Call`;
      rec.rotorError = v;
      rec.tokenId = v;
      rec.ended(3);
      log.write(rec, 'http', 400, v);
      const line = lines.at(-1)!;
      const duration = /"duration_ms":([0-9.]+)/.exec(line)![1]!;
      expect(line).toBe(
        `{"transport":"http","route":${JSON.stringify(rec.target)},"http_method":${JSON.stringify(v)},"status":400,` +
          `"code":"invalid_argument","rotor_error":${JSON.stringify(v)},"duration_ms":${duration},` +
          `"peer":${JSON.stringify(v)},"request_id":"req-1","token_id":${JSON.stringify(v)}}`,
      );
    }
    const rec = log.begin(undefined, null, undefined, undefined);
    rec.target = 'rotor.v1.HealthService/Check';
    log.write(rec, 'grpc', 0);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({
      transport: 'grpc',
      rpc: 'rotor.v1.HealthService/Check',
      peer: null,
    });
  });

  it('go to a plain logger as an info line with the same fields', () => {
    const logged: [string, Record<string, unknown> | undefined][] = [];
    const log = new AccessLog(
      accessLineWriter({
        info: (m, f) => void logged.push([m, f]),
        warn: () => {},
        error: () => {},
      }),
    );
    const rec = log.begin(undefined, '127.0.0.1:5000', 'req-2', undefined);
    rec.target = 'rotor.v1.TokenService/RotateToken';
    rec.ended(0);
    log.write(rec, 'grpc', 0);
    expect(logged).toEqual([
      [
        'access',
        expect.objectContaining({
          transport: 'grpc',
          rpc: 'rotor.v1.TokenService/RotateToken',
          status: 0,
          code: 'ok',
          request_id: 'req-2',
        }),
      ],
    ]);
  });
});
