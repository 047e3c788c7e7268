import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/runtime/config.js';

const dir = mkdtempSync(join(tmpdir(), 'rotor-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const load = (env: Record<string, string>) => loadConfig({ ROTOR_DATA_DIR: dir, ...env });

describe('WatchExpiry and scheduler configuration', () => {
  it('defaults: 30d,7d,1d,1h, a scan every 30 s, heartbeats every 15 s, 1000 buffered events, a 1 s poll, 16 / 256 / 20000 streams', () => {
    expect(load({}).expiry).toEqual({
      thresholdsSeconds: [2592000, 604800, 86400, 3600],
      scanIntervalMs: 30_000,
      heartbeatSeconds: 15,
      bufferEvents: 1000,
      pollIntervalMs: 1000,
      streamCaps: { perToken: 16, perOwner: 256, perProcess: 20_000 },
    });
  });
  it('reads the variables; thresholds are sorted and de-duplicated', () => {
    const c = load({
      ROTOR_EXPIRY_THRESHOLDS: '1h, 14d,90s,1h',
      ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0',
      ROTOR_WATCH_HEARTBEAT_SECONDS: '5',
      ROTOR_WATCH_BUFFER_EVENTS: '64',
      ROTOR_WATCH_POLL_INTERVAL_MS: '250',
      ROTOR_WATCH_MAX_STREAMS_PER_TOKEN: '1',
      ROTOR_WATCH_MAX_STREAMS_PER_OWNER: '50000',
      ROTOR_WATCH_MAX_STREAMS_PER_PROCESS: '1000000',
    });
    expect(c.expiry).toEqual({
      thresholdsSeconds: [1209600, 3600, 90],
      scanIntervalMs: 0,
      heartbeatSeconds: 5,
      bufferEvents: 64,
      pollIntervalMs: 250,
      streamCaps: { perToken: 1, perOwner: 50_000, perProcess: 1_000_000 },
    });
  });
  it.each([
    [
      'ROTOR_EXPIRY_THRESHOLDS',
      '1w',
      'ROTOR_EXPIRY_THRESHOLDS must be up to 16 comma-separated durations like 30d,7d,1d,1h (units s, m, h, d; at most 3650d), got "1w"',
    ],
    [
      'ROTOR_EXPIRY_THRESHOLDS',
      '0s',
      'ROTOR_EXPIRY_THRESHOLDS must be up to 16 comma-separated durations like 30d,7d,1d,1h (units s, m, h, d; at most 3650d), got "0s"',
    ],
    [
      'ROTOR_EXPIRY_THRESHOLDS',
      '3651d',
      'ROTOR_EXPIRY_THRESHOLDS must be up to 16 comma-separated durations like 30d,7d,1d,1h (units s, m, h, d; at most 3650d), got "3651d"',
    ],
    [
      'ROTOR_EXPIRY_THRESHOLDS',
      '3600',
      'ROTOR_EXPIRY_THRESHOLDS must be up to 16 comma-separated durations like 30d,7d,1d,1h (units s, m, h, d; at most 3650d), got "3600"',
    ],
    [
      'ROTOR_EXPIRY_SCAN_INTERVAL_MS',
      '-1',
      'ROTOR_EXPIRY_SCAN_INTERVAL_MS must be a whole number of milliseconds between 0 and 3600000, got "-1"',
    ],
    [
      'ROTOR_WATCH_HEARTBEAT_SECONDS',
      '0',
      'ROTOR_WATCH_HEARTBEAT_SECONDS must be a whole number of seconds between 1 and 3600, got "0"',
    ],
    [
      'ROTOR_WATCH_BUFFER_EVENTS',
      'many',
      'ROTOR_WATCH_BUFFER_EVENTS must be a whole number between 1 and 100000, got "many"',
    ],
    [
      'ROTOR_WATCH_POLL_INTERVAL_MS',
      '5',
      'ROTOR_WATCH_POLL_INTERVAL_MS must be a whole number of milliseconds between 10 and 60000, got "5"',
    ],
    [
      'ROTOR_WATCH_MAX_STREAMS_PER_TOKEN',
      '0',
      'ROTOR_WATCH_MAX_STREAMS_PER_TOKEN must be a whole number between 1 and 1000000, got "0"',
    ],
    [
      'ROTOR_WATCH_MAX_STREAMS_PER_OWNER',
      '1e3',
      'ROTOR_WATCH_MAX_STREAMS_PER_OWNER must be a whole number between 1 and 1000000, got "1e3"',
    ],
    [
      'ROTOR_WATCH_MAX_STREAMS_PER_PROCESS',
      '1000001',
      'ROTOR_WATCH_MAX_STREAMS_PER_PROCESS must be a whole number between 1 and 1000000, got "1000001"',
    ],
  ])('%s=%s is refused with a message naming the variable', (name, value, message) => {
    expect(() => load({ [name]: value })).toThrow(message);
  });
});
