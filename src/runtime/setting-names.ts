/**
 * Every `ROTOR_*` environment variable Rotor reads, in one place: the server's settings
 * (src/runtime/config.ts and src/runtime/tls-config.ts read only these; test/runtime/setting-names.test.ts
 * checks it), the CLI's, and the two `rotor agent` sets for its `--exec` hook. A variable not
 * listed is a typo or a leftover, warned about at start (`unknownSettingWarnings`).
 */
export const SERVER_SETTINGS = [
  'ROTOR_HOST',
  'ROTOR_TLS_CERT_FILE',
  'ROTOR_TLS_KEY_FILE',
  'ROTOR_GRPC_PORT',
  'ROTOR_HTTP_PORT',
  'ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS',
  'ROTOR_GRPC_IDLE_TIMEOUT_SECONDS',
  'ROTOR_GRPC_MAX_CONNECTION_AGE_SECONDS',
  'ROTOR_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS',
  'ROTOR_GRPC_MAX_CONCURRENT_STREAMS',
  'ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER',
  'ROTOR_GRPC_MAX_CONNECTIONS',
  'ROTOR_DATA_DIR',
  'ROTOR_DATABASE_URL',
  'ROTOR_DATABASE_POOL_MAX',
  'ROTOR_DATABASE_LISTEN',
  'ROTOR_DATABASE_STATEMENT_TIMEOUT_MS',
  'ROTOR_SECRET',
  'ROTOR_SECRET_PREVIOUS',
  'ROTOR_SECRET_DROP_UNKNOWN',
  'ROTOR_DPOP_MAX_AGE_SECONDS',
  'ROTOR_DPOP_NONCE',
  'ROTOR_MAX_LIFETIME_SECONDS',
  'ROTOR_DEFAULT_REUSE_GRACE_SECONDS',
  'ROTOR_DEFAULT_OVERLAP_SECONDS',
  'ROTOR_RETRY_WINDOW_SECONDS',
  'ROTOR_TOKEN_CACHE_TTL_MS',
  'ROTOR_ISSUER',
  'ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS',
  'ROTOR_JWT_KEY_ROTATION_SECONDS',
  'ROTOR_JWT_SIGNING_ALG',
  'ROTOR_TRUST_CONFIG',
  'ROTOR_EXPIRY_THRESHOLDS',
  'ROTOR_EXPIRY_SCAN_INTERVAL_MS',
  'ROTOR_RETENTION_DAYS',
  'ROTOR_RETENTION_INTERVAL_MS',
  'ROTOR_WATCH_HEARTBEAT_SECONDS',
  'ROTOR_WATCH_BUFFER_EVENTS',
  'ROTOR_WATCH_POLL_INTERVAL_MS',
  'ROTOR_WATCH_MAX_STREAMS_PER_TOKEN',
  'ROTOR_WATCH_MAX_STREAMS_PER_OWNER',
  'ROTOR_WATCH_MAX_STREAMS_PER_PROCESS',
  'ROTOR_HEAP_GROWING_PERCENT',
  'ROTOR_HEAP_FLOOR_MB',
  'ROTOR_METRICS',
  'ROTOR_REFLECTION',
  'ROTOR_CONSOLE',
  'ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER',
  'ROTOR_RATE_LIMIT_FAILED_AUTH_WINDOW_SECONDS',
  'ROTOR_RATE_LIMIT_MINTS_PER_OWNER',
  'ROTOR_RATE_LIMIT_MINTS_WINDOW_SECONDS',
  'ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY',
  'ROTOR_RATE_LIMIT_ROTATIONS_WINDOW_SECONDS',
  'ROTOR_LOG_LEVEL',
  'ROTOR_LOG_FORMAT',
  'ROTOR_ACCESS_LOG',
] as const;

/** Read by the CLI (`rotor token`, `watch`, `agent`), never by the server. */
export const CLI_SETTINGS = ['ROTOR_SERVER', 'ROTOR_TOKEN', 'ROTOR_ACTOR_TOKEN'] as const;

/** Set by `rotor agent` in the environment of its `--exec` hook (docs/agent.md), so they are Rotor's own. */
export const AGENT_HOOK_VARIABLES = ['ROTOR_TOKEN_FILE', 'ROTOR_TOKEN_ID'] as const;

/** A server setting's name, for the readers in config.ts. */
export type SettingName = (typeof SERVER_SETTINGS)[number];

const KNOWN: ReadonlySet<string> = new Set<string>([...SERVER_SETTINGS, ...CLI_SETTINGS, ...AGENT_HOOK_VARIABLES]);

/** Test-only variables of this repository's test suite (test/support/engines.ts); never warned about. */
const EXEMPT_PREFIX = 'ROTOR_TEST_';

/**
 * One warning per `ROTOR_*` variable in `env` that Rotor does not read, naming the closest known
 * name when one is near (a typo such as ROTOR_LOG_LEVLE would otherwise be silently ignored and
 * its default used).
 */
export function unknownSettingWarnings(env: Record<string, string | undefined>): string[] {
  const warnings: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('ROTOR_') || name.startsWith(EXEMPT_PREFIX) || KNOWN.has(name)) continue;
    const near = closestSetting(name);
    warnings.push(
      near === undefined
        ? `${name} is not a Rotor setting (README, "Configuration", lists them); it is ignored`
        : `${name} is not a Rotor setting; did you mean ${near}?`,
    );
  }
  return warnings;
}

/** The known name with the smallest edit distance, if it is close enough to be a typo. */
function closestSetting(name: string): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const known of KNOWN) {
    const d = editDistance(name, known);
    if (d < bestDistance) {
      best = known;
      bestDistance = d;
    }
  }
  const suffix = name.length - 'ROTOR_'.length;
  return bestDistance <= Math.max(2, Math.floor(suffix / 3)) ? best : undefined;
}

/** Damerau-Levenshtein distance (optimal string alignment: a swap of neighbours costs 1). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
