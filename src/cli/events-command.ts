import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { parseArgs } from 'node:util';
import type { AuditEvent } from '../gen/rotor/v1/token_service_pb.js';
import { tokenClient } from './client.js';
import { parseDuration } from './duration.js';
import { EVENTS_FLAGS } from './flag-tables.js';
import { defaultServerUrl } from './server-url.js';
import { UsageError } from './usage-error.js';

/** `--since 24h` or `--since 2026-12-01T00:00:00Z`: a duration ago, or an ISO 8601 date-time. */
function when(text: string | undefined, flag: string, now: number) {
  if (text === undefined) return undefined;
  const ago = parseDuration(text);
  if (ago !== undefined) return timestampFromMs(now - ago * 1000);
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${flag} must be an ISO 8601 date-time or a duration ago like 24h`);
  return timestampFromMs(ms);
}

function count(text: string | undefined, flag: string, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= max)) throw new UsageError(`${flag} must be a whole number from 1 to ${max}`);
  return n;
}

/** One event as `--json` prints it: snake_case, as the API names the fields; absent values are null. */
export function auditEventJson(e: AuditEvent): Record<string, unknown> {
  return {
    sequence: Number(e.sequence),
    type: e.type,
    occurred_at: e.occurredAt ? timestampDate(e.occurredAt).toISOString() : null,
    token_id: e.tokenId,
    family_id: e.familyId,
    owner_id: e.ownerId || null,
    successor_id: e.successorId || null,
    actor: e.actor,
    system_actor: e.systemActor || null,
    act: e.act ? { iss: e.act.iss, sub: e.act.sub } : null,
    peer: e.peer || null,
    reason: e.reason || null,
    threshold_seconds: e.threshold ? Number(e.threshold.seconds) : null,
  };
}

/** The DETAIL column: successor, reason, workload and peer, whichever the event has. */
function detail(e: AuditEvent): string {
  const parts: string[] = [];
  if (e.successorId) parts.push(`-> ${e.successorId}`);
  if (e.reason && e.reason !== e.type) parts.push(`reason=${e.reason}`);
  if (e.threshold) parts.push(`threshold=${Number(e.threshold.seconds)}s`);
  if (e.act) parts.push(`act=${e.act.iss} ${e.act.sub}`);
  if (e.peer) parts.push(`peer=${e.peer}`);
  return parts.join(' ');
}

const HEADER = ['SEQUENCE', 'TIME', 'TYPE', 'TOKEN', 'ACTOR', 'DETAIL'];

/**
 * `rotor events`: the audit trail (TokenService/ListEvents) with its filters, every page of it
 * (or `--limit` events), as a table or as JSON lines.
 */
export async function eventsCommand(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values } = parseArgs({ args, options: EVENTS_FLAGS, strict: true });
  const now = Date.now();
  const limit = count(values.limit, '--limit', 1_000_000_000);
  const pageSize = count(values['page-size'], '--page-size', 500) ?? 200;
  const since = when(values.since, '--since', now);
  const until = when(values.until, '--until', now);
  const client = tokenClient(values.server ?? defaultServerUrl(env), env.ROTOR_TOKEN);
  let printed = 0;
  let pageToken = '';
  if (!values.json) process.stdout.write(`${HEADER.join('  ')}\n`);
  do {
    const res = await client.listEvents({
      tokenId: values.token ?? '',
      familyId: values.family ?? '',
      ownerId: values.owner ?? '',
      types: values.type,
      since,
      until,
      newestFirst: values['newest-first'],
      pageSize: limit === undefined ? pageSize : Math.min(pageSize, limit - printed),
      pageToken,
    });
    for (const e of res.events) {
      const line = values.json
        ? JSON.stringify(auditEventJson(e))
        : [
            String(e.sequence),
            e.occurredAt ? timestampDate(e.occurredAt).toISOString() : '-',
            e.type,
            e.tokenId,
            e.actor === 'system' ? `system:${e.systemActor}` : e.actor,
            detail(e),
          ]
            .join('  ')
            .trimEnd();
      process.stdout.write(`${line}\n`);
      printed++;
    }
    pageToken = res.nextPageToken;
  } while (pageToken !== '' && (limit === undefined || printed < limit));
}
