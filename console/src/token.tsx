import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { TokenState, type Token } from '../../src/gen/rotor/v1/token_pb.js';
import { newIdempotencyKey, type Session } from './api.js';
import { duration, errorText, iso, kindName, ms, relative } from './format.js';
import { StateBadge } from './tokens.js';
import { Confirm, ErrorNote, SecretOnce } from './widgets.js';

type Action = 'rotate' | 'revoke' | 'revoke-family' | 'revoke-cascade';

/** What a cascade would revoke (a dry run of RevokeFamily with cascade): shown before it is confirmed. */
interface CascadePreview {
  inFamily: number;
  descendants: number;
  ids: string[];
  truncated: boolean;
}

function Row(props: { name: string; children: ComponentChildren }) {
  return (
    <>
      <dt>{props.name}</dt>
      <dd>{props.children}</dd>
    </>
  );
}

/** A policy duration: `30d`, `10s`; zero as `zero` says (the default lifetime's zero means "the predecessor's"). */
function seconds(v: bigint | undefined, zero = '0 s'): string {
  if (v === undefined) return 'server default';
  return v === 0n ? zero : duration(Number(v));
}

/** One token: metadata, policy, binding; rotate, revoke and revoke its family behind a confirmation. */
export function TokenView(props: {
  session: Session;
  id: string;
  refresh: number;
  open: (id: string) => void;
  openFamily: (familyId: string) => void;
  openAudit: (tokenId: string) => void;
}) {
  const { session, id } = props;
  const [token, setToken] = useState<Token>();
  const [error, setError] = useState<string>();
  const [asking, setAsking] = useState<Action>();
  const [minted, setMinted] = useState<{ id: string; secret: string }>();
  const [done, setDone] = useState<string>();
  const [preview, setPreview] = useState<CascadePreview>();
  const [reload, setReload] = useState(0);

  useEffect(() => {
    let stale = false;
    session.tokens.getToken({ id }).then(
      (res) => {
        if (stale) return;
        setToken(res.token);
        setError(undefined);
      },
      (e: unknown) => !stale && setError(errorText(e)),
    );
    return () => {
      stale = true;
    };
  }, [session, id, props.refresh, reload]);

  const act = async (action: Action) => {
    setAsking(undefined);
    if (!token) return;
    try {
      if (action === 'rotate') {
        const res = await session.tokens.rotateToken({ id: token.id, idempotencyKey: newIdempotencyKey() });
        setMinted({ id: res.token?.id ?? '', secret: res.secret });
        setDone(`Rotated: ${token.id} is superseded by ${res.token?.id ?? ''}.`);
      } else if (action === 'revoke') {
        await session.tokens.revokeToken({ id: token.id });
        setDone(`Revoked ${token.id}.`);
      } else if (action === 'revoke-family') {
        const res = await session.tokens.revokeFamily({ familyId: token.familyId });
        setDone(`Revoked the family ${token.familyId}: ${res.revokedCount} token(s).`);
      } else {
        const res = await session.tokens.revokeFamily({ familyId: token.familyId, cascade: true });
        setDone(
          `Revoked the family ${token.familyId}: ${res.revokedCount} token(s), and ${res.cascadeRevokedCount} descendant token(s) with cascade.`,
        );
      }
      setError(undefined);
    } catch (e) {
      setError(errorText(e));
    }
    setReload((n) => n + 1);
  };

  // A dry run first: the confirmation states exactly what the cascade would revoke (docs/rotation.md).
  const askCascade = async () => {
    if (!token) return;
    try {
      const res = await session.tokens.revokeFamily({ familyId: token.familyId, cascade: true, dryRun: true });
      setPreview({
        inFamily: res.revokedCount,
        descendants: res.cascadeRevokedCount,
        ids: res.dryRunTokenIds,
        truncated: res.truncated,
      });
      setError(undefined);
      setAsking('revoke-cascade');
    } catch (e) {
      setError(errorText(e));
    }
  };

  if (!token) return <ErrorNote error={error} />;
  const now = Date.now();
  const policy = token.policy;
  const binding = policy?.workloadBinding;
  const live = token.state === TokenState.ACTIVE;
  return (
    <section aria-labelledby="token-title">
      <h1 id="token-title">
        Token <span class="name">{token.name}</span>
      </h1>
      <ErrorNote error={error} />
      {done && (
        <p class="status" role="status">
          {done}
        </p>
      )}
      {minted && <SecretOnce tokenId={minted.id} secret={minted.secret} onDismiss={() => setMinted(undefined)} />}
      <div class="actions">
        <button type="button" onClick={() => props.openFamily(token.familyId)}>
          Show family
        </button>
        <button type="button" onClick={() => props.openAudit(token.id)}>
          Show events
        </button>
        {token.successorId && (
          <button type="button" onClick={() => props.open(token.successorId)}>
            Go to successor
          </button>
        )}
        <button type="button" disabled={!live} onClick={() => setAsking('rotate')}>
          Rotate
        </button>
        <button type="button" class="danger" disabled={!live} onClick={() => setAsking('revoke')}>
          Revoke
        </button>
        <button type="button" class="danger" onClick={() => setAsking('revoke-family')}>
          Revoke family
        </button>
        <button type="button" class="danger" onClick={() => void askCascade()}>
          Revoke family and descendants…
        </button>
      </div>
      <dl class="fields">
        <Row name="Id">
          <code>{token.id}</code>
        </Row>
        <Row name="State">
          <StateBadge state={token.state} />
          {token.revokeReason && ` (${token.revokeReason})`}
        </Row>
        <Row name="Name">{token.name}</Row>
        <Row name="Description">{token.description || '—'}</Row>
        <Row name="Kind">{kindName(token.kind)}</Row>
        <Row name="Owner">{token.ownerId}</Row>
        <Row name="Family">
          <code>{token.familyId}</code>
        </Row>
        <Row name="Parent">{token.parentId ? <code>{token.parentId}</code> : '—'}</Row>
        <Row name="Previous">{token.previousId ? <code>{token.previousId}</code> : '—'}</Row>
        <Row name="Successor">{token.successorId ? <code>{token.successorId}</code> : '—'}</Row>
        <Row name="Scopes">{token.scopes.length > 0 ? token.scopes.join(' ') : '—'}</Row>
        <Row name="Audiences">{token.audiences.length > 0 ? token.audiences.join(' ') : 'unrestricted'}</Row>
        <Row name="Secret prefix">
          <code>{token.displayPrefix}</code>
        </Row>
        <Row name="Created">{iso(ms(token.createdAt))}</Row>
        <Row name="Expires">
          {iso(ms(token.expiresAt))} ({relative(ms(token.expiresAt), now)})
        </Row>
        <Row name="Rotated">{iso(ms(token.rotatedAt))}</Row>
        <Row name="Revoked">{iso(ms(token.revokedAt))}</Row>
        <Row name="Last used">{iso(ms(token.lastUsedAt))}</Row>
        <Row name="Overlap">{seconds(policy?.overlapSeconds)}</Row>
        <Row name="Reuse grace">{seconds(policy?.reuseGraceSeconds)}</Row>
        <Row name="Default lifetime">{seconds(policy?.defaultLifetimeSeconds, "the predecessor's lifetime")}</Row>
        <Row name="Max lifetime">{seconds(policy?.maxLifetimeSeconds)}</Row>
        <Row name="Retire on first use">{policy?.retireOnFirstUse ? 'yes' : 'no'}</Row>
        <Row name="DPoP binding">{policy?.dpopJkt ? <code>{policy.dpopJkt}</code> : 'none (bearer)'}</Row>
        <Row name="Workload binding">
          {binding
            ? `issuer ${binding.issuer}, subject ${binding.subject}, audience ${binding.audience}${Object.entries(
                binding.claims,
              )
                .map(([k, v]) => `, ${k}=${v}`)
                .join('')}`
            : 'none'}
        </Row>
      </dl>
      {asking === 'rotate' && (
        <Confirm
          title="Rotate this token?"
          confirmLabel="Rotate"
          consequence={
            <p>
              A successor is created and its secret shown here once. <code>{token.id}</code> stops working for rotation
              at once and for other calls when its overlap window ends; applications still holding it must switch to the
              successor.
            </p>
          }
          onConfirm={() => void act('rotate')}
          onCancel={() => setAsking(undefined)}
        />
      )}
      {asking === 'revoke' && (
        <Confirm
          title="Revoke this token?"
          confirmLabel="Revoke"
          consequence={
            <p>
              <code>{token.id}</code> ({token.name}) stops working immediately and cannot be restored. Anything that
              uses it will be refused.
            </p>
          }
          onConfirm={() => void act('revoke')}
          onCancel={() => setAsking(undefined)}
        />
      )}
      {asking === 'revoke-family' && (
        <Confirm
          title="Revoke the whole family?"
          confirmLabel="Revoke family"
          consequence={
            <p>
              Every token of family <code>{token.familyId}</code>, including the current one and any predecessor in its
              overlap window, stops working immediately and cannot be restored.
            </p>
          }
          onConfirm={() => void act('revoke-family')}
          onCancel={() => setAsking(undefined)}
        />
      )}
      {asking === 'revoke-cascade' && preview && (
        <Confirm
          title="Revoke the family and everything descended from it?"
          confirmLabel="Revoke with cascade"
          consequence={
            <div>
              <p>
                {preview.inFamily} token(s) of family <code>{token.familyId}</code> and {preview.descendants} token(s)
                of the families created by calls they authenticated (and so on down) stop working immediately and cannot
                be restored. A dry run found these:
              </p>
              <ul class="cascade-preview">
                {preview.ids.slice(0, 20).map((tokenId) => (
                  <li key={tokenId}>
                    <code>{tokenId}</code>
                  </li>
                ))}
              </ul>
              {(preview.ids.length > 20 || preview.truncated) && (
                <p>{preview.truncated ? '… and more.' : `… and ${preview.ids.length - 20} more.`}</p>
              )}
            </div>
          }
          onConfirm={() => void act('revoke-cascade')}
          onCancel={() => setAsking(undefined)}
        />
      )}
    </section>
  );
}
