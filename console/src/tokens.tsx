import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { useEffect, useState } from 'preact/hooks';
import { TokenKind, TokenState, type Token } from '../../src/gen/rotor/v1/token_pb.js';
import type { Session } from './api.js';
import { errorText, iso, KINDS, kindName, ms, relative, STATES, stateName } from './format.js';
import { ErrorNote, Scroll, SecretOnce } from './widgets.js';

export interface TokenFilter {
  owner: string;
  kind: string;
  state: string;
}

/** Whether a live token expires within the widest expiry threshold of the server (24 h without one). */
export function nearExpiry(t: Token, now: number, thresholds: number[]): boolean {
  const exp = ms(t.expiresAt);
  if (exp === undefined || t.state !== TokenState.ACTIVE) return false;
  const window = (thresholds.length > 0 ? Math.max(...thresholds) : 86_400) * 1000;
  return exp - now <= window;
}

export function StateBadge(props: { state: TokenState }) {
  const name = stateName(props.state);
  return <span class={`badge state-${name}`}>{name}</span>;
}

/**
 * The tokens the signed-in token may see (ListTokens), filtered by owner, kind and state, one page
 * at a time; tokens near expiry are marked in words and colour.
 */
export function TokensView(props: {
  session: Session;
  filter: TokenFilter;
  onFilter: (f: TokenFilter) => void;
  tokens: Token[];
  onTokens: (t: Token[]) => void;
  thresholds: number[];
  refresh: number;
  open: (id: string) => void;
}) {
  const { session, filter } = props;
  const [draft, setDraft] = useState(filter);
  const [pages, setPages] = useState<string[]>(['']);
  const [next, setNext] = useState('');
  const [error, setError] = useState<string>();
  const [creating, setCreating] = useState(false);
  const [minted, setMinted] = useState<{ id: string; secret: string }>();
  const pageToken = pages[pages.length - 1] ?? '';

  useEffect(() => {
    let stale = false;
    session.tokens
      .listTokens({
        ownerId: filter.owner,
        kind: KINDS.find(([n]) => n === filter.kind)?.[1] ?? TokenKind.UNSPECIFIED,
        state: STATES.find(([n]) => n === filter.state)?.[1] ?? TokenState.UNSPECIFIED,
        pageSize: 20,
        pageToken,
      })
      .then(
        (res) => {
          if (stale) return;
          props.onTokens(res.tokens);
          setNext(res.nextPageToken);
          setError(undefined);
        },
        (e: unknown) => !stale && setError(errorText(e)),
      );
    return () => {
      stale = true;
    };
  }, [session, filter, pageToken, props.refresh]);

  const now = Date.now();
  return (
    <section aria-labelledby="tokens-title">
      <h1 id="tokens-title">Tokens</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setPages(['']);
          // A new object: pressing Filter again reloads, even with the same filters.
          props.onFilter({ ...draft });
        }}
      >
        <label>
          Owner
          <input
            name="owner"
            value={draft.owner}
            placeholder={session.me.admin ? 'any owner' : session.me.ownerId}
            onInput={(e) => setDraft({ ...draft, owner: e.currentTarget.value.trim() })}
          />
        </label>
        <label>
          Kind
          <select name="kind" value={draft.kind} onChange={(e) => setDraft({ ...draft, kind: e.currentTarget.value })}>
            <option value="">any</option>
            {KINDS.map(([n]) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </label>
        <label>
          State
          <select
            name="state"
            value={draft.state}
            onChange={(e) => setDraft({ ...draft, state: e.currentTarget.value })}
          >
            <option value="">any</option>
            {STATES.map(([n]) => (
              <option value={n}>{n}</option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
        <button type="button" onClick={() => setCreating(!creating)} aria-expanded={creating}>
          Create token
        </button>
      </form>
      {creating && (
        <CreateForm
          session={session}
          onCreated={(m) => {
            setCreating(false);
            setMinted(m);
            props.onFilter({ ...filter });
          }}
        />
      )}
      {minted && <SecretOnce tokenId={minted.id} secret={minted.secret} onDismiss={() => setMinted(undefined)} />}
      <ErrorNote error={error} />
      <Scroll label="Tokens">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Kind</th>
              <th scope="col">Owner</th>
              <th scope="col">State</th>
              <th scope="col">Expires</th>
            </tr>
          </thead>
          <tbody>
            {props.tokens.map((t) => {
              const soon = nearExpiry(t, now, props.thresholds);
              return (
                <tr key={t.id} class={soon ? 'soon' : undefined}>
                  <td>
                    <button type="button" class="link" onClick={() => props.open(t.id)}>
                      {t.name}
                    </button>
                  </td>
                  <td>
                    <code>{t.id}</code>
                  </td>
                  <td>{kindName(t.kind)}</td>
                  <td>{t.ownerId}</td>
                  <td>
                    <StateBadge state={t.state} />
                  </td>
                  <td title={iso(ms(t.expiresAt))}>
                    {relative(ms(t.expiresAt), now)}
                    {soon && <span class="badge soon-badge">expires soon</span>}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Scroll>
      {props.tokens.length === 0 && !error && <p>No tokens match.</p>}
      <nav class="pager" aria-label="Pages of tokens">
        <button type="button" disabled={pages.length === 1} onClick={() => setPages(pages.slice(0, -1))}>
          Previous page
        </button>
        <span>Page {pages.length}</span>
        <button type="button" disabled={next === ''} onClick={() => setPages([...pages, next])}>
          Next page
        </button>
      </nav>
    </section>
  );
}

/** CreateToken: the answer's secret is shown once by the caller. */
function CreateForm(props: { session: Session; onCreated: (m: { id: string; secret: string }) => void }) {
  const { me } = props.session;
  const [error, setError] = useState<string>();
  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    const text = (k: string) => String(f.get(k) ?? '').trim();
    const days = Number(text('days'));
    try {
      const res = await props.session.tokens.createToken({
        kind: KINDS.find(([n]) => n === text('kind'))?.[1] ?? TokenKind.PERSONAL,
        ownerId: text('owner'),
        name: text('name'),
        description: text('description'),
        scopes: text('scopes')
          .split(/[\s,]+/)
          .filter((s) => s !== ''),
        expiresAt: timestampFromMs(Date.now() + days * 86_400_000),
      });
      props.onCreated({ id: res.token?.id ?? '', secret: res.secret });
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <form class="create" onSubmit={(e) => void submit(e)} aria-labelledby="create-title">
      <h2 id="create-title">Create a token</h2>
      <label>
        Owner id
        <input name="owner" required defaultValue={me.admin ? '' : me.ownerId} />
      </label>
      <label>
        Name
        <input name="name" required maxLength={128} />
      </label>
      <label>
        Kind
        <select name="kind">
          {KINDS.map(([n]) => (
            <option value={n}>{n}</option>
          ))}
        </select>
      </label>
      <label>
        Scopes (space separated)
        <input name="scopes" />
      </label>
      <label>
        Lifetime in days
        <input name="days" type="number" min={1} max={3650} required defaultValue="30" />
      </label>
      <label>
        Description
        <input name="description" maxLength={1024} />
      </label>
      <button type="submit">Create</button>
      <ErrorNote error={error} />
    </form>
  );
}
