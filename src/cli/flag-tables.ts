/**
 * The flags of every CLI command, in one table per command that is both what `parseArgs` parses
 * (node:util ignores the extra `value` and `help` keys) and what `rotor <command> --help` prints
 * (src/cli/help.ts), so the two cannot drift apart.
 */

/** One flag: the node:util parseArgs option, plus its placeholder and one line of help. */
export interface Flag {
  type: 'string' | 'boolean';
  multiple?: boolean;
  default?: string | boolean | string[];
  /** Placeholder of the value in the help text (string flags). */
  value?: string;
  help: string;
}

/** A command's flags, by long name without the dashes. */
export type FlagTable = Record<string, Flag>;

/** A command's help: how it is called, what it does, its flags. */
export interface CommandSpec {
  synopsis: string;
  summary: string;
  flags: FlagTable;
}

const server = {
  type: 'string',
  value: 'URL',
  help: 'the server (its HTTP port); default $ROTOR_SERVER, else http(s)://$ROTOR_HOST:$ROTOR_HTTP_PORT, else http://127.0.0.1:8080',
} satisfies Flag;
const json = { type: 'boolean', default: false, help: 'print JSON instead of text' } satisfies Flag;
const expiresIn = {
  type: 'string',
  value: 'D',
  help: 'lifetime from now: 90s, 15m, 12h, 30d',
} satisfies Flag;
const expiresAt = {
  type: 'string',
  value: 'TIME',
  help: 'expiry as an ISO 8601 date-time (instead of --expires-in)',
} satisfies Flag;

export const RECOVER_ADMIN_FLAGS = {
  owner: { type: 'string', default: 'admin', value: 'ID', help: 'owner id of the admin token (default admin)' },
  'expires-in': { type: 'string', default: '90d', value: 'D', help: 'lifetime of the admin token (default 90d)' },
} satisfies FlagTable;

export const BOOTSTRAP_FLAGS = {
  ...RECOVER_ADMIN_FLAGS,
  create: {
    type: 'boolean',
    default: false,
    help: 'allow a new SQLite database file (refused otherwise, so a wrong directory is noticed)',
  },
} satisfies FlagTable;

/** `--dpop-key-file`: the key that proves the caller's DPoP-bound token (docs/dpop.md). */
const dpopKeyFile = {
  type: 'string',
  value: 'PATH',
  help: 'EC P-256 private key (PKCS#8 PEM) proving a DPoP-bound ROTOR_TOKEN on every call (docs/dpop.md)',
} satisfies Flag;

export const TOKEN_CREATE_FLAGS = {
  server,
  json,
  'dpop-key-file': {
    ...dpopKeyFile,
    help: 'bind the new token to this EC P-256 key (PKCS#8 PEM, created with mode 0600 when absent); it also proves a bound ROTOR_TOKEN',
  },
  'dpop-jkt': {
    type: 'string',
    value: 'JKT',
    help: 'bind the new token to the key with this RFC 7638 SHA-256 thumbprint (docs/dpop.md)',
  },
  kind: {
    type: 'string',
    value: 'KIND',
    help: 'personal, project, group or service_account (default personal)',
  },
  owner: { type: 'string', value: 'ID', help: 'owner id (required)' },
  name: { type: 'string', value: 'NAME', help: 'name of the token (required)' },
  description: { type: 'string', default: '', value: 'TEXT', help: 'free text shown with the token' },
  scope: { type: 'string', multiple: true, default: [], value: 'SCOPE', help: 'a scope it holds (repeatable)' },
  audience: {
    type: 'string',
    multiple: true,
    default: [],
    value: 'AUD',
    help: 'an audience it is for (repeatable)',
  },
  'expires-in': { ...expiresIn, help: 'lifetime from now: 90s, 15m, 12h, 30d (this or --expires-at is required)' },
  'expires-at': expiresAt,
  overlap: {
    type: 'string',
    value: 'D',
    help: 'policy: how long a rotated token stays valid next to its successor (e.g. 1h; 0 none)',
  },
  'reuse-grace': {
    type: 'string',
    value: 'D',
    help: 'policy: how long after a rotation a second rotation is answered "already rotated" rather than revoking the family as reuse (e.g. 10s)',
  },
  'default-lifetime': {
    type: 'string',
    value: 'D',
    help: "policy: lifetime of each successor (default: the predecessor's)",
  },
  'max-lifetime': { type: 'string', value: 'D', help: 'policy: no token of the family lives longer than this' },
  'retire-on-first-use': {
    type: 'boolean',
    default: false,
    help: "policy: a rotated token stops working at its successor's first use, at the latest after --overlap (needs --overlap > 0)",
  },
  'bind-issuer': {
    type: 'string',
    value: 'URL',
    help: 'bind to a workload: the JWT issuer (with --bind-subject and --bind-audience; docs/workload-identity.md)',
  },
  'bind-subject': { type: 'string', value: 'PATTERN', help: "bind to a workload: the JWT's sub (* wildcards)" },
  'bind-audience': { type: 'string', value: 'AUD', help: "bind to a workload: the JWT's aud" },
  'bind-claim': {
    type: 'string',
    multiple: true,
    default: [],
    value: 'NAME=VALUE',
    help: 'bind to a workload: a claim the JWT must carry (repeatable)',
  },
} satisfies FlagTable;

export const TOKEN_GET_FLAGS = { server, json, 'dpop-key-file': dpopKeyFile } satisfies FlagTable;

export const TOKEN_LIST_FLAGS = {
  server,
  json,
  'dpop-key-file': dpopKeyFile,
  owner: { type: 'string', value: 'ID', help: 'only this owner id' },
  kind: { type: 'string', value: 'KIND', help: 'only this kind: personal, project, group, service_account' },
  family: { type: 'string', value: 'ID', help: 'only this rotation family' },
  state: { type: 'string', value: 'STATE', help: 'only this state: active, rotated, revoked, expired' },
  'page-size': { type: 'string', value: 'N', help: 'tokens per page' },
  'page-token': { type: 'string', default: '', value: 'T', help: 'the page printed as "next page" by the last call' },
} satisfies FlagTable;

export const TOKEN_ROTATE_FLAGS = {
  server,
  json,
  'dpop-key-file': {
    ...dpopKeyFile,
    help: 'EC P-256 private key (PKCS#8 PEM) proving a DPoP-bound token; with an unbound one, binds the successor to it (docs/dpop.md)',
  },
  'idempotency-key': {
    type: 'string',
    default: '',
    value: 'KEY',
    help: 'retry key (22-128 characters, e.g. $(openssl rand -hex 16)): a retry with it returns the same successor',
  },
  scope: {
    type: 'string',
    multiple: true,
    default: [],
    value: 'SCOPE',
    help: 'narrow the successor to these scopes (repeatable)',
  },
  'expires-in': { ...expiresIn, help: "the successor's lifetime from now (default: the policy's)" },
  'expires-at': { ...expiresAt, help: "the successor's expiry as an ISO 8601 date-time" },
  'actor-token-file': {
    type: 'string',
    value: 'PATH',
    help: "a bound token: file holding the workload's JWT (or ROTOR_ACTOR_TOKEN; never a command-line value)",
  },
} satisfies FlagTable;

export const TOKEN_REVOKE_FLAGS = {
  server,
  json,
  'dpop-key-file': dpopKeyFile,
  cascade: {
    type: 'boolean',
    default: false,
    help: 'also revoke every family descended from the token (created by calls it authenticated, and so on down; docs/rotation.md)',
  },
  'dry-run': { type: 'boolean', default: false, help: 'change nothing; print the ids the call would revoke' },
} satisfies FlagTable;

export const WATCH_FLAGS = {
  server,
  json: { type: 'boolean', default: false, help: 'one JSON object per event and line' },
  'token-id': {
    type: 'string',
    multiple: true,
    default: [],
    value: 'ID',
    help: 'watch this token (repeatable); default: the ROTOR_TOKEN token',
  },
  owner: { type: 'string', value: 'ID', help: 'watch every token of this owner id' },
  family: { type: 'string', value: 'ID', help: 'watch every token of this family' },
  threshold: {
    type: 'string',
    multiple: true,
    default: [],
    value: 'D',
    help: 'only these EXPIRING_SOON thresholds (repeatable)',
  },
  'after-sequence': { type: 'string', value: 'N', help: 'start after this sequence (resume)' },
  snapshot: { type: 'boolean', default: false, help: 'first one SNAPSHOT per selected token' },
  'max-backoff': { type: 'string', default: '30s', value: 'D', help: 'longest pause between reconnects (default 30s)' },
  'idle-timeout': {
    type: 'string',
    default: '60s',
    value: 'D',
    help: 'reconnect when nothing arrived for this long (default 60s)',
  },
} satisfies FlagTable;

export const AGENT_FLAGS = {
  'token-file': {
    type: 'string',
    value: 'F',
    help: 'the file holding the token, rewritten on every rotation (required)',
  },
  server,
  'rotate-at-fraction': {
    type: 'string',
    default: '2/3',
    value: 'X',
    help: 'rotate once this fraction of the lifetime has passed (default 2/3)',
  },
  exec: { type: 'string', value: 'CMD', help: 'run /bin/sh -c CMD after each write of F' },
  'dpop-key-file': {
    type: 'string',
    value: 'K',
    help: 'DPoP: EC P-256 private key (PKCS#8 PEM, created with mode 0600 when absent) proving every call; an unbound token is bound to it at its next rotation',
  },
  'actor-token-file': {
    type: 'string',
    value: 'PATH',
    help: "a bound token: file holding the workload's JWT, read again before every rotation",
  },
  'max-backoff': { type: 'string', default: '30s', value: 'D', help: 'longest pause between retries (default 30s)' },
  'retry-window': {
    type: 'string',
    default: '10m',
    value: 'D',
    help: "the server's ROTOR_RETRY_WINDOW_SECONDS (default 10m)",
  },
  'poll-interval': {
    type: 'string',
    default: '60s',
    value: 'D',
    help: 'without WatchExpiry, how often the token is looked up (default 60s)',
  },
  'idle-timeout': {
    type: 'string',
    default: '60s',
    value: 'D',
    help: 'reconnect the stream when nothing arrived for this long (default 60s)',
  },
  'log-level': {
    type: 'string',
    default: 'info',
    value: 'L',
    help: 'debug, info, warn or error; JSON lines on stderr (default info)',
  },
} satisfies FlagTable;

export const KEY_STATUS_FLAGS = { json } satisfies FlagTable;
export const EVENTS_FLAGS = {
  server,
  json: { type: 'boolean', default: false, help: 'print one JSON object per event and line instead of a table' },
  token: { type: 'string', value: 'ID', help: 'only events of this token' },
  family: { type: 'string', value: 'ID', help: 'only events of this rotation family' },
  owner: { type: 'string', value: 'ID', help: "only events of this owner's tokens" },
  type: {
    type: 'string',
    multiple: true,
    default: [],
    value: 'TYPE',
    help: 'only this event type (repeatable): created, rotated, replayed, retry_refused, revoked, family_revoked, predecessor_retired, superseded, expiring_soon, expired',
  },
  since: {
    type: 'string',
    value: 'WHEN',
    help: 'only events at or after WHEN: an ISO 8601 date-time, or a duration ago (24h)',
  },
  until: { type: 'string', value: 'WHEN', help: 'only events before WHEN (as --since)' },
  'newest-first': { type: 'boolean', default: false, help: 'newest event first' },
  limit: { type: 'string', value: 'N', help: 'print at most N events (default: every matching event)' },
  'page-size': { type: 'string', value: 'N', help: 'events fetched per call (1-500, default 200)' },
} satisfies FlagTable;

/** Every command `--help` knows, by its words (`token create` is two). */
export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  serve: {
    synopsis: 'rotor serve',
    summary: 'run the server; ports, storage and everything else come from ROTOR_* variables (README, Configuration)',
    flags: {},
  },
  migrate: {
    synopsis: 'rotor migrate',
    summary: 'apply pending database migrations to ROTOR_DATABASE_URL and exit (serve applies them too)',
    flags: {},
  },
  'key-status': {
    synopsis: 'rotor key-status [flags]',
    summary:
      'how many stored digests and sealed signing keys still depend on each server key (ROTOR_SECRET, ROTOR_SECRET_PREVIOUS, and keys no longer configured); docs/server-key.md',
    flags: KEY_STATUS_FLAGS,
  },
  bootstrap: {
    synopsis: 'rotor bootstrap [flags]',
    summary:
      'create the first rotor:admin token directly in the database; prints only its secret; refuses while an active admin token exists',
    flags: BOOTSTRAP_FLAGS,
  },
  'recover-admin': {
    synopsis: 'rotor recover-admin [flags]',
    summary:
      'break-glass: revoke every active admin token and print a new one\'s secret; needs the database and the server secret it was created with (README, "Recovering admin access")',
    flags: RECOVER_ADMIN_FLAGS,
  },
  'token create': {
    synopsis: 'rotor token create --owner ID --name NAME (--expires-in D | --expires-at TIME) [flags]',
    summary: 'create a token and print it with its secret (shown once); credential: ROTOR_TOKEN',
    flags: TOKEN_CREATE_FLAGS,
  },
  'token get': {
    synopsis: 'rotor token get ID [flags]',
    summary: 'print one token; credential: ROTOR_TOKEN',
    flags: TOKEN_GET_FLAGS,
  },
  'token list': {
    synopsis: 'rotor token list [flags]',
    summary: 'list the tokens the credential may see, one page at a time; credential: ROTOR_TOKEN',
    flags: TOKEN_LIST_FLAGS,
  },
  'token rotate': {
    synopsis: 'rotor token rotate [ID] [flags]',
    summary:
      'rotate a token (default: the ROTOR_TOKEN token itself) and print the successor with its secret (shown once)',
    flags: TOKEN_ROTATE_FLAGS,
  },
  'token revoke': {
    synopsis: 'rotor token revoke ID [flags]',
    summary: 'revoke a token; credential: ROTOR_TOKEN',
    flags: TOKEN_REVOKE_FLAGS,
  },
  watch: {
    synopsis: 'rotor watch [flags]',
    summary: 'print expiry and rotation events (WatchExpiry), reconnecting without a gap; credential: ROTOR_TOKEN',
    flags: WATCH_FLAGS,
  },
  events: {
    synopsis: 'rotor events [flags]',
    summary:
      'print the audit trail (ListEvents): who created, rotated and revoked which token, oldest first; credential: ROTOR_TOKEN',
    flags: EVENTS_FLAGS,
  },
  agent: {
    synopsis: 'rotor agent --token-file F [flags]',
    summary:
      'keep the token in F fresh: rotate before expiry, write the successor atomically (first token: F, else ROTOR_TOKEN); docs/agent.md',
    flags: AGENT_FLAGS,
  },
};
