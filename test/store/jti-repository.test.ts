/**
 * The workload JWT replay cache on every supported engine: the first use wins, concurrent uses
 * of one jti have exactly one winner, a retry with the same key is let through, expired rows go.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase } from '../../src/store/database.js';
import { KnexReplayCache } from '../../src/store/jti-repository.js';
import { ENGINES, scratchDatabase } from '../support/engines.js';

describe.each(ENGINES)('KnexReplayCache on %s', (engine) => {
  let knex: Knex;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    if (engine === 'postgres') {
      const db = await scratchDatabase();
      knex = openDatabase({ url: db.url }).knex;
      cleanup = async () => {
        await knex.destroy();
        await db.drop();
      };
    } else {
      const dir = mkdtempSync(join(tmpdir(), 'rotor-jti-'));
      knex = openDatabase({ url: `sqlite://${join(dir, 'rotor.db')}` }).knex;
      cleanup = async () => {
        await knex.destroy();
        rmSync(dir, { recursive: true, force: true });
      };
    }
    await migrate(knex);
  });
  afterAll(async () => cleanup());

  const NOW = 1_800_000_000_000;
  const entry = (jtiDigest: string, retryKeyDigest?: string) => ({
    jtiDigest,
    expiresAt: NOW + 60_000,
    retryKeyDigest,
  });

  it('accepts a jti once', async () => {
    const cache = new KnexReplayCache(knex);
    expect(await cache.consume(entry('a'.repeat(64)), NOW)).toBe(true);
    expect(await cache.consume(entry('a'.repeat(64)), NOW)).toBe(false);
  });

  it('lets a retry with the same key through, no other', async () => {
    const cache = new KnexReplayCache(knex);
    expect(await cache.consume(entry('b'.repeat(64), 'key1'), NOW)).toBe(true);
    expect(await cache.consume(entry('b'.repeat(64), 'key1'), NOW)).toBe(true);
    expect(await cache.consume(entry('b'.repeat(64), 'key2'), NOW)).toBe(false);
    expect(await cache.consume(entry('b'.repeat(64)), NOW)).toBe(false);
  });

  it('has exactly one winner among concurrent uses (two caches: two replicas)', async () => {
    const replicas = [new KnexReplayCache(knex), new KnexReplayCache(knex)];
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => replicas[i % 2]!.consume(entry('c'.repeat(64)), NOW)),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('purges expired rows', async () => {
    const cache = new KnexReplayCache(knex);
    await cache.consume({ jtiDigest: 'd'.repeat(64), expiresAt: NOW + 1000, retryKeyDigest: undefined }, NOW);
    expect(
      await knex('workload_jtis')
        .where({ jti_digest: 'd'.repeat(64) })
        .first(),
    ).toBeDefined();
    await cache.consume(entry('e'.repeat(64)), NOW + 120_000);
    expect(
      await knex('workload_jtis')
        .where({ jti_digest: 'd'.repeat(64) })
        .first(),
    ).toBeUndefined();
  });
});
