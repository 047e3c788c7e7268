import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/runtime/config.js';

const dir = mkdtempSync(join(tmpdir(), 'rotor-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const load = (env: Record<string, string>) => loadConfig({ ROTOR_DATA_DIR: dir, ...env });

describe('retention configuration', () => {
  it('defaults: 90 days, a pass every hour', () => {
    expect(load({}).retention).toEqual({ days: 90, intervalMs: 3_600_000 });
  });
  it('reads the variables; 0 days keeps everything, interval 0 runs no pass in this process', () => {
    expect(load({ ROTOR_RETENTION_DAYS: '0', ROTOR_RETENTION_INTERVAL_MS: '0' }).retention).toEqual({
      days: 0,
      intervalMs: 0,
    });
    expect(load({ ROTOR_RETENTION_DAYS: '36500', ROTOR_RETENTION_INTERVAL_MS: '86400000' }).retention).toEqual({
      days: 36_500,
      intervalMs: 86_400_000,
    });
  });
  it.each([
    [
      'ROTOR_RETENTION_DAYS',
      '36501',
      'ROTOR_RETENTION_DAYS must be a whole number of days between 0 and 36500, got "36501"',
    ],
    [
      'ROTOR_RETENTION_DAYS',
      '90d',
      'ROTOR_RETENTION_DAYS must be a whole number of days between 0 and 36500, got "90d"',
    ],
    ['ROTOR_RETENTION_DAYS', '-1', 'ROTOR_RETENTION_DAYS must be a whole number of days between 0 and 36500, got "-1"'],
    [
      'ROTOR_RETENTION_INTERVAL_MS',
      '86400001',
      'ROTOR_RETENTION_INTERVAL_MS must be a whole number of milliseconds between 0 and 86400000, got "86400001"',
    ],
    [
      'ROTOR_RETENTION_INTERVAL_MS',
      '1h',
      'ROTOR_RETENTION_INTERVAL_MS must be a whole number of milliseconds between 0 and 86400000, got "1h"',
    ],
  ])('%s=%s is refused with a message naming the variable', (name, value, message) => {
    expect(() => load({ [name]: value })).toThrow(message);
  });
});
