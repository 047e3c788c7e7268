import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RotorError } from '../../src/domain/errors.js';
import { loadConfig } from '../../src/runtime/config.js';
import { createLineLogger, createLogger, errorChain, redactSecrets } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';

const SECRET = `rtr_pat_${'A'.repeat(43)}bcdef0`;

describe('logger', () => {
  it('masks anything shaped like a Rotor secret by default', () => {
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l)).info('oops', { detail: `got ${SECRET}` });
    expect(lines.join('')).not.toContain(SECRET);
    expect(lines.join('')).toContain('rtr_pat_[redacted]');
    expect(redactSecrets(`a ${SECRET} b`)).toBe('a rtr_pat_[redacted] b');
  });

  it('masks signed JWTs by default', () => {
    const jwt = `eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ3ZWIiLCJzY29wZSI6InJlYWQifQ.${'S'.repeat(86)}`;
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l)).info('oops', { detail: jwt });
    expect(lines.join('')).not.toContain(jwt.split('.')[1]);
    expect(lines.join('')).toContain('[redacted JWT]');
    expect(redactSecrets(`Bearer ${jwt}!`)).toBe('Bearer [redacted JWT]!');
  });

  it('writes raw lines when redaction is off (tests use this so their leak checks can fail)', () => {
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l), { redact: false }).info('oops', { token: SECRET });
    expect(lines.join('')).toContain(SECRET);
  });

  it('replaces fields named like credentials (pino redaction paths), at the top level and one object down', () => {
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l)).info('call', {
      token: 'opaque-value-1',
      idempotency_key: 'opaque-value-2',
      request: { authorization: 'Bearer opaque-value-3', 'idempotency-key': 'opaque-value-4', proof: 'opaque-value-5' },
      token_id: 'tok_kept',
    });
    const line = JSON.parse(lines.join('')) as Record<string, unknown>;
    expect(line).toMatchObject({
      level: 'info',
      msg: 'call',
      token: '[redacted]',
      idempotency_key: '[redacted]',
      request: { authorization: '[redacted]', 'idempotency-key': '[redacted]', proof: '[redacted]' },
      token_id: 'tok_kept',
    });
    expect(lines.join('')).not.toContain('opaque-value');
  });

  it('ROTOR_LOG_FORMAT=pretty writes pino-pretty lines, with both nets', () => {
    const lines: string[] = [];
    createLogger('info', (l) => void lines.push(l), { format: 'pretty' }).warn('slow call', {
      secret: 'opaque-value',
      detail: SECRET,
      n: 7,
    });
    const text = lines.join('');
    expect(text).toMatch(/WARN.*slow call/);
    expect(text).toContain('n: 7');
    expect(text).not.toContain('opaque-value');
    expect(text).not.toContain(SECRET);
  });

  it("the client commands' JSON-lines logger (no packages) writes the same shape and masks secrets", () => {
    const lines: string[] = [];
    createLineLogger('info', (l) => void lines.push(l)).warn('retrying', { detail: SECRET });
    expect(JSON.parse(lines.join(''))).toMatchObject({ level: 'warn', msg: 'retrying', detail: 'rtr_pat_[redacted]' });
  });

  it('drops lines below the level', () => {
    const lines: string[] = [];
    const log = createLogger('warn', (l) => void lines.push(l));
    log.info('hidden');
    log.warn('shown', { n: 1 });
    expect(lines.map((l) => JSON.parse(l) as { level: string; msg: string })).toEqual([
      expect.objectContaining({ level: 'warn', msg: 'shown' }),
    ]);
  });

  it('errorChain lists an error and its causes, outermost first, with their codes', () => {
    const driver = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const pool = new Error('pool: could not create a connection', { cause: driver });
    const e = new RotorError('unavailable', 'database unavailable: the connection failed; retry shortly', {
      cause: pool,
    });
    expect(errorChain(e)).toEqual([
      {
        name: 'RotorError',
        message: 'database unavailable: the connection failed; retry shortly',
        code: 'unavailable',
      },
      { name: 'Error', message: 'pool: could not create a connection' },
      { name: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' },
    ]);
    expect(errorChain(undefined)).toEqual([]);
    expect(errorChain(new Error('x', { cause: 'a string' }))).toEqual([
      { name: 'Error', message: 'x' },
      { name: 'string', message: 'a string' },
    ]);
  });

  it('errorChain stops on a cyclic chain', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    Object.defineProperty(a, 'cause', { value: b });
    expect(errorChain(a).map((l) => l.message)).toEqual(['a', 'b']);
  });
});

describe('the database-unavailable log line', () => {
  it('shows the translated driver error chain', async () => {
    const lines: string[] = [];
    const config = loadConfig({
      ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-logger-data-')),
      ROTOR_SECRET: randomBytes(32).toString('hex'),
    });
    const app = await createApp(
      config,
      createLogger('warn', (l) => void lines.push(l)),
    );
    try {
      const driver = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
      const repo = app.store.guard({
        read: () => Promise.reject(new Error('pool: could not create a connection', { cause: driver })),
      });
      const failure = await repo.read().catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(RotorError);
      expect(failure).toMatchObject({ code: 'unavailable', cause: { cause: driver } });
      const logged = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === 'database unavailable');
      expect(logged).toEqual([
        expect.objectContaining({
          level: 'warn',
          reason: 'database unavailable: the connection failed; retry shortly',
          cause: [
            { name: 'Error', message: 'pool: could not create a connection' },
            { name: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' },
          ],
          suppressed: 0,
        }),
      ]);
    } finally {
      await app.store.close();
    }
  });

  it('on stdout, gathers access lines into large writes, keeps every line in order and flushes them on exit', () => {
    // A child process, because only the default destination (stdout, JSON) gathers lines.
    const logger = resolve('dist/src/runtime/logger.js');
    const script = `
      import { createLogger } from ${JSON.stringify(logger)};
      const log = createLogger('info');
      const accessLine = (members) => {
        log.openAccessLine().utf8(members);
        log.closeAccessLine();
      };
      for (let i = 0; i < 3; i++) accessLine('"transport":"grpc","n":' + i);
      log.warn('between', { n: 3 });
      // A line opened and never closed is dropped, not written half-made.
      log.openAccessLine().utf8('"transport":"grpc","n":"half"');
      for (let i = 4; i < 2000; i++) accessLine('"transport":"grpc","n":' + i + ',"detail":"${SECRET}"');
      process.exit(0);
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.n)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'access', transport: 'grpc' });
    expect(typeof lines[0]!.time).toBe('string');
    expect(lines[3]).toMatchObject({ level: 'warn', msg: 'between' });
    expect(lines[1999]).toMatchObject({ level: 'info', msg: 'access' });
    // The by-shape net sees access lines too.
    expect(lines[4]!.detail).toBe('rtr_pat_[redacted]');
    expect(out).not.toContain(SECRET);
  });

  it('on stdout, writes a line while the process runs on, not only at exit', async () => {
    // The child logs one line and one access line, then idles until its stdin closes: both lines
    // must arrive before that (there is no periodic flush; a minimum write length would hold them).
    const logger = resolve('dist/src/runtime/logger.js');
    const script = `
      import { createLogger } from ${JSON.stringify(logger)};
      const log = createLogger('info');
      log.warn('alone', { detail: ${JSON.stringify(SECRET)} });
      log.openAccessLine().utf8('"transport":"grpc","n":1');
      log.closeAccessLine();
      process.stdin.resume();
      process.stdin.on('end', () => process.exit(0));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    await new Promise<void>((done) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.split('\n').length > 2) done();
      });
    });
    child.stdin.end();
    expect(await exited).toBe(0);
    const lines = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toMatchObject([
      { level: 'warn', msg: 'alone', detail: 'rtr_pat_[redacted]' },
      { level: 'info', msg: 'access', n: 1 },
    ]);
  });
});
