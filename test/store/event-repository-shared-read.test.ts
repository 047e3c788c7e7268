/**
 * latestSequence() shares one read among concurrent callers. When that read fails (the database
 * is gone) and no second caller took the shared promise, its failure must still count as handled:
 * an unhandled rejection ends a Node process by default, so a database outage would have ended
 * the server (the WatchExpiry feed polls latestSequence every second).
 */
import knexFactory from 'knex';
import { expect, it } from 'vitest';
import { KnexEventRepository } from '../../src/store/event-repository.js';

it('a failed shared latestSequence read leaves no unhandled rejection behind', async () => {
  const knex = knexFactory({ client: 'sqlite3', connection: { filename: ':memory:' }, useNullAsDefault: true });
  await knex.destroy(); // every query now fails
  const unhandled: unknown[] = [];
  const record = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', record);
  try {
    const events = new KnexEventRepository(knex, () => undefined, true);
    await expect(events.latestSequence()).rejects.toThrow();
    // Unhandled rejections are reported once the microtask queue has drained.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('unhandledRejection', record);
  }
  expect(unhandled).toEqual([]);
});
