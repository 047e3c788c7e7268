import { isAdmin, requireView } from '../domain/authorization.js';
import { RotorError } from '../domain/errors.js';
import { LIMITS, requireId, requireIdentifier } from '../domain/input-limits.js';
import type { WatchedEvent } from '../domain/token-event.js';
import type { Caller } from './authenticate.js';
import type { AppContext } from './context.js';
import type { EventQuery } from './store-ports.js';

/** ListEvents input, already decoded from the wire; empty strings are "no filter". */
export interface ListEventsInput {
  tokenId: string;
  familyId: string;
  ownerId: string;
  types: readonly string[];
  since: number | undefined;
  until: number | undefined;
  pageSize: number;
  pageToken: string;
  newestFirst: boolean;
}

/** Event type names as stored (src/domain/token-event.ts); new types need no change here. */
const EVENT_TYPE = /^[a-z][a-z_]{0,31}$/;
const MAX_TYPES = 16;

function invalid(field: string, message: string): never {
  throw new RotorError('invalid_argument', `${field} ${message}`, { field });
}

/**
 * ListEvents (docs/design.md, "Audit trail"): the event log filtered and paged, with the
 * authorization of GetToken. `rotor:admin` sees every event; any other caller sees the events of
 * its own owner id's tokens only, and naming another owner, or a token or family of another owner,
 * is refused (permission_denied) rather than answered with an empty page.
 */
export async function listEvents(
  app: AppContext,
  caller: Caller,
  input: ListEventsInput,
): Promise<{ events: WatchedEvent[]; nextPageToken: string }> {
  if (!Number.isSafeInteger(input.pageSize) || input.pageSize < 0 || input.pageSize > LIMITS.pageSize)
    invalid('page_size', `must be between 0 and ${LIMITS.pageSize}`);
  const limit = input.pageSize === 0 ? 50 : input.pageSize;
  if (input.types.length > MAX_TYPES) invalid('types', `may list at most ${MAX_TYPES} event types`);
  for (const t of input.types)
    if (!EVENT_TYPE.test(t)) invalid('types', `holds "${t.slice(0, 40)}", not an event type`);
  if (input.since !== undefined && input.until !== undefined && input.until <= input.since)
    invalid('until', 'must be later than since');
  const query: EventQuery = { newestFirst: input.newestFirst };
  if (input.tokenId !== '') query.tokenId = requireId('token_id', input.tokenId);
  if (input.familyId !== '') query.familyId = requireId('family_id', input.familyId);
  if (input.ownerId !== '') query.ownerId = requireIdentifier('owner_id', input.ownerId, LIMITS.ownerId);
  if (input.types.length > 0) query.types = [...new Set(input.types)];
  if (input.since !== undefined) query.since = input.since;
  if (input.until !== undefined) query.until = input.until;
  if (input.pageToken !== '') query.afterSequence = decodeCursor(input.pageToken, input.newestFirst);

  if (!isAdmin(caller.token)) {
    if (query.ownerId !== undefined) requireView(caller.token, { ownerId: query.ownerId });
    if (query.tokenId !== undefined) {
      const token = await app.store.tokens.findById(query.tokenId);
      if (!token) throw new RotorError('not_found', `token ${query.tokenId} not found`);
      requireView(caller.token, token);
    }
    if (query.familyId !== undefined) {
      const root = await app.store.tokens.findFamilyRoot(query.familyId);
      if (!root) throw new RotorError('not_found', `family ${query.familyId} not found`);
      requireView(caller.token, root);
    }
    query.ownerId = caller.token.ownerId;
  }

  const rows = await app.store.events.audit(query, limit + 1);
  const events = rows.slice(0, limit);
  const last = events[events.length - 1];
  return {
    events,
    nextPageToken: rows.length > limit && last ? encodeCursor(last.sequence, input.newestFirst) : '',
  };
}

function encodeCursor(sequence: number, newestFirst: boolean): string {
  return Buffer.from(`ev:${newestFirst ? 'd' : 'a'}:${sequence}`).toString('base64url');
}

function decodeCursor(token: string, newestFirst: boolean): number {
  const m = token.length <= 64 ? /^ev:([ad]):(\d{1,16})$/.exec(Buffer.from(token, 'base64url').toString()) : null;
  if (!m || Number(m[2]) > Number.MAX_SAFE_INTEGER) invalid('page_token', 'is not valid');
  if ((m[1] === 'd') !== newestFirst) invalid('page_token', 'belongs to the other order (newest_first)');
  return Number(m[2]);
}
