import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { useEffect, useState } from 'preact/hooks';
import type { AuditEvent } from '../../src/gen/rotor/v1/token_service_pb.js';
import type { Session } from './api.js';
import { errorText, EVENT_TYPES, iso, ms } from './format.js';
import { ErrorNote, Scroll } from './widgets.js';

export interface AuditFilter {
  tokenId: string;
  familyId: string;
  ownerId: string;
  types: string[];
  since: string;
  until: string;
}

export const NO_AUDIT_FILTER: AuditFilter = { tokenId: '', familyId: '', ownerId: '', types: [], since: '', until: '' };

/** An event as exported (JSON and CSV share the field names of `rotor events --json`). */
function row(e: AuditEvent): Record<string, string | number> {
  return {
    sequence: Number(e.sequence),
    occurred_at: iso(ms(e.occurredAt)),
    type: e.type,
    token_id: e.tokenId,
    family_id: e.familyId,
    owner_id: e.ownerId,
    successor_id: e.successorId,
    actor: e.actor,
    system_actor: e.systemActor,
    act_iss: e.act?.iss ?? '',
    act_sub: e.act?.sub ?? '',
    peer: e.peer,
    reason: e.reason,
  };
}

const CSV_COLUMNS = [
  'sequence',
  'occurred_at',
  'type',
  'token_id',
  'family_id',
  'owner_id',
  'successor_id',
  'actor',
  'system_actor',
  'act_iss',
  'act_sub',
  'peer',
  'reason',
];

/** One CSV cell (RFC 4180 quoting); a leading = + - @ is neutralised so a spreadsheet never runs it as a formula. */
function cell(v: string | number): string {
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) || s !== String(v) ? `"${s.replace(/"/g, '""')}"` : s;
}

function download(name: string, type: string, body: string): void {
  const url = URL.createObjectURL(new Blob([body], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function when(local: string): number | undefined {
  if (local === '') return undefined;
  const t = new Date(local).getTime();
  return Number.isNaN(t) ? undefined : t;
}

/** The audit trail (ListEvents) with its filters, newest first, a page at a time; JSON and CSV export of what is loaded. */
export function AuditView(props: {
  session: Session;
  filter: AuditFilter;
  onFilter: (f: AuditFilter) => void;
  refresh: number;
}) {
  const { session, filter } = props;
  const [draft, setDraft] = useState(filter);
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [next, setNext] = useState('');
  const [error, setError] = useState<string>();
  useEffect(() => setDraft(filter), [filter]);

  const request = (pageToken: string) => {
    const since = when(filter.since);
    const until = when(filter.until);
    return session.tokens.listEvents({
      tokenId: filter.tokenId,
      familyId: filter.familyId,
      ownerId: filter.ownerId,
      types: filter.types,
      ...(since !== undefined && { since: timestampFromMs(since) }),
      ...(until !== undefined && { until: timestampFromMs(until) }),
      newestFirst: true,
      pageSize: 50,
      pageToken,
    });
  };
  useEffect(() => {
    let stale = false;
    request('').then(
      (res) => {
        if (stale) return;
        setEvents(res.events);
        setNext(res.nextPageToken);
        setError(undefined);
      },
      (e: unknown) => !stale && setError(errorText(e)),
    );
    return () => {
      stale = true;
    };
  }, [session, filter, props.refresh]);

  const more = async () => {
    try {
      const res = await request(next);
      setEvents([...events, ...res.events]);
      setNext(res.nextPageToken);
    } catch (e) {
      setError(errorText(e));
    }
  };
  const rows = events.map(row);
  const text = (k: keyof AuditFilter) => (e: Event) =>
    setDraft({ ...draft, [k]: (e.currentTarget as HTMLInputElement).value.trim() });
  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit trail</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          props.onFilter({ ...draft, types: [...draft.types] });
        }}
      >
        <label>
          Token id
          <input name="token_id" value={draft.tokenId} onInput={text('tokenId')} />
        </label>
        <label>
          Family id
          <input name="family_id" value={draft.familyId} onInput={text('familyId')} />
        </label>
        <label>
          Owner
          <input name="owner_id" value={draft.ownerId} onInput={text('ownerId')} />
        </label>
        <label>
          Since
          <input name="since" type="datetime-local" step={1} value={draft.since} onInput={text('since')} />
        </label>
        <label>
          Until
          <input name="until" type="datetime-local" step={1} value={draft.until} onInput={text('until')} />
        </label>
        <fieldset>
          <legend>Types (none: all)</legend>
          {EVENT_TYPES.map((t) => (
            <label class="check">
              <input
                type="checkbox"
                name="type"
                value={t}
                checked={draft.types.includes(t)}
                onChange={(e) =>
                  setDraft({
                    ...draft,
                    types: e.currentTarget.checked ? [...draft.types, t] : draft.types.filter((x) => x !== t),
                  })
                }
              />
              {t}
            </label>
          ))}
        </fieldset>
        <button type="submit">Filter</button>
        <button
          type="button"
          onClick={() => download('rotor-events.json', 'application/json', JSON.stringify(rows, null, 2))}
        >
          Export JSON
        </button>
        <button
          type="button"
          onClick={() => {
            const head = CSV_COLUMNS;
            const body = [head.join(','), ...rows.map((r) => head.map((h) => cell(r[h] ?? '')).join(','))].join('\r\n');
            download('rotor-events.csv', 'text/csv', `${body}\r\n`);
          }}
        >
          Export CSV
        </button>
      </form>
      <ErrorNote error={error} />
      <Scroll label="Events">
        <table class="events">
          <thead>
            <tr>
              <th scope="col">Seq</th>
              <th scope="col">Time</th>
              <th scope="col">Type</th>
              <th scope="col">Token</th>
              <th scope="col">Actor</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr key={String(e.sequence)} data-type={e.type}>
                <td>{String(e.sequence)}</td>
                <td>{iso(ms(e.occurredAt))}</td>
                <td>{e.type}</td>
                <td>
                  <code>{e.tokenId}</code>
                </td>
                <td>{e.actor === 'system' ? `system (${e.systemActor})` : <code>{e.actor}</code>}</td>
                <td>
                  {[
                    e.successorId && `→ ${e.successorId}`,
                    e.reason && e.reason !== e.type && `reason ${e.reason}`,
                    e.act && `act ${e.act.iss} ${e.act.sub}`,
                    e.peer && `peer ${e.peer}`,
                  ]
                    .filter(Boolean)
                    .join(' · ')}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
      <p>
        {events.length} event(s) loaded.{' '}
        {next !== '' && (
          <button type="button" onClick={() => void more()}>
            Load older events
          </button>
        )}
      </p>
    </section>
  );
}
