import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadDatabaseConfig } from '../../src/runtime/config.js';
import { openFileLimit } from '../../src/runtime/open-file-limit.js';

const dataDir = mkdtempSync(join(tmpdir(), 'rotor-config-'));
const base = {
  ROTOR_DATA_DIR: dataDir,
  ROTOR_SECRET: '90741e96932df58f7ca547076bc7183c53782a87ac6c0d6330c72e21612b47d4',
};

describe('database configuration (README: Operating Rotor on PostgreSQL)', () => {
  it('defaults: SQLite in the data directory, pool 10, statement timeout 5000 ms', () => {
    const c = loadConfig(base);
    expect(c.databaseUrl).toBe(`sqlite://${join(dataDir, 'rotor.db')}`);
    expect(c.databasePoolMax).toBe(10);
    expect(c.databaseStatementTimeoutMs).toBe(5000);
  });

  it('reads ROTOR_DATABASE_URL, ROTOR_DATABASE_POOL_MAX and ROTOR_DATABASE_STATEMENT_TIMEOUT_MS', () => {
    const c = loadConfig({
      ...base,
      ROTOR_DATABASE_URL: 'postgres://rotor@db:5432/rotor',
      ROTOR_DATABASE_POOL_MAX: '25',
      ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '1500',
    });
    expect(c).toMatchObject({
      databaseUrl: 'postgres://rotor@db:5432/rotor',
      databasePoolMax: 25,
      databaseStatementTimeoutMs: 1500,
    });
  });

  it.each([
    [
      { ROTOR_DATABASE_URL: 'mysql://x' },
      'ROTOR_DATABASE_URL must start with postgres://, postgresql://, sqlite:// or file:',
    ],
    [{ ROTOR_DATABASE_POOL_MAX: '0' }, 'ROTOR_DATABASE_POOL_MAX must be a whole number between 1 and 1000, got "0"'],
    [
      { ROTOR_DATABASE_POOL_MAX: 'ten' },
      'ROTOR_DATABASE_POOL_MAX must be a whole number between 1 and 1000, got "ten"',
    ],
    [
      { ROTOR_DATABASE_POOL_MAX: '1001' },
      'ROTOR_DATABASE_POOL_MAX must be a whole number between 1 and 1000, got "1001"',
    ],
    [{ ROTOR_DATABASE_LISTEN: 'yes' }, 'ROTOR_DATABASE_LISTEN must be on or off, got "yes"'],
    [
      { ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '50' },
      'ROTOR_DATABASE_STATEMENT_TIMEOUT_MS must be a whole number of milliseconds between 100 and 600000, got "50"',
    ],
    [
      { ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '5s' },
      'ROTOR_DATABASE_STATEMENT_TIMEOUT_MS must be a whole number of milliseconds between 100 and 600000, got "5s"',
    ],
  ])('%o is refused with a message naming the variable', (env, message) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(new ConfigError(message));
    expect(() => loadDatabaseConfig({ ...base, ...env })).toThrow(new ConfigError(message));
  });

  it('loadDatabaseConfig (rotor migrate) needs no server secret', () => {
    expect(loadDatabaseConfig({ ROTOR_DATABASE_URL: 'postgresql://h/db' })).toEqual({
      dataDir: resolve('./data'),
      databaseUrl: 'postgresql://h/db',
      databasePoolMax: 10,
      databaseStatementTimeoutMs: 5000,
      databaseListen: true,
    });
    expect(loadDatabaseConfig({ ROTOR_DATABASE_LISTEN: 'off' }).databaseListen).toBe(false);
  });
});

describe('limits and cache ranges (README configuration table)', () => {
  const ranges: [string, number, number, (c: ReturnType<typeof loadConfig>) => number][] = [
    ['ROTOR_MAX_LIFETIME_SECONDS', 1, 315_360_000, (c) => c.limits.maxLifetimeSeconds],
    ['ROTOR_DEFAULT_REUSE_GRACE_SECONDS', 0, 3600, (c) => c.limits.defaultReuseGraceSeconds],
    ['ROTOR_DEFAULT_OVERLAP_SECONDS', 0, 31_536_000, (c) => c.limits.defaultOverlapSeconds], // at most the max lifetime (default 365 d)
    ['ROTOR_RETRY_WINDOW_SECONDS', 0, 86_400, (c) => c.limits.retryWindowSeconds],
    ['ROTOR_TOKEN_CACHE_TTL_MS', 0, 60_000, (c) => c.tokenCacheTtlMs],
  ];
  it.each(ranges)('%s takes %d to %d and refuses one past either end', (name, min, max, read) => {
    expect(read(loadConfig({ ...base, [name]: String(min) }))).toBe(min);
    expect(read(loadConfig({ ...base, [name]: String(max) }))).toBe(max);
    // The message states the range that is accepted.
    const range = new RegExp(`^${name} must be a whole number .*between ${min} and ${max}, got `);
    expect(() => loadConfig({ ...base, [name]: String(max + 1) })).toThrow(range);
    if (min > 0) expect(() => loadConfig({ ...base, [name]: String(min - 1) })).toThrow(range);
    expect(() => loadConfig({ ...base, [name]: '-1' })).toThrow(ConfigError);
  });
  it('ROTOR_DEFAULT_OVERLAP_SECONDS is bounded by ROTOR_MAX_LIFETIME_SECONDS', () => {
    expect(
      loadConfig({ ...base, ROTOR_MAX_LIFETIME_SECONDS: '600', ROTOR_DEFAULT_OVERLAP_SECONDS: '600' }).limits
        .defaultOverlapSeconds,
    ).toBe(600);
    expect(() =>
      loadConfig({ ...base, ROTOR_MAX_LIFETIME_SECONDS: '600', ROTOR_DEFAULT_OVERLAP_SECONDS: '601' }),
    ).toThrow(
      new ConfigError('ROTOR_DEFAULT_OVERLAP_SECONDS must be a whole number of seconds between 0 and 600, got "601"'),
    );
  });
});

describe('ROTOR_METRICS (docs/metrics.md)', () => {
  it('on by default; token asks for a bearer; off turns GET /metrics off; anything else is refused', () => {
    expect(loadConfig(base).metrics).toBe('on');
    expect(loadConfig({ ...base, ROTOR_METRICS: 'token' }).metrics).toBe('token');
    expect(loadConfig({ ...base, ROTOR_METRICS: 'off' }).metrics).toBe('off');
    expect(() => loadConfig({ ...base, ROTOR_METRICS: 'yes' })).toThrow(
      new ConfigError('ROTOR_METRICS must be on, token or off, got "yes"'),
    );
  });
});

describe('ROTOR_REFLECTION (README: Interfaces)', () => {
  it('on by default; off turns gRPC server reflection off; anything else is refused', () => {
    expect(loadConfig(base).reflection).toBe(true);
    expect(loadConfig({ ...base, ROTOR_REFLECTION: 'on' }).reflection).toBe(true);
    expect(loadConfig({ ...base, ROTOR_REFLECTION: 'off' }).reflection).toBe(false);
    expect(() => loadConfig({ ...base, ROTOR_REFLECTION: 'true' })).toThrow(
      new ConfigError('ROTOR_REFLECTION must be on or off, got "true"'),
    );
  });
});

describe('gRPC connection limits (README: Connection limits)', () => {
  it('defaults: 10 s handshake, 100 per peer, half the open-file limit in all, 5 min idle, 2 h age with 30 s grace, 10,000 streams', () => {
    const limit = openFileLimit();
    expect(loadConfig(base).grpcConnections).toEqual({
      handshakeTimeoutMs: 10_000,
      maxConnectionsPerPeer: 100,
      maxConnections: limit === undefined ? 10_000 : Math.floor(limit / 2),
      idleTimeoutMs: 300_000,
      maxConnectionAgeMs: 7_200_000,
      maxConnectionAgeGraceMs: 30_000,
      maxConcurrentStreams: 10_000,
    });
  });

  it('reads every variable; 0 turns the per-peer limit and the process-wide cap off', () => {
    const c = loadConfig({
      ...base,
      ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS: '2500',
      ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER: '0',
      ROTOR_GRPC_MAX_CONNECTIONS: '0',
      ROTOR_GRPC_IDLE_TIMEOUT_SECONDS: '60',
      ROTOR_GRPC_MAX_CONNECTION_AGE_SECONDS: '3600',
      ROTOR_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS: '5',
      ROTOR_GRPC_MAX_CONCURRENT_STREAMS: '200',
    });
    expect(c.grpcConnections).toEqual({
      handshakeTimeoutMs: 2500,
      maxConnectionsPerPeer: 0,
      maxConnections: 0,
      idleTimeoutMs: 60_000,
      maxConnectionAgeMs: 3_600_000,
      maxConnectionAgeGraceMs: 5000,
      maxConcurrentStreams: 200,
    });
  });

  it.each([
    [
      'ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS',
      '99',
      'ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS must be a whole number of milliseconds between 100 and 120000, got "99"',
    ],
    [
      'ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER',
      '-1',
      'ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER must be a whole number between 0 and 1000000, got "-1"',
    ],
    [
      'ROTOR_GRPC_MAX_CONNECTIONS',
      'many',
      'ROTOR_GRPC_MAX_CONNECTIONS must be a whole number between 0 and 1000000, got "many"',
    ],
    [
      'ROTOR_GRPC_IDLE_TIMEOUT_SECONDS',
      '0',
      'ROTOR_GRPC_IDLE_TIMEOUT_SECONDS must be a whole number of seconds between 1 and 86400, got "0"',
    ],
    [
      'ROTOR_GRPC_MAX_CONNECTION_AGE_SECONDS',
      '604801',
      'ROTOR_GRPC_MAX_CONNECTION_AGE_SECONDS must be a whole number of seconds between 1 and 604800, got "604801"',
    ],
    [
      'ROTOR_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS',
      '0',
      'ROTOR_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS must be a whole number of seconds between 1 and 3600, got "0"',
    ],
    [
      'ROTOR_GRPC_MAX_CONCURRENT_STREAMS',
      '0',
      'ROTOR_GRPC_MAX_CONCURRENT_STREAMS must be a whole number between 1 and 1000000, got "0"',
    ],
  ])('%s=%s is refused with a message naming it', (name, value, message) => {
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(new ConfigError(message));
  });

  it('openFileLimit reads the soft limit of /proc/self/limits, and nothing where it cannot', () => {
    const limits =
      'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n';
    expect(openFileLimit(() => limits)).toBe(1024);
    expect(openFileLimit(() => limits.replace('1024 ', 'unlimited '))).toBeUndefined();
    expect(
      openFileLimit(() => {
        throw new Error('ENOENT');
      }),
    ).toBeUndefined();
  });
});
