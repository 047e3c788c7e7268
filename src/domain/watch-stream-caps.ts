import { RotorError } from './errors.js';

/**
 * Caps on the WatchExpiry streams one process holds open at once. Each stream costs the server
 * about 15 KB (bench/README.md, "Fan-out"), so without them one bearer token, even one with no
 * scope watching only itself, could open streams until the process runs out of memory.
 */
export interface WatchStreamCaps {
  /** Streams opened with one bearer token. */
  perToken: number;
  /** Streams opened with the bearer tokens of one owner id, together. */
  perOwner: number;
  /** Streams of every bearer in this process. */
  perProcess: number;
}

/** Which cap refused a stream: the `cap` label of `rotor_watch_streams_refused_total`. */
export type WatchStreamCap = 'token' | 'owner' | 'process';

export const WATCH_STREAM_CAPS: readonly WatchStreamCap[] = ['token', 'owner', 'process'];

/**
 * Defaults (docs/watch-expiry.md, "Limits"). A client needs one stream per selection; 16 leaves
 * room for a few selections and for reconnects that overlap a stream the server has not seen
 * closed yet. 256 per owner serves a fleet of agents under one owner id on one replica. 20,000
 * per process is twice the 10,000 streams the fan-out bench measures (about 280 MB RSS there,
 * about 430 MB at the cap).
 */
export const DEFAULT_WATCH_STREAM_CAPS: Readonly<WatchStreamCaps> = { perToken: 16, perOwner: 256, perProcess: 20_000 };

/** The environment variable of each cap, named in the refusal so an operator knows what to raise. */
export const WATCH_STREAM_CAP_VARIABLES: Readonly<Record<WatchStreamCap, string>> = {
  token: 'ROTOR_WATCH_MAX_STREAMS_PER_TOKEN',
  owner: 'ROTOR_WATCH_MAX_STREAMS_PER_OWNER',
  process: 'ROTOR_WATCH_MAX_STREAMS_PER_PROCESS',
};

/** Streams open now for the bearer of a new stream, its owner, and the process. */
export interface OpenWatchStreams {
  token: number;
  owner: number;
  process: number;
}

/**
 * The cap one more stream would exceed, the narrowest first (the one the caller can do something
 * about), or undefined when it may open.
 */
export function exceededWatchStreamCap(open: OpenWatchStreams, caps: WatchStreamCaps): WatchStreamCap | undefined {
  if (open.token >= caps.perToken) return 'token';
  if (open.owner >= caps.perOwner) return 'owner';
  if (open.process >= caps.perProcess) return 'process';
  return undefined;
}

/** The refusal of a stream over `cap` (RESOURCE_EXHAUSTED): which cap, its value and its variable. */
export function watchStreamCapError(cap: WatchStreamCap, caps: WatchStreamCaps): RotorError {
  const variable = WATCH_STREAM_CAP_VARIABLES[cap];
  switch (cap) {
    case 'token':
      return new RotorError(
        'resource_exhausted',
        `too many WatchExpiry streams for this token (limit ${caps.perToken}, ${variable}); close one or reuse a stream`,
      );
    case 'owner':
      return new RotorError(
        'resource_exhausted',
        `too many WatchExpiry streams for this token's owner (limit ${caps.perOwner}, ${variable}); close one or reuse a stream`,
      );
    case 'process':
      return new RotorError(
        'resource_exhausted',
        `too many WatchExpiry streams on this server (limit ${caps.perProcess}, ${variable}); retry later or on another replica`,
      );
  }
}
