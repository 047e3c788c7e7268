import { describe, expect, it } from 'vitest';
import { loadProcessConfig } from '../../src/runtime/config.js';

describe('rotor serve process settings', () => {
  it('ROTOR_HEAP_GROWING_PERCENT defaults to 20; 0 leaves V8 its own heuristic', () => {
    expect(loadProcessConfig({})).toEqual({ heapGrowingPercent: 20 });
    expect(loadProcessConfig({ ROTOR_HEAP_GROWING_PERCENT: '0' })).toEqual({ heapGrowingPercent: 0 });
    expect(loadProcessConfig({ ROTOR_HEAP_GROWING_PERCENT: '100' })).toEqual({ heapGrowingPercent: 100 });
  });
  it.each(['-5', '301', '1.5', 'lots'])(
    'ROTOR_HEAP_GROWING_PERCENT=%s is refused with a message naming the variable',
    (value) => {
      expect(() => loadProcessConfig({ ROTOR_HEAP_GROWING_PERCENT: value })).toThrow(
        `ROTOR_HEAP_GROWING_PERCENT must be a whole number between 0 and 300, got "${value}"`,
      );
    },
  );
});
