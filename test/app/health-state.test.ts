/**
 * HealthState (src/app/health-state.ts): what grpc.health.v1 reports, with a fake ping and clock.
 */
import { expect, it } from 'vitest';
import { HealthState, type ServingStatus } from '../../src/app/health-state.js';

function setup() {
  let t = 0;
  let pings = 0;
  let up = true;
  let release: (() => void) | undefined;
  let hold = false;
  const state = new HealthState(
    () => {
      pings++;
      const result = () => (up ? Promise.resolve() : Promise.reject(new Error('database unavailable')));
      if (!hold) return result();
      return new Promise<void>((resolve) => {
        release = resolve;
      }).then(result);
    },
    {
      databaseServices: ['rotor.v1.TokenService'],
      processServices: ['rotor.v1.HealthService'],
      intervalMs: 2000,
      now: () => t,
    },
  );
  const changes: [string, ServingStatus][] = [];
  state.onChange((service, status) => changes.push([service, status]));
  return {
    state,
    changes,
    get pings() {
      return pings;
    },
    advance: (ms: number) => {
      t += ms;
    },
    setUp: (v: boolean) => {
      up = v;
    },
    holdPings: () => {
      hold = true;
    },
    releasePing: () => release?.(),
  };
}

it('reports "" and the named services; any other name is unknown', () => {
  const { state } = setup();
  expect(state.services()).toEqual(['', 'rotor.v1.TokenService', 'rotor.v1.HealthService']);
  expect(state.status('')).toBe('SERVING');
  expect(state.status('rotor.v1.Nope')).toBeUndefined();
});

it('Check pings when the verdict is stale, concurrent Checks share one ping, a fresh verdict needs none', async () => {
  const h = setup();
  h.holdPings();
  const checks = [h.state.check(''), h.state.check('rotor.v1.TokenService'), h.state.check('')];
  h.releasePing();
  expect(await Promise.all(checks)).toEqual(['SERVING', 'SERVING', 'SERVING']);
  expect(h.pings).toBe(1);
  h.advance(1999);
  expect(await h.state.check('')).toBe('SERVING');
  expect(h.pings).toBe(1);
  h.advance(1);
  h.setUp(false);
  const down = h.state.check('');
  h.releasePing();
  expect(await down).toBe('NOT_SERVING');
  expect(h.pings).toBe(2);
  // The process-only service does no I/O and ignores the database.
  expect(await h.state.check('rotor.v1.HealthService')).toBe('SERVING');
  expect(h.pings).toBe(2);
  expect(h.changes).toEqual([
    ['', 'NOT_SERVING'],
    ['rotor.v1.TokenService', 'NOT_SERVING'],
  ]);
});

it('an unavailable report turns the database services NOT_SERVING until a ping succeeds', async () => {
  const h = setup();
  h.state.reportUnavailable();
  expect(h.state.status('')).toBe('NOT_SERVING');
  expect(h.state.status('rotor.v1.HealthService')).toBe('SERVING');
  // The report is a fresh verdict: a Check right after it does not ping.
  expect(await h.state.check('')).toBe('NOT_SERVING');
  expect(h.pings).toBe(0);
  h.advance(2000);
  expect(await h.state.check('')).toBe('SERVING');
  expect(h.changes).toEqual([
    ['', 'NOT_SERVING'],
    ['rotor.v1.TokenService', 'NOT_SERVING'],
    ['', 'SERVING'],
    ['rotor.v1.TokenService', 'SERVING'],
  ]);
});

it('drain turns every service NOT_SERVING for good; close ends the watches once', async () => {
  const h = setup();
  let closed = 0;
  h.state.onClose(() => closed++);
  h.state.drain();
  expect(h.state.services().map((s) => h.state.status(s))).toEqual(['NOT_SERVING', 'NOT_SERVING', 'NOT_SERVING']);
  h.advance(5000);
  expect(await h.state.check('')).toBe('NOT_SERVING');
  expect(h.pings).toBe(0);
  h.state.close();
  h.state.close();
  expect(closed).toBe(1);
  expect(h.changes.map(([s]) => s)).toEqual(['', 'rotor.v1.TokenService', 'rotor.v1.HealthService']);
});
