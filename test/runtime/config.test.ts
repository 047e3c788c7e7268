import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadDatabaseConfig } from '../../src/runtime/config.js';

const dataDir = mkdtempSync(join(tmpdir(), 'rotor-config-'));
const base = { ROTOR_DATA_DIR: dataDir, ROTOR_SECRET: 'config-test-secret-0123456789abcdefgh' };

describe('database configuration (README: Operating Rotor on PostgreSQL)', () => {
  it('defaults: SQLite in the data directory, pool 10, statement timeout 5000 ms', () => {
    const c = loadConfig(base);
    expect(c.databaseUrl).toBe(`sqlite://${join(dataDir, 'rotor.db')}`);
    expect(c.databasePoolMax).toBe(10);
    expect(c.databaseStatementTimeoutMs).toBe(5000);
  });

  it('reads ROTOR_DATABASE_URL, ROTOR_DATABASE_POOL_MAX and ROTOR_DATABASE_STATEMENT_TIMEOUT_MS', () => {
    const c = loadConfig({ ...base, ROTOR_DATABASE_URL: 'postgres://rotor@db:5432/rotor', ROTOR_DATABASE_POOL_MAX: '25', ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '1500' });
    expect(c).toMatchObject({ databaseUrl: 'postgres://rotor@db:5432/rotor', databasePoolMax: 25, databaseStatementTimeoutMs: 1500 });
  });

  it.each([
    [{ ROTOR_DATABASE_URL: 'mysql://x' }, 'ROTOR_DATABASE_URL must start with postgres://, postgresql://, sqlite:// or file:'],
    [{ ROTOR_DATABASE_POOL_MAX: '0' }, 'ROTOR_DATABASE_POOL_MAX must be at least 1'],
    [{ ROTOR_DATABASE_POOL_MAX: 'ten' }, 'ROTOR_DATABASE_POOL_MAX must be a whole number between 0 and 1000, got "ten"'],
    [{ ROTOR_DATABASE_POOL_MAX: '1001' }, 'ROTOR_DATABASE_POOL_MAX must be a whole number between 0 and 1000, got "1001"'],
    [{ ROTOR_DATABASE_LISTEN: 'yes' }, 'ROTOR_DATABASE_LISTEN must be on or off, got "yes"'],
    [{ ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '50' }, 'ROTOR_DATABASE_STATEMENT_TIMEOUT_MS must be at least 100 milliseconds'],
    [{ ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '5s' }, 'ROTOR_DATABASE_STATEMENT_TIMEOUT_MS must be a whole number of milliseconds between 0 and 600000, got "5s"'],
  ])('%o is refused with a message naming the variable', (env, message) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(new ConfigError(message));
    expect(() => loadDatabaseConfig({ ...base, ...env })).toThrow(new ConfigError(message));
  });

  it('loadDatabaseConfig (rotor migrate) needs no server secret', () => {
    expect(loadDatabaseConfig({ ROTOR_DATABASE_URL: 'postgresql://h/db' })).toEqual({ databaseUrl: 'postgresql://h/db', databasePoolMax: 10, databaseStatementTimeoutMs: 5000, databaseListen: true });
    expect(loadDatabaseConfig({ ROTOR_DATABASE_LISTEN: 'off' }).databaseListen).toBe(false);
  });
});
