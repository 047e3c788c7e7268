import type { Knex } from 'knex';
import type { EventRepository } from '../app/store-ports.js';
import type { NewTokenEvent, TokenEvent, TokenEventType } from '../domain/token-event.js';
import type { WorkloadActor } from '../domain/workload-binding.js';

/** The `token_events` table row. */
interface EventRow {
  sequence: number | string;
  type: string;
  token_id: string;
  family_id: string;
  successor_id: string | null;
  actor: string;
  peer: string | null;
  reason: string | null;
  occurred_at: number | string;
  unique_key: string | null;
  act: string | null;
}

function toEvent(row: EventRow): TokenEvent {
  return {
    sequence: Number(row.sequence),
    type: row.type as TokenEventType,
    tokenId: row.token_id,
    familyId: row.family_id,
    successorId: row.successor_id,
    actor: row.actor,
    peer: row.peer,
    reason: row.reason,
    occurredAt: Number(row.occurred_at),
    act: row.act === null || row.act === undefined ? null : (JSON.parse(row.act) as WorkloadActor),
  };
}

/** knex repository of the append-only `token_events` log: insert and read, never update. */
export class KnexEventRepository implements EventRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  async append(events: readonly NewTokenEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.db('token_events').insert(
      events.map((e) => ({
        type: e.type,
        token_id: e.tokenId,
        family_id: e.familyId,
        successor_id: e.successorId,
        actor: e.actor,
        peer: e.peer?.slice(0, 128) ?? null,
        reason: e.reason,
        occurred_at: e.occurredAt,
        act: e.act ? JSON.stringify({ iss: e.act.iss, sub: e.act.sub }) : null,
      })),
    );
  }

  async list(filter: { tokenId?: string; familyId?: string; afterSequence?: number }, limit: number): Promise<TokenEvent[]> {
    const q = this.db<EventRow>('token_events').select('*');
    if (filter.tokenId !== undefined) q.where('token_id', filter.tokenId);
    if (filter.familyId !== undefined) q.where('family_id', filter.familyId);
    if (filter.afterSequence !== undefined) q.where('sequence', '>', filter.afterSequence);
    const rows = await q.orderBy('sequence').limit(limit);
    return rows.map(toEvent);
  }
}
