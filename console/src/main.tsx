import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Token } from '../../src/gen/rotor/v1/token_pb.js';
import { ExpiryEventType, type ExpiryEvent } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { loadSettings, signIn, type ConsoleSettings, type Session } from './api.js';
import { AuditView, NO_AUDIT_FILTER, type AuditFilter } from './audit.js';
import { ExpiryView } from './expiry.js';
import { FamilyView } from './family.js';
import { errorText, iso, ms } from './format.js';
import { TokenView } from './token.js';
import { TokensView, type TokenFilter } from './tokens.js';
import { ErrorNote, Scroll } from './widgets.js';

type View =
  | { name: 'tokens' }
  | { name: 'token'; id: string }
  | { name: 'family'; familyId: string }
  | { name: 'expiry' }
  | { name: 'live' }
  | { name: 'audit' };

/** What WatchExpiry selects: the open family, else the owner of the tokens view (the caller's own by default). */
type Selection = { familyId: string } | { ownerId: string };

interface Live {
  status: 'connecting' | 'live' | 'reconnecting';
  lastSequence: bigint | undefined;
  events: ExpiryEvent[];
  detail?: string;
}

function SignIn(props: { onSession: (s: Session) => void }) {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <main class="signin">
      <h1>Rotor console</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const input = form.elements.namedItem('token') as HTMLInputElement;
          const token = input.value.trim();
          // The field is emptied at once: the token lives only in the session's closure from here on.
          input.value = '';
          setBusy(true);
          signIn(token).then(props.onSession, (err: unknown) => {
            setBusy(false);
            setError(errorText(err));
          });
        }}
      >
        <label for="token">Token</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck={false} required />
        <p class="hint">
          Paste a Rotor token. The console keeps it in memory only and sends it as the bearer of each call; signing out
          or reloading the page forgets it.
        </p>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <ErrorNote error={error} />
      </form>
    </main>
  );
}

const EVENT_NAMES: Record<number, string> = {
  [ExpiryEventType.SNAPSHOT]: 'snapshot',
  [ExpiryEventType.EXPIRING_SOON]: 'expiring_soon',
  [ExpiryEventType.EXPIRED]: 'expired',
  [ExpiryEventType.ROTATED]: 'rotated',
  [ExpiryEventType.REVOKED]: 'revoked',
  [ExpiryEventType.FAMILY_REVOKED]: 'family_revoked',
  [ExpiryEventType.REPLAYED]: 'replayed',
  [ExpiryEventType.RETRY_REFUSED]: 'retry_refused',
};

function LiveView(props: { live: Live; selection: Selection }) {
  const { live } = props;
  const what =
    'familyId' in props.selection ? `family ${props.selection.familyId}` : `owner ${props.selection.ownerId}`;
  return (
    <section aria-labelledby="live-title">
      <h1 id="live-title">Live events</h1>
      <p role="status" class={`live-status live-${live.status}`}>
        WatchExpiry for {what}: {live.status}
        {live.lastSequence !== undefined && `, last sequence ${live.lastSequence}`}
        {live.detail && ` (${live.detail})`}
      </p>
      <Scroll label="Live events">
        <table>
          <thead>
            <tr>
              <th scope="col">Seq</th>
              <th scope="col">Time</th>
              <th scope="col">Event</th>
              <th scope="col">Token</th>
              <th scope="col">Detail</th>
            </tr>
          </thead>
          <tbody>
            {live.events.map((e) => (
              <tr key={String(e.sequence)}>
                <td>{String(e.sequence)}</td>
                <td>{iso(ms(e.occurredAt))}</td>
                <td>{EVENT_NAMES[e.type] ?? String(e.type)}</td>
                <td>
                  <code>{e.tokenId}</code>
                </td>
                <td>{[e.successorId && `→ ${e.successorId}`, e.reason].filter(Boolean).join(' · ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
      {live.events.length === 0 && <p>No events since the page opened.</p>}
    </section>
  );
}

/**
 * One WatchExpiry stream for the selection while signed in: each event is kept for the live view
 * and bumps `refresh`, so the open view reloads without a page reload. A dropped stream reconnects
 * after a second with `after_sequence`, so nothing is missed or repeated.
 */
function useWatch(session: Session | undefined, selection: Selection, onEvent: () => void): Live {
  const [live, setLive] = useState<Live>({ status: 'connecting', lastSequence: undefined, events: [] });
  const key = JSON.stringify(selection);
  useEffect(() => {
    if (!session) return;
    const abort = new AbortController();
    let after: bigint | undefined;
    // The events shown so far stay: a new selection adds its own from now on.
    setLive((l) => ({ ...l, status: 'connecting', detail: undefined }));
    void (async () => {
      while (!abort.signal.aborted) {
        try {
          // A first stream asks for a snapshot: its sequence is where a reconnection resumes
          // when no event has come yet (docs/watch-expiry.md); later ones resume after the last seen.
          const stream = session.expiry.watchExpiry(
            { ...selection, ...(after === undefined ? { includeSnapshot: true } : { afterSequence: after }) },
            { signal: abort.signal },
          );
          setLive((l) => ({ ...l, status: 'live', detail: undefined }));
          for await (const e of stream) {
            if (e.type === ExpiryEventType.HEARTBEAT || e.type === ExpiryEventType.SNAPSHOT) {
              if (after === undefined || e.sequence > after) after = e.sequence;
              continue;
            }
            after = e.sequence;
            setLive((l) => ({
              ...l,
              lastSequence: e.sequence,
              events: l.events.some((x) => x.sequence === e.sequence && x.tokenId === e.tokenId)
                ? l.events
                : [e, ...l.events].slice(0, 200),
            }));
            onEvent();
          }
        } catch (e) {
          if (abort.signal.aborted) return;
          setLive((l) => ({ ...l, status: 'reconnecting', detail: errorText(e) }));
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    return () => abort.abort();
  }, [session, key]);
  return live;
}

function App() {
  const [session, setSession] = useState<Session>();
  const [settings, setSettings] = useState<ConsoleSettings>({ expiry_thresholds_seconds: [] });
  const [view, setView] = useState<View>({ name: 'tokens' });
  const [filter, setFilter] = useState<TokenFilter>({ owner: '', kind: '', state: '' });
  const [auditFilter, setAuditFilter] = useState<AuditFilter>(NO_AUDIT_FILTER);
  const [tokens, setTokens] = useState<Token[]>([]);
  const [refresh, setRefresh] = useState(0);

  useEffect(() => {
    void loadSettings().then(setSettings);
  }, []);

  const selection: Selection =
    view.name === 'family' ? { familyId: view.familyId } : { ownerId: filter.owner || session?.me.ownerId || '' };
  const live = useWatch(session, selection, () => setRefresh((n) => n + 1));

  if (!session) return <SignIn onSession={setSession} />;
  const signOut = () => {
    setSession(undefined);
    setTokens([]);
    setView({ name: 'tokens' });
    setFilter({ owner: '', kind: '', state: '' });
    setAuditFilter(NO_AUDIT_FILTER);
  };
  const thresholds = settings.expiry_thresholds_seconds;
  const open = (id: string) => setView({ name: 'token', id });
  const tab = (name: View['name'], label: string) => (
    <button
      type="button"
      aria-current={view.name === name ? 'page' : undefined}
      onClick={() => setView({ name } as View)}
    >
      {label}
    </button>
  );
  return (
    <>
      <header>
        <span class="brand">Rotor</span>
        <nav aria-label="Views">
          {tab('tokens', 'Tokens')}
          {tab('expiry', 'Expiry')}
          {tab('live', 'Live')}
          {tab('audit', 'Audit')}
        </nav>
        <span class="me">
          <code>{session.me.tokenId}</code> · {session.me.ownerId}
          {session.me.admin ? ' · admin' : ''}
          <span class={`dot live-${live.status}`} title={`live updates: ${live.status}`} />
        </span>
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {view.name === 'tokens' && (
          <TokensView
            session={session}
            filter={filter}
            onFilter={setFilter}
            tokens={tokens}
            onTokens={setTokens}
            thresholds={thresholds}
            refresh={refresh}
            open={open}
          />
        )}
        {view.name === 'token' && (
          <TokenView
            session={session}
            id={view.id}
            refresh={refresh}
            open={open}
            openFamily={(familyId) => setView({ name: 'family', familyId })}
            openAudit={(tokenId) => {
              setAuditFilter({ ...NO_AUDIT_FILTER, tokenId });
              setView({ name: 'audit' });
            }}
          />
        )}
        {view.name === 'family' && (
          <FamilyView session={session} familyId={view.familyId} refresh={refresh} open={open} />
        )}
        {view.name === 'expiry' && <ExpiryView tokens={tokens} thresholds={thresholds} />}
        {view.name === 'live' && <LiveView live={live} selection={selection} />}
        {view.name === 'audit' && (
          <AuditView session={session} filter={auditFilter} onFilter={setAuditFilter} refresh={refresh} />
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
