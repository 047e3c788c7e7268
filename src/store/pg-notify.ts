import pg from 'pg';

/**
 * The channel on which committed `token_events` inserts are announced. The trigger of migration
 * 20261127_050_pg_event_notify sends on it: `<highest sequence> <token id>,<token id>…` (or `*`
 * instead of the ids when there were too many for one payload).
 */
const EVENTS_CHANNEL = 'rotor_token_events';

/** One notification: events up to `sequence` were committed, about these tokens (or 'all'). */
export interface EventWake {
  sequence: number;
  tokenIds: readonly string[] | 'all';
}

/** Parses a payload of the channel; undefined for anything else (then treat it as "all"). */
export function parseEventPayload(payload: string | undefined): EventWake | undefined {
  const m = /^(\d+) (\*|[^\s]+)$/.exec(payload ?? '');
  if (!m) return undefined;
  const sequence = Number(m[1]);
  if (!Number.isSafeInteger(sequence)) return undefined;
  return { sequence, tokenIds: m[2] === '*' ? 'all' : m[2]!.split(',') };
}

/** Options of `listenForEvents`. */
export interface ListenOptions {
  /** The PostgreSQL URL (ROTOR_DATABASE_URL). */
  url: string;
  /**
   * Called when events may have been committed: with what the notification says, or with
   * undefined after (re)connecting (and for a payload it cannot parse), because notifications
   * sent while disconnected are lost: the caller must re-read the event log from where it was
   * and forget what it cached.
   */
  onWake: (wake: EventWake | undefined) => void;
  /** Connect timeout, and the bound of the liveness query (default 5000 ms). */
  timeoutMs?: number;
  /** How often the idle connection is checked with `select 1` (default 10 000 ms). */
  heartbeatMs?: number;
  /** Longest pause between reconnect attempts (default 5000 ms; starts at 100 ms, doubling). */
  maxBackoffMs?: number;
  /** Told about connection failures (the caller logs them). */
  onError?: (e: Error) => void;
}

/** A running listener; `close` ends it for good. */
export interface EventListener {
  /** Resolves once the first LISTEN is in place (rejects never; failures retry). */
  readonly ready: Promise<void>;
  readonly connected: boolean;
  close(): Promise<void>;
}

/**
 * LISTENs on the events channel over one dedicated connection (LISTEN needs a session, so it
 * cannot use a pooled connection). When the connection fails (database restart, network cut,
 * a heartbeat that does not come back) it reconnects with capped exponential backoff and then
 * calls `onWake(undefined)`, so the caller re-reads the log instead of trusting that it missed
 * nothing.
 */
export function listenForEvents(opts: ListenOptions): EventListener {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const heartbeatMs = opts.heartbeatMs ?? 10_000;
  const maxBackoffMs = opts.maxBackoffMs ?? 5000;
  let client: pg.Client | undefined;
  let closed = false;
  let connected = false;
  let backoff = 100;
  let retryTimer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const drop = (c: pg.Client, e: Error) => {
    if (client !== c) return;
    client = undefined;
    connected = false;
    clearInterval(heartbeat);
    c.removeAllListeners('notification');
    c.on('error', () => undefined);
    c.end().catch(() => undefined);
    if (closed) return;
    opts.onError?.(e);
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, maxBackoffMs);
  };

  async function connect(): Promise<void> {
    if (closed) return;
    const c = new pg.Client({
      connectionString: opts.url,
      connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs,
      keepAlive: true,
      application_name: 'rotor-listen',
    });
    client = c;
    c.on('error', (e) => drop(c, e));
    c.on('end', () => drop(c, new Error('listen connection ended')));
    c.on('notification', (n) => {
      if (n.channel !== EVENTS_CHANNEL) return;
      opts.onWake(parseEventPayload(n.payload));
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${EVENTS_CHANNEL}`);
    } catch (e) {
      drop(c, e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (client !== c || closed) return;
    connected = true;
    backoff = 100;
    heartbeat = setInterval(() => {
      c.query('select 1').catch((e: unknown) => drop(c, e instanceof Error ? e : new Error(String(e))));
    }, heartbeatMs);
    heartbeat.unref();
    markReady();
    opts.onWake(undefined);
  }

  void connect();
  return {
    ready,
    get connected() {
      return connected;
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      clearInterval(heartbeat);
      const c = client;
      client = undefined;
      connected = false;
      if (c) {
        c.removeAllListeners();
        c.on('error', () => undefined);
        await c.end().catch(() => undefined);
      }
    },
  };
}
