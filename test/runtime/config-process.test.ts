import { describe, expect, it } from 'vitest';
import { loadProcessConfig } from '../../src/runtime/config.js';

const MB = 1024 * 1024;

describe('rotor serve process settings', () => {
  it('ROTOR_HEAP_GROWING_PERCENT defaults to 20 and ROTOR_HEAP_FLOOR_MB to 64; 0 leaves V8 its own heuristic', () => {
    expect(loadProcessConfig({})).toEqual({ percent: 20, floorBytes: 64 * MB });
    expect(loadProcessConfig({ ROTOR_HEAP_GROWING_PERCENT: '0' })).toEqual({ percent: 0, floorBytes: 64 * MB });
    expect(loadProcessConfig({ ROTOR_HEAP_GROWING_PERCENT: '100', ROTOR_HEAP_FLOOR_MB: '0' })).toEqual({
      percent: 100,
      floorBytes: 0,
    });
    expect(loadProcessConfig({ ROTOR_HEAP_FLOOR_MB: '256' })).toEqual({ percent: 20, floorBytes: 256 * MB });
  });
  it.each(['-5', '301', '1.5', 'lots'])(
    'ROTOR_HEAP_GROWING_PERCENT=%s is refused with a message naming the variable',
    (value) => {
      expect(() => loadProcessConfig({ ROTOR_HEAP_GROWING_PERCENT: value })).toThrow(
        `ROTOR_HEAP_GROWING_PERCENT must be a whole number between 0 and 300, got "${value}"`,
      );
    },
  );
  it.each(['-1', '4097', '0.5', 'big'])(
    'ROTOR_HEAP_FLOOR_MB=%s is refused with a message naming the variable',
    (value) => {
      expect(() => loadProcessConfig({ ROTOR_HEAP_FLOOR_MB: value })).toThrow(
        `ROTOR_HEAP_FLOOR_MB must be a whole number between 0 and 4096, got "${value}"`,
      );
    },
  );
});
