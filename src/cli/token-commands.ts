import { timestampDate, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { parseArgs } from 'node:util';
import { KIND_TO_PB, STATE_TO_PB } from '../api/token-mapping.js';
import { TokenKind, TokenState, type Token, type WorkloadBinding } from '../gen/rotor/v1/token_pb.js';
import { JWT_TOKEN_TYPE, readActorTokenFile } from './actor-token.js';
import { tokenClient } from './client.js';
import { loadDpopKey } from './dpop-key.js';
import { parseDuration, positiveDuration } from './duration.js';
import {
  type FlagTable,
  TOKEN_CREATE_FLAGS,
  TOKEN_GET_FLAGS,
  TOKEN_LIST_FLAGS,
  TOKEN_REVOKE_FLAGS,
  TOKEN_ROTATE_FLAGS,
} from './flag-tables.js';
import { defaultServerUrl } from './server-url.js';
import { UsageError } from './usage-error.js';

const KINDS: Readonly<Record<string, TokenKind>> = KIND_TO_PB;
const STATES: Readonly<Record<string, TokenState>> = STATE_TO_PB;

/** The enum value for a name given on the command line; own keys only (`--kind constructor` is no kind). */
function lookup<T extends number>(table: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

function name<T extends number>(table: Readonly<Record<string, T>>, value: T): string {
  return Object.keys(table).find((k) => table[k] === value) ?? 'unspecified';
}

function tokenJson(t: Token | undefined): Record<string, unknown> {
  if (!t) return {};
  const iso = (ts: typeof t.createdAt) => (ts ? timestampDate(ts).toISOString() : null);
  return {
    id: t.id,
    family_id: t.familyId,
    previous_id: t.previousId || null,
    successor_id: t.successorId || null,
    kind: name(KINDS, t.kind),
    owner_id: t.ownerId,
    name: t.name,
    description: t.description,
    scopes: t.scopes,
    audiences: t.audiences,
    state: name(STATES, t.state),
    created_at: iso(t.createdAt),
    expires_at: iso(t.expiresAt),
    revoked_at: iso(t.revokedAt),
    revoke_reason: t.revokeReason || null,
    rotated_at: iso(t.rotatedAt),
    last_used_at: iso(t.lastUsedAt),
    display_prefix: t.displayPrefix,
    workload_binding: bindingJson(t.policy?.workloadBinding),
    parent_id: t.parentId || null,
    retire_on_first_use: t.policy?.retireOnFirstUse === true ? true : null,
    dpop_jkt: t.policy?.dpopJkt || null,
  };
}

function bindingJson(b: WorkloadBinding | undefined): Record<string, unknown> | null {
  return b ? { issuer: b.issuer, subject: b.subject, audience: b.audience, claims: { ...b.claims } } : null;
}

function printToken(t: Token | undefined, secret: string | undefined, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(secret === undefined ? tokenJson(t) : { token: tokenJson(t), secret })}\n`);
    return;
  }
  const j = tokenJson(t);
  for (const [k, v] of Object.entries(j)) {
    if (v === null || (Array.isArray(v) && v.length === 0) || v === '') continue;
    const text = Array.isArray(v) ? v.join(' ') : typeof v === 'object' ? JSON.stringify(v) : String(v);
    process.stdout.write(`${k.padEnd(14)} ${text}\n`);
  }
  if (secret !== undefined) process.stdout.write(`${'secret'.padEnd(14)} ${secret}\n(shown once: store it now)\n`);
}

function expiry(values: { 'expires-in'?: string; 'expires-at'?: string }) {
  if (values['expires-at']) {
    const ms = Date.parse(values['expires-at']);
    if (Number.isNaN(ms)) throw new UsageError('--expires-at must be an ISO 8601 date-time');
    return timestampFromMs(ms);
  }
  if (values['expires-in']) {
    const s = parseDuration(values['expires-in']);
    if (s === undefined) throw new UsageError('--expires-in must look like 90s, 15m, 12h or 30d');
    return timestampFromMs(Date.now() + s * 1000);
  }
  return undefined;
}

/**
 * `--bind-issuer/--bind-subject/--bind-audience [--bind-claim name=value …]`: a workload binding
 * (docs/workload-identity.md), all three or none; the server validates the values.
 */
function bindingOf(values: {
  'bind-issuer'?: string;
  'bind-subject'?: string;
  'bind-audience'?: string;
  'bind-claim': string[];
}) {
  const { 'bind-issuer': issuer, 'bind-subject': subject, 'bind-audience': audience } = values;
  if (issuer === undefined && subject === undefined && audience === undefined && values['bind-claim'].length === 0)
    return undefined;
  if (!issuer || !subject || !audience)
    throw new UsageError('--bind-issuer, --bind-subject and --bind-audience go together');
  const claims: Record<string, string> = {};
  for (const c of values['bind-claim']) {
    const at = c.indexOf('=');
    if (at <= 0) throw new UsageError('--bind-claim must look like name=value');
    claims[c.slice(0, at)] = c.slice(at + 1);
  }
  return { issuer, subject, audience, claims };
}

/**
 * The workload JWT for a bound token's rotation, from the file named by `--actor-token-file` or
 * from ROTOR_ACTOR_TOKEN; never a command-line value, which other users could read in the
 * process list.
 */
async function actorTokenOf(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<{ actorToken: string; actorTokenType: string } | undefined> {
  if (file !== undefined) return readActorTokenFile(file);
  const jwt = env.ROTOR_ACTOR_TOKEN?.trim();
  return jwt ? { actorToken: jwt, actorTokenType: JWT_TOKEN_TYPE } : undefined;
}

/** The policy flags of `token create` (durations) as a TokenPolicy; undefined fields stay the server's defaults. */
function policyOf(values: {
  overlap?: string;
  'reuse-grace'?: string;
  'default-lifetime'?: string;
  'max-lifetime'?: string;
}) {
  const seconds = (flag: keyof typeof values, positive: boolean): bigint | undefined => {
    const text = values[flag];
    if (text === undefined) return undefined;
    if (positive) return BigInt(positiveDuration(text, `--${flag}`));
    const s = parseDuration(text);
    if (s === undefined) throw new UsageError(`--${flag} must be a duration like 0, 10s, 15m, 12h or 30d`);
    return BigInt(s);
  };
  return {
    overlapSeconds: seconds('overlap', false),
    reuseGraceSeconds: seconds('reuse-grace', false),
    defaultLifetimeSeconds: seconds('default-lifetime', true),
    maxLifetimeSeconds: seconds('max-lifetime', true),
  };
}

/** Parses a subcommand's flags with its table (src/cli/flag-tables.ts), the same one `--help` prints. */
function parse<T extends FlagTable>(table: T, args: string[]) {
  return parseArgs({ args, options: table, allowPositionals: true, strict: true });
}

/** `rotor token create|get|list|rotate|revoke` against a running server over Connect. */
export async function tokenCommand(args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const [sub, ...rest] = args;
  const client = async (server: string | undefined, dpopKeyFile?: string, createKey = false) =>
    tokenClient(
      server ?? defaultServerUrl(env),
      env.ROTOR_TOKEN,
      dpopKeyFile === undefined ? undefined : await loadDpopKey(dpopKeyFile, createKey),
    );
  switch (sub) {
    case 'create': {
      const { values } = parse(TOKEN_CREATE_FLAGS, rest);
      const kind = lookup(KINDS, values.kind ?? 'personal');
      if (kind === undefined) throw new UsageError(`--kind must be one of ${Object.keys(KINDS).join(', ')}`);
      if (!values.owner || !values.name) throw new UsageError('--owner and --name are required');
      const expiresAt = expiry(values);
      if (expiresAt === undefined) throw new UsageError('--expires-in or --expires-at is required');
      const workloadBinding = bindingOf(values);
      if (values['dpop-key-file'] !== undefined && values['dpop-jkt'] !== undefined)
        throw new UsageError('--dpop-key-file and --dpop-jkt both name the key: give one');
      const key = values['dpop-key-file'] === undefined ? undefined : await loadDpopKey(values['dpop-key-file'], true);
      const dpopJkt = key?.jkt ?? values['dpop-jkt'];
      const policy = {
        ...policyOf(values),
        ...(workloadBinding && { workloadBinding }),
        ...(dpopJkt && { dpopJkt }),
        ...(values['retire-on-first-use'] && { retireOnFirstUse: true }),
      };
      const hasPolicy = Object.values(policy).some((v) => v !== undefined);
      const server = values.server ?? defaultServerUrl(env);
      const res = await tokenClient(server, env.ROTOR_TOKEN, key).createToken({
        kind,
        ownerId: values.owner,
        name: values.name,
        description: values.description,
        scopes: values.scope,
        audiences: values.audience,
        expiresAt,
        ...(hasPolicy && { policy }),
      });
      printToken(res.token, res.secret, values.json);
      return;
    }
    case 'get': {
      const { values, positionals } = parse(TOKEN_GET_FLAGS, rest);
      const id = positionals[0];
      if (!id) throw new UsageError('usage: rotor token get ID');
      printToken(
        (await (await client(values.server, values['dpop-key-file'])).getToken({ id })).token,
        undefined,
        values.json,
      );
      return;
    }
    case 'list': {
      const { values } = parse(TOKEN_LIST_FLAGS, rest);
      const state = values.state === undefined ? TokenState.UNSPECIFIED : lookup(STATES, values.state);
      if (state === undefined) throw new UsageError(`--state must be one of ${Object.keys(STATES).join(', ')}`);
      const kind = values.kind === undefined ? TokenKind.UNSPECIFIED : lookup(KINDS, values.kind);
      if (kind === undefined) throw new UsageError(`--kind must be one of ${Object.keys(KINDS).join(', ')}`);
      const res = await (await client(values.server, values['dpop-key-file'])).listTokens({
        ownerId: values.owner ?? '',
        kind,
        familyId: values.family ?? '',
        state,
        pageSize: values['page-size'] ? Number(values['page-size']) : 0,
        pageToken: values['page-token'],
      });
      if (values.json) {
        process.stdout.write(
          `${JSON.stringify({ tokens: res.tokens.map(tokenJson), next_page_token: res.nextPageToken })}\n`,
        );
        return;
      }
      for (const t of res.tokens) {
        const j = tokenJson(t);
        process.stdout.write(
          `${t.id}  ${String(j.state).padEnd(8)} ${String(j.kind).padEnd(16)} ${t.ownerId}  ${t.name}  expires ${String(j.expires_at)}\n`,
        );
      }
      if (res.nextPageToken) process.stdout.write(`next page: --page-token ${res.nextPageToken}\n`);
      return;
    }
    case 'rotate': {
      const { values, positionals } = parse(TOKEN_ROTATE_FLAGS, rest);
      const res = await (await client(values.server, values['dpop-key-file'])).rotateToken({
        id: positionals[0] ?? '',
        idempotencyKey: values['idempotency-key'],
        scopes: values.scope,
        expiresAt: expiry(values),
        ...(await actorTokenOf(values['actor-token-file'], env)),
      });
      printToken(res.token, res.secret, values.json);
      return;
    }
    case 'revoke': {
      const { values, positionals } = parse(TOKEN_REVOKE_FLAGS, rest);
      const id = positionals[0];
      if (!id) throw new UsageError('usage: rotor token revoke ID');
      const cascade = values.cascade;
      const dryRun = values['dry-run'];
      const res = await (await client(values.server, values['dpop-key-file'])).revokeToken({ id, cascade, dryRun });
      if (!cascade && !dryRun) {
        printToken(res.token, undefined, values.json);
        return;
      }
      if (values.json) {
        process.stdout.write(
          `${JSON.stringify({
            token: tokenJson(res.token),
            cascade_revoked_count: res.cascadeRevokedCount,
            ...(dryRun && { dry_run_token_ids: res.dryRunTokenIds, truncated: res.truncated }),
          })}\n`,
        );
        return;
      }
      printToken(res.token, undefined, false);
      if (dryRun) {
        process.stdout.write(`would revoke ${res.dryRunTokenIds.length}${res.truncated ? '+' : ''} tokens:\n`);
        for (const t of res.dryRunTokenIds) process.stdout.write(`${t}\n`);
      } else process.stdout.write(`${'cascade'.padEnd(14)} ${res.cascadeRevokedCount} descendant tokens revoked\n`);
      return;
    }
    default:
      throw new UsageError('usage: rotor token create|get|list|rotate|revoke [options]');
  }
}
