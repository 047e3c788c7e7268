import { readdirSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { DURATION_BUCKETS, type RpcStats } from '../api/rpc-stats.js';
import type { BrakeStats } from '../app/brakes.js';
import { RATE_LIMIT_KINDS } from '../domain/rate-limits.js';
import { WATCH_STREAM_CAPS, type WatchStreamCap } from '../domain/watch-stream-caps.js';

/**
 * GET /metrics on the HTTP port: Prometheus text exposition (format 0.0.4) of counters the
 * components keep as plain numbers (docs/metrics.md lists every series). Nothing here is on a
 * request's path: a scrape reads the numbers and formats them, and changes none of them.
 *
 * No label carries a token id, owner, family, secret or peer address: only method names, result
 * codes, routes, event types and reasons, all from fixed sets. So the series count stays bounded
 * and a scrape reveals nothing about who holds which token.
 */

/** Sampling interval of the event-loop delay monitor. */
const LOOP_RESOLUTION_MS = 10;
/** The event-loop delay figures cover fixed windows of this length, whoever scrapes and how often. */
const LOOP_WINDOW_MS = 60_000;

/** Counts of the non-RPC HTTP routes (OAuth, well-known, health, metrics), by route and status. */
export class HttpRouteStats {
  private readonly counts = new Map<string, { route: string; status: number; count: number }>();

  finished(route: string, status: number): void {
    const key = `${route} ${status}`;
    const c = this.counts.get(key);
    if (c) c.count++;
    else this.counts.set(key, { route, status, count: 1 });
  }

  all(): { route: string; status: number; count: number }[] {
    return [...this.counts.values()];
  }
}

/** What a scrape reads; the composition root (src/runtime/server.ts) wires each to its component. */
export interface MetricsSources {
  version: string;
  engine: string;
  rpc: RpcStats;
  http: HttpRouteStats;
  store: () => {
    eventsCommitted: { type: string; reason: string | null; count: number }[];
    reuseDetected: number;
    unavailable: number;
    cache: { hits: number; misses: number; entries: number };
  };
  feed: () => {
    watchers: number;
    eventsRead: number;
    readFailures: number;
    overflows: number;
    refused: Readonly<Record<WatchStreamCap, number>>;
  };
  scheduler: () => { passes: number; failures: number };
  /** The server secret fails the strength rules and was admitted for a database with tokens (src/runtime/weak-secret-gate.ts). */
  secretWeak: boolean;
  retention: () => { passes: number; failures: number; elsewhere: number; tokens: number; events: number };
  /** The brakes (docs/limits.md); absent: not counted. */
  brakes?: () => BrakeStats;
}

/** The metrics of one running server; `close()` stops its event-loop delay monitor. */
export class Metrics {
  private readonly loopDelay: IntervalHistogram;
  /** The last complete window's event-loop delay, in seconds. */
  private lastWindow: { p99: number; max: number } | undefined;
  private readonly windowTimer: NodeJS.Timeout;
  private readonly startSeconds = Math.round(Date.now() / 1000 - process.uptime());

  constructor(private readonly sources: MetricsSources) {
    this.loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.loopDelay.enable();
    this.windowTimer = setInterval(() => {
      this.lastWindow = this.loopDelayNow();
      this.loopDelay.reset();
    }, LOOP_WINDOW_MS).unref();
  }

  close(): void {
    clearInterval(this.windowTimer);
    this.loopDelay.disable();
  }

  /** Event-loop lateness so far in the current window (the monitor's samples include its interval). */
  private loopDelayNow(): { p99: number; max: number } {
    const d = this.loopDelay;
    const seconds = (ns: number) =>
      Number.isFinite(ns) && d.count > 0 ? Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS) / 1000 : 0;
    return { p99: seconds(d.percentile(99)), max: seconds(d.max) };
  }

  /** The exposition text. Reading it changes nothing: several scrapers see the same figures. */
  render(): string {
    const out = new Exposition();
    const s = this.sources;
    out.gauge('rotor_build_info', 'Rotor version and storage engine (always 1).', [
      [{ version: s.version, engine: s.engine }, 1],
    ]);
    out.gauge(
      'rotor_server_secret_weak',
      '1 when the server secret fails the strength rules and is accepted only because the database already holds tokens made under it; 0 otherwise.',
      [[{}, s.secretWeak ? 1 : 0]],
    );

    const rpc = s.rpc.all();
    out.counter(
      'rotor_rpc_handled_total',
      'RPCs finished by a handler, on either port, by method and result code (streams: ok, canceled, or the code that ended them).',
      rpc.flatMap((m) => [...m.finished].map(([code, n]): Sample => [{ method: m.method, code }, n])),
    );
    out.counter(
      'rotor_rpc_errors_total',
      'RPCs failed with a Rotor error, by method and error (the rotor-error metadata: reuse_detected, already_rotated, token_expired, workload_mismatch, ...).',
      rpc.flatMap((m) => [...m.errors].map(([error, n]): Sample => [{ method: m.method, error }, n])),
    );
    out.histogram(
      'rotor_rpc_duration_seconds',
      'Time a unary RPC spent in its handler, by method.',
      rpc
        .filter((m) => !m.streaming && m.durationCount > 0)
        .map((m) => ({ labels: { method: m.method }, buckets: m.buckets, sum: m.durationSum, count: m.durationCount })),
    );
    out.counter(
      'rotor_http_requests_total',
      'Requests to the OAuth, well-known, health and metrics routes of the HTTP port, by route and status.',
      s.http.all().map((r): Sample => [{ route: r.route, status: String(r.status) }, r.count]),
    );

    const store = s.store();
    out.counter(
      'rotor_token_events_total',
      'Events this process committed to the event log, by type and reason; a family revocation writes one per token of the family.',
      store.eventsCommitted.map((e): Sample => [{ type: e.type, reason: e.reason ?? 'none' }, e.count]),
    );
    out.counter(
      'rotor_reuse_detected_total',
      'Rotated tokens presented again (after the reuse grace): each revoked its whole family. Counted at commit, whatever the entry point (gRPC, Connect, POST /oauth/token).',
      [[{}, store.reuseDetected]],
    );
    out.counter('rotor_database_unavailable_total', 'Calls failed because the database was unreachable or timed out.', [
      [{}, store.unavailable],
    ]);
    out.counter(
      'rotor_token_cache_lookups_total',
      'Token lookups by secret digest or id, answered from the in-process cache (hit) or not (miss).',
      [
        [{ result: 'hit' }, store.cache.hits],
        [{ result: 'miss' }, store.cache.misses],
      ],
    );
    out.gauge('rotor_token_cache_entries', 'Token rows held in the in-process cache.', [[{}, store.cache.entries]]);

    const feed = s.feed();
    out.gauge('rotor_watch_streams', 'Open WatchExpiry streams in the live feed.', [[{}, feed.watchers]]);
    out.counter('rotor_watch_events_read_total', 'Events the live feed read from the log and offered to its streams.', [
      [{}, feed.eventsRead],
    ]);
    out.counter(
      'rotor_watch_streams_refused_total',
      'WatchExpiry streams refused with RESOURCE_EXHAUSTED because they would exceed a cap on open streams of this process, by cap (token, owner, process).',
      WATCH_STREAM_CAPS.map((cap): Sample => [{ cap }, feed.refused[cap]]),
    );
    out.counter(
      'rotor_watch_overflows_total',
      'WatchExpiry streams ended with RESOURCE_EXHAUSTED because their client fell behind by more than the buffer.',
      [[{}, feed.overflows]],
    );
    out.counter('rotor_watch_feed_read_failures_total', 'Reads of the event log by the live feed that failed.', [
      [{}, feed.readFailures],
    ]);
    const scans = s.scheduler();
    out.counter('rotor_expiry_scans_total', 'Passes of the expiry scheduler, by result.', [
      [{ result: 'ok' }, scans.passes],
      [{ result: 'failed' }, scans.failures],
    ]);
    const retention = s.retention();
    out.counter(
      'rotor_retention_passes_total',
      'Passes of the retention job, by result (elsewhere: another replica held the pass lock, this one did nothing).',
      [
        [{ result: 'ok' }, retention.passes],
        [{ result: 'failed' }, retention.failures],
        [{ result: 'elsewhere' }, retention.elsewhere],
      ],
    );
    out.counter(
      'rotor_retention_deleted_total',
      'Rows the retention job of this replica deleted, by table (ROTOR_RETENTION_DAYS).',
      [
        [{ table: 'tokens' }, retention.tokens],
        [{ table: 'token_events' }, retention.events],
      ],
    );

    const brakes = s.brakes?.();
    if (brakes) {
      out.counter(
        'rotor_rate_limit_counted_total',
        'Events this replica counted against a rate limit, by limit (failed_auth: failed authentications per peer; mints: tokens minted per owner; rotations: rotations per family).',
        RATE_LIMIT_KINDS.map((limit): Sample => [{ limit }, brakes.counted[limit]]),
      );
      out.counter(
        'rotor_rate_limit_refused_total',
        'Calls this replica refused with RESOURCE_EXHAUSTED / HTTP 429 (rate_limited), by limit.',
        RATE_LIMIT_KINDS.map((limit): Sample => [{ limit }, brakes.refused[limit]]),
      );
      out.counter(
        'rotor_rate_limit_store_failures_total',
        'Rate limit counter updates that failed (the shared counter store unreachable); each such call went on unlimited (fail open).',
        [[{}, brakes.storeFailures]],
      );
    }

    const cpu = process.cpuUsage();
    const mem = process.memoryUsage();
    out.counter('process_cpu_user_seconds_total', 'User CPU time of the process.', [[{}, cpu.user / 1e6]]);
    out.counter('process_cpu_system_seconds_total', 'System CPU time of the process.', [[{}, cpu.system / 1e6]]);
    out.gauge('process_resident_memory_bytes', 'Resident set size.', [[{}, mem.rss]]);
    out.gauge('process_start_time_seconds', 'Start of the process, seconds since the epoch.', [
      [{}, this.startSeconds],
    ]);
    const fds = openFds();
    if (fds !== undefined) out.gauge('process_open_fds', 'Open file descriptors.', [[{}, fds]]);
    out.gauge('nodejs_heap_size_used_bytes', 'V8 heap in use.', [[{}, mem.heapUsed]]);
    out.gauge('nodejs_heap_size_total_bytes', 'V8 heap reserved.', [[{}, mem.heapTotal]]);
    out.gauge('nodejs_external_memory_bytes', 'Memory held outside the V8 heap (buffers).', [[{}, mem.external]]);
    const delay = this.lastWindow ?? this.loopDelayNow();
    out.gauge(
      'nodejs_eventloop_delay_p99_seconds',
      'Event loop lateness, 99th percentile over the last complete minute (since the start, during the first).',
      [[{}, delay.p99]],
    );
    out.gauge(
      'nodejs_eventloop_delay_max_seconds',
      'Event loop lateness, maximum over the last complete minute (since the start, during the first).',
      [[{}, delay.max]],
    );
    return out.text();
  }

  /** The GET /metrics route. */
  route(): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
    return async (req, res) => {
      const body = this.render();
      res.writeHead(200, {
        'content-type': 'text/plain; version=0.0.4; charset=utf-8',
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(body),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
  }
}

function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

type Labels = Record<string, string>;
type Sample = [Labels, number];

/** Prometheus text format: HELP and TYPE once per family, then its samples. */
class Exposition {
  private readonly lines: string[] = [];

  counter(name: string, help: string, samples: Sample[]): void {
    this.family(name, 'counter', help);
    for (const [labels, v] of samples) this.sample(name, labels, v);
  }

  gauge(name: string, help: string, samples: Sample[]): void {
    this.family(name, 'gauge', help);
    for (const [labels, v] of samples) this.sample(name, labels, v);
  }

  histogram(
    name: string,
    help: string,
    series: { labels: Labels; buckets: readonly number[]; sum: number; count: number }[],
  ): void {
    this.family(name, 'histogram', help);
    for (const h of series) {
      let cumulative = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += h.buckets[i]!;
        this.sample(`${name}_bucket`, { ...h.labels, le: String(le) }, cumulative);
      });
      this.sample(`${name}_bucket`, { ...h.labels, le: '+Inf' }, h.count);
      this.sample(`${name}_sum`, h.labels, h.sum);
      this.sample(`${name}_count`, h.labels, h.count);
    }
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }

  private family(name: string, type: string, help: string): void {
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
  }

  private sample(name: string, labels: Labels, value: number): void {
    const pairs = Object.entries(labels).map(
      ([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`,
    );
    this.lines.push(`${name}${pairs.length ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`);
  }
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
