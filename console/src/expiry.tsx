import { TokenState, type Token } from '../../src/gen/rotor/v1/token_pb.js';
import { duration, iso, ms, relative } from './format.js';
import { Scroll } from './widgets.js';

const DAY = 86_400_000;

/**
 * Upcoming expiries of the live tokens in view (the current page of the tokens view) on a time
 * axis from now, with a line at each of the server's EXPIRING_SOON thresholds.
 */
export function ExpiryView(props: { tokens: Token[]; thresholds: number[] }) {
  const now = Date.now();
  const live = props.tokens
    .filter((t) => t.state === TokenState.ACTIVE && ms(t.expiresAt) !== undefined)
    .sort((a, b) => ms(a.expiresAt)! - ms(b.expiresAt)!);
  const widest = props.thresholds.length > 0 ? Math.max(...props.thresholds) * 1000 : DAY;
  const last = live.length > 0 ? ms(live[live.length - 1]!.expiresAt)! - now : 0;
  const horizon = Math.max(widest * 1.25, Math.min(last * 1.05, 400 * DAY), 3_600_000);
  const left = 220;
  const right = 980;
  const x = (t: number) => left + ((t - now) / horizon) * (right - left);
  const rowH = 26;
  const top = 40;
  const height = top + Math.max(1, live.length) * rowH + 30;
  return (
    <section aria-labelledby="expiry-title">
      <h1 id="expiry-title">Expiry timeline</h1>
      <p>
        Live tokens of the tokens view, by expiry. Server thresholds:{' '}
        {props.thresholds.length > 0 ? props.thresholds.map(duration).join(', ') : 'none'}.
      </p>
      <Scroll label="Expiry timeline">
        <svg
          class="timeline"
          role="img"
          aria-labelledby="timeline-title"
          viewBox={`0 0 1000 ${height}`}
          width={1000}
          height={height}
        >
          <title id="timeline-title">
            {live.length} token(s) expiring between now and {iso(now + horizon)}
          </title>
          <line class="axis" x1={left} x2={right} y1={top - 10} y2={top - 10} />
          <text x={left} y={top - 16} class="time">
            now
          </text>
          {props.thresholds.map((s) => {
            const tx = x(now + s * 1000);
            return (
              <g class="threshold" data-threshold={s}>
                <line x1={tx} x2={tx} y1={top - 14} y2={height - 10} />
                <text x={tx} y={height - 2} text-anchor="middle">
                  {duration(s)}
                </text>
              </g>
            );
          })}
          {live.map((t, i) => {
            const exp = ms(t.expiresAt)!;
            const y = top + i * rowH + rowH / 2;
            const soon = props.thresholds.some((s) => exp - now <= s * 1000);
            return (
              <g class={soon ? 'expiry soon' : 'expiry'} data-token={t.id}>
                <text x={left - 10} y={y + 4} text-anchor="end" class="label">
                  {t.name.length > 28 ? `${t.name.slice(0, 27)}…` : t.name}
                </text>
                <line x1={left} x2={Math.min(x(exp), right)} y1={y} y2={y} class="bar" />
                <circle class="when" cx={Math.min(x(exp), right)} cy={y} r={5} />
              </g>
            );
          })}
        </svg>
      </Scroll>
      <Scroll label="Upcoming expiries">
        <table>
          <thead>
            <tr>
              <th scope="col">Token</th>
              <th scope="col">Owner</th>
              <th scope="col">Expires</th>
              <th scope="col">In</th>
            </tr>
          </thead>
          <tbody>
            {live.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>{t.ownerId}</td>
                <td>{iso(ms(t.expiresAt))}</td>
                <td>{relative(ms(t.expiresAt), now)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
    </section>
  );
}
