import { useEffect, useState } from 'preact/hooks';
import type { Token } from '../../src/gen/rotor/v1/token_pb.js';
import type { AuditEvent } from '../../src/gen/rotor/v1/token_service_pb.js';
import type { Session } from './api.js';
import { errorText, iso, ms, stateName } from './format.js';
import { StateBadge } from './tokens.js';
import { ErrorNote, Scroll } from './widgets.js';

/** A mark on the time axis: where reuse was detected or the family revoked. */
interface Mark {
  at: number;
  label: string;
  kind: 'reuse' | 'revoked';
}

/** Members oldest first, following previous_id from the root where the chain is whole. */
function chain(tokens: Token[]): Token[] {
  return [...tokens].sort((a, b) => (ms(a.createdAt) ?? 0) - (ms(b.createdAt) ?? 0) || a.id.localeCompare(b.id));
}

/** The marks of a family's events: one per revocation of the family (its first event). */
function marks(events: AuditEvent[]): Mark[] {
  const out: Mark[] = [];
  const seen = new Set<string>();
  for (const e of events) {
    if (e.type !== 'family_revoked') continue;
    const at = ms(e.occurredAt) ?? 0;
    const key = `${e.reason}:${at}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(
      e.reason === 'reuse_detected'
        ? { at, label: 'reuse detected: family revoked', kind: 'reuse' }
        : { at, label: 'family revoked', kind: 'revoked' },
    );
  }
  return out;
}

/** A tick's label: the time of day, with the date when the family spans days. */
function axisLabel(at: number, multiDay: boolean): string {
  const text = iso(at);
  return multiDay ? text.slice(5, 16) : text.slice(11, 20);
}

const GAP = 180;
const MARGIN = 90;

/**
 * x positions for sorted times: proportional to the time between them, but never closer than GAP,
 * so that tokens created within a second stay apart and the axis still reads left to right.
 */
function layout(times: number[]): number[] {
  if (times.length === 0) return [];
  const span = Math.max(1, times[times.length - 1]! - times[0]!);
  const xs: number[] = [];
  for (let i = 0; i < times.length; i++) {
    const proportional = MARGIN + ((times[i]! - times[0]!) / span) * GAP * Math.max(1, times.length - 1);
    xs.push(i === 0 ? MARGIN : Math.max(proportional, xs[i - 1]! + GAP));
  }
  return xs;
}

/** The family as an SVG graph built by Preact (never markup from strings): nodes, rotation edges, marks, time axis. */
export function FamilyGraph(props: { tokens: Token[]; events: AuditEvent[]; familyId: string }) {
  const members = chain(props.tokens);
  const ms_ = marks(props.events);
  const points = [
    ...members.map((t, i) => ({ at: ms(t.createdAt) ?? 0, node: i })),
    ...ms_.map((m, i) => ({ at: m.at, mark: i })),
  ].sort((a, b) => a.at - b.at || ('node' in a ? -1 : 1));
  const xs = layout(points.map((p) => p.at));
  const nodeX: number[] = [];
  const markX: number[] = [];
  points.forEach((p, i) => {
    if ('node' in p && p.node !== undefined) nodeX[p.node] = xs[i]!;
    else if ('mark' in p && p.mark !== undefined) markX[p.mark] = xs[i]!;
  });
  const width = Math.max(...xs, MARGIN) + MARGIN + 60;
  const multiDay = points.length > 1 && points[points.length - 1]!.at - points[0]!.at >= 86_400_000;
  const height = 250;
  const axisY = 210;
  const nodeY = 80;
  const byId = new Map(members.map((t, i) => [t.id, i]));
  const summary = `${members.length} token(s): ${members.map((t) => `${t.id} ${stateName(t.state)}`).join(', ')}${
    ms_.length > 0 ? `; ${ms_.map((m) => m.label).join('; ')}` : ''
  }`;
  return (
    <svg
      class="family-graph"
      role="img"
      aria-labelledby="family-graph-title family-graph-desc"
      viewBox={`0 0 ${width} ${height}`}
      width={width}
      height={height}
    >
      <title id="family-graph-title">Rotation family {props.familyId}</title>
      <desc id="family-graph-desc">{summary}</desc>
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto">
          <path d="M0,0 L10,5 L0,10 z" class="arrow-head" />
        </marker>
      </defs>
      <line class="axis" x1={MARGIN - 30} x2={width - 30} y1={axisY} y2={axisY} />
      {members.map((t, i) => {
        const next = t.successorId ? byId.get(t.successorId) : undefined;
        if (next === undefined) return null;
        return (
          <line
            class="edge"
            x1={nodeX[i]! + 22}
            y1={nodeY}
            x2={nodeX[next]! - 24}
            y2={nodeY}
            marker-end="url(#arrow)"
            data-edge={`${t.id}->${t.successorId}`}
          />
        );
      })}
      {members.map((t, i) => {
        const x = nodeX[i]!;
        const state = stateName(t.state);
        return (
          <g class={`node state-${state}`} data-node={t.id}>
            <circle cx={x} cy={nodeY} r={20} />
            <text x={x} y={nodeY + 42} text-anchor="middle" class="node-id">
              …{t.id.slice(-6)}
            </text>
            <text x={x} y={nodeY + 58} text-anchor="middle" class="node-state">
              {state}
            </text>
            {t.revokeReason && t.revokeReason !== 'rotated' && (
              <text x={x} y={nodeY + 74} text-anchor="middle" class="node-state">
                {t.revokeReason.replace('_', ' ')}
              </text>
            )}
            <line class="tick" x1={x} x2={x} y1={axisY - 5} y2={axisY + 5} />
            <text x={x} y={axisY + 20} text-anchor="middle" class="time">
              {axisLabel(ms(t.createdAt) ?? 0, multiDay)}
            </text>
          </g>
        );
      })}
      {ms_.map((m, i) => {
        const x = markX[i]!;
        return (
          <g class={`mark mark-${m.kind}`} data-mark={m.kind}>
            <line x1={x} x2={x} y1={20} y2={axisY} />
            <text x={x} y={16} text-anchor="middle">
              {m.label}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/** A rotation family: the graph, then its members as a table. Reloads when live events arrive. */
export function FamilyView(props: { session: Session; familyId: string; refresh: number; open: (id: string) => void }) {
  const { session, familyId } = props;
  const [tokens, setTokens] = useState<Token[]>([]);
  const [events, setEvents] = useState<AuditEvent[]>([]);
  const [error, setError] = useState<string>();
  useEffect(() => {
    let stale = false;
    Promise.all([
      session.tokens.listTokens({ familyId, pageSize: 500 }),
      session.tokens.listEvents({ familyId, types: ['family_revoked'], pageSize: 500 }),
    ]).then(
      ([t, e]) => {
        if (stale) return;
        setTokens(t.tokens);
        setEvents(e.events);
        setError(undefined);
      },
      (e: unknown) => !stale && setError(errorText(e)),
    );
    return () => {
      stale = true;
    };
  }, [session, familyId, props.refresh]);
  const members = chain(tokens);
  return (
    <section aria-labelledby="family-title">
      <h1 id="family-title">
        Family <code>{familyId}</code>
      </h1>
      <ErrorNote error={error} />
      <Scroll label="Family graph">
        <FamilyGraph tokens={tokens} events={events} familyId={familyId} />
      </Scroll>
      <Scroll label="Family members">
        <table>
          <thead>
            <tr>
              <th scope="col">Token</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">Rotated</th>
              <th scope="col">Revoked</th>
            </tr>
          </thead>
          <tbody>
            {members.map((t) => (
              <tr key={t.id}>
                <td>
                  <button type="button" class="link" onClick={() => props.open(t.id)}>
                    {t.id}
                  </button>
                </td>
                <td>
                  <StateBadge state={t.state} />
                  {t.revokeReason && ` (${t.revokeReason})`}
                </td>
                <td>{iso(ms(t.createdAt))}</td>
                <td>{iso(ms(t.rotatedAt))}</td>
                <td>{iso(ms(t.revokedAt))}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
    </section>
  );
}
