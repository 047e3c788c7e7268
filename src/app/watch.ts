import { requireWatch } from '../domain/authorization.js';
import { RotorError, isRotorError } from '../domain/errors.js';
import { selectThresholds, wantsEvent, type WatchSelection } from '../domain/expiry.js';
import { LIMITS, requireId, requireIdentifier } from '../domain/input-limits.js';
import { assertUsable, usableUntil, type TokenRecord } from '../domain/token.js';
import type { WatchedEvent } from '../domain/token-event.js';
import { assertLineageStands, successorForUse, type Caller } from './authenticate.js';
import type { AppContext } from './context.js';
import type { LiveSubscription, WatchCredential, WatchRuntime } from './watch-ports.js';

/** WatchExpiry input, decoded from the wire (durations already in seconds). */
export interface WatchRequest {
  tokenIds: readonly string[];
  ownerId: string;
  familyId: string;
  thresholdsSeconds: readonly number[];
  afterSequence: number | undefined;
  includeSnapshot: boolean;
}

/** What a watcher receives, before mapping to ExpiryEvent. */
export type WatchItem =
  | { kind: 'snapshot'; token: TokenRecord; sequence: number; at: number }
  | { kind: 'event'; event: WatchedEvent }
  | { kind: 'heartbeat'; sequence: number; at: number };

/** Rows read from the log per replay query. */
const REPLAY_PAGE = 500;
/** Tokens one snapshot lists at most (an owner with more gets the newest ones' states from ListTokens). */
const SNAPSHOT_LIMIT = 1000;

/** A validated, authorized watch: what to follow and which thresholds to pass on. */
export interface WatchPlan {
  selection: WatchSelection;
  /** The caller's token: the stream lives as long as it authenticates. */
  credential: WatchCredential;
  thresholdsSeconds: number[];
  afterSequence: number | undefined;
  includeSnapshot: boolean;
}

/**
 * Validates and authorizes a WatchExpiry request (src/domain/authorization.ts requireWatch): at
 * most one selector; none selects the caller's own token. Unknown ids are NOT_FOUND, as for GetToken.
 */
export async function planWatch(
  app: AppContext,
  caller: Caller,
  req: WatchRequest,
  scheduled: readonly number[],
): Promise<WatchPlan> {
  const set = [req.tokenIds.length > 0, req.ownerId !== '', req.familyId !== ''].filter(Boolean).length;
  if (set > 1)
    throw new RotorError('invalid_argument', 'set at most one of token_ids, owner_id, family_id', {
      field: 'token_ids',
    });
  if (req.thresholdsSeconds.length > LIMITS.watchThresholds) {
    throw new RotorError('invalid_argument', `thresholds: at most ${LIMITS.watchThresholds} values`, {
      field: 'thresholds',
    });
  }
  const thresholdsSeconds = selectThresholds(req.thresholdsSeconds, scheduled);
  if (req.afterSequence !== undefined && (!Number.isSafeInteger(req.afterSequence) || req.afterSequence < 0)) {
    throw new RotorError('invalid_argument', 'after_sequence is out of range', { field: 'after_sequence' });
  }
  let selection: WatchSelection;
  if (req.tokenIds.length > 0) {
    if (req.tokenIds.length > LIMITS.watchTokenIds) {
      throw new RotorError('invalid_argument', `token_ids: at most ${LIMITS.watchTokenIds} values`, {
        field: 'token_ids',
      });
    }
    const ids = [...new Set(req.tokenIds.map((id) => requireId('token_ids', id)))];
    for (const id of ids) {
      const token = id === caller.token.id ? caller.token : await app.store.tokens.findById(id);
      if (!token) throw new RotorError('not_found', `token ${id} not found`);
      requireWatch(caller.token, token);
    }
    selection = { kind: 'tokens', tokenIds: ids };
  } else if (req.ownerId !== '') {
    const ownerId = requireIdentifier('owner_id', req.ownerId, LIMITS.ownerId);
    requireWatch(caller.token, { ownerId });
    selection = { kind: 'owner', ownerId };
  } else if (req.familyId !== '') {
    const familyId = requireId('family_id', req.familyId);
    const root = await app.store.tokens.findFamilyRoot(familyId);
    if (!root) throw new RotorError('not_found', `family ${familyId} not found`);
    requireWatch(caller.token, root);
    selection = { kind: 'family', familyId };
  } else {
    selection = { kind: 'tokens', tokenIds: [caller.token.id] };
  }
  return {
    selection,
    credential: { tokenId: caller.token.id, familyId: caller.token.familyId, ownerId: caller.token.ownerId },
    thresholdsSeconds,
    afterSequence: req.afterSequence,
    includeSnapshot: req.includeSnapshot,
  };
}

/**
 * The feed's credential check (src/expiry/event-feed.ts): the token and the successor its
 * usability depends on, read in a transaction so that neither comes from the token cache.
 */
export async function checkCredential(app: AppContext, tokenId: string): Promise<{ until: number; problem?: string }> {
  return app.store.transaction(async (tx) => {
    const token = await tx.tokens.findById(tokenId);
    if (!token) return { until: 0, problem: 'token is unknown' };
    const successor = await successorForUse(tx.tokens, token);
    const until = usableUntil(token, successor);
    try {
      assertUsable(token, app.now(), successor);
      await assertLineageStands(tx.tokens, token);
      return { until };
    } catch (e) {
      if (isRotorError(e)) return { until, problem: e.message };
      throw e;
    }
  });
}

/**
 * A resume must start inside the log that retention kept (src/expiry/retention.ts): events after
 * `afterSequence` up to the deletion mark may be gone, and replaying the rest would hide the gap.
 */
async function requireRetained(app: AppContext, afterSequence: number): Promise<void> {
  const deleted = await app.store.events.deletedThrough();
  if (afterSequence < deleted) {
    throw new RotorError(
      'events_purged',
      `events up to sequence ${deleted} were deleted by retention (ROTOR_RETENTION_DAYS); after_sequence ${afterSequence} is older: start again with include_snapshot and no after_sequence`,
      { field: 'after_sequence' },
    );
  }
}

async function snapshotTokens(app: AppContext, selection: WatchSelection): Promise<TokenRecord[]> {
  if (selection.kind === 'tokens') {
    const found = await Promise.all(selection.tokenIds.map((id) => app.store.tokens.findById(id)));
    return found.filter((t): t is TokenRecord => t !== undefined);
  }
  const filter = selection.kind === 'owner' ? { ownerId: selection.ownerId } : { familyId: selection.familyId };
  return app.store.tokens.list(filter, app.now(), SNAPSHOT_LIMIT, undefined);
}

/**
 * The stream of one watcher. Order: join the live feed (its position P), then the snapshot
 * (state as of log sequence S, read after joining, so S >= P), then every logged event of the
 * selection in (after_sequence, P] (or (S, P] without after_sequence), then live events after P;
 * anything at or below what was already sent is skipped, so nothing is missed or sent twice.
 * Without after_sequence and snapshot, only events after the log's end at the call's start are sent.
 */
export function watchEvents(
  app: AppContext,
  runtime: WatchRuntime,
  plan: WatchPlan,
  signal?: AbortSignal,
): WatchStream {
  return new WatchItems(app, runtime, plan, signal);
}

/** watchEvents' items; return() leaves the feed. */
export interface WatchStream extends AsyncIterableIterator<WatchItem> {
  return(value?: unknown): Promise<IteratorResult<WatchItem>>;
}

/**
 * watchEvents' iterator. Joining the feed, the snapshot and the replay run as an async generator
 * (`opening`); once it is done, next() is the subscription's own, so a live item costs the stream
 * one promise, where a generator around the subscription cost several (removing them cut the
 * server's CPU per 10,000-stream fan-out by about 45 %, bench/README.md "Fourth session").
 */
class WatchItems implements WatchStream {
  /** Set once open() has joined the feed (before its first yield or its end). */
  private sub: LiveSubscription | undefined;
  private opening: AsyncGenerator<WatchItem, void> | undefined;
  private state: 'opening' | 'live' | 'ended' = 'opening';
  /** Why the opening failed: every later next() rejects with it. */
  private failure: unknown;
  private readonly onAbort = () => this.end();

  constructor(
    private readonly app: AppContext,
    private readonly runtime: WatchRuntime,
    private readonly plan: WatchPlan,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.opening = this.open();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<WatchItem>> {
    if (this.state === 'live') return this.sub!.next();
    if (this.state === 'ended')
      return this.failure === undefined
        ? Promise.resolve({ done: true, value: undefined })
        : Promise.reject(this.failure);
    return this.opening!.next().then(
      (r): IteratorResult<WatchItem> | Promise<IteratorResult<WatchItem>> => {
        if (!r.done) return r;
        this.opening = undefined;
        // Given up (return()) while the opening ran: it joined the feed after end() looked.
        if (this.state === 'ended') {
          this.end();
          return { done: true, value: undefined };
        }
        this.state = 'live';
        this.sub!.markLive();
        return this.sub!.next();
      },
      (e: unknown) => {
        this.state = 'ended';
        this.failure = e;
        this.opening = undefined;
        this.end();
        throw e;
      },
    );
  }

  /** The stream went away (cancelled, or its consumer stopped early). */
  return(): Promise<IteratorResult<WatchItem>> {
    this.state = 'ended';
    this.end();
    const opening = this.opening;
    this.opening = undefined;
    // A running opening finishes its step first; open() then leaves the feed itself.
    return opening ? opening.return(undefined) : Promise.resolve({ done: true, value: undefined });
  }

  /**
   * Leaves the feed. A subscription that ends by itself (overflow, shutdown, its credential)
   * has left already; the abort listener then stays on the call's signal until that is
   * collected with the call.
   */
  private end(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
    this.sub?.close();
  }

  private async *open(): AsyncGenerator<WatchItem, void> {
    const { app, plan } = this;
    try {
      if (plan.afterSequence !== undefined) await requireRetained(app, plan.afterSequence);
      // Live only: the log's end before joining bounds what counts as "before" (the feed's own
      // position may lag while nobody watched).
      const liveAfter =
        plan.afterSequence === undefined && !plan.includeSnapshot ? await app.store.events.latestSequence() : undefined;
      const sub = this.runtime.feed.subscribe(plan.selection, plan.thresholdsSeconds, plan.credential);
      this.sub = sub;
      if (liveAfter !== undefined) sub.skipThrough(liveAfter);
      if (this.signal?.aborted || this.state === 'ended') sub.close();
      this.signal?.addEventListener('abort', this.onAbort, { once: true });
      // Live only: anything after the log's end at the start that the feed had already read
      // before this watcher joined (its position ran ahead of liveAfter) is replayed from the log.
      let from = plan.afterSequence ?? liveAfter;
      if (plan.includeSnapshot) {
        const sequence = await app.store.events.latestSequence();
        const at = app.now();
        for (const token of await snapshotTokens(app, plan.selection)) yield { kind: 'snapshot', token, sequence, at };
        from ??= sequence;
      }
      if (from !== undefined) {
        sub.skipThrough(from);
        const thresholds = new Set(plan.thresholdsSeconds);
        for (let cursor = from; cursor < sub.liveFrom; ) {
          const page = await app.store.events.forSelection(plan.selection, cursor, sub.liveFrom, REPLAY_PAGE);
          for (const event of page) {
            if (wantsEvent(thresholds, event)) yield { kind: 'event', event };
          }
          const last = page[page.length - 1];
          if (page.length < REPLAY_PAGE || !last) break;
          cursor = last.sequence;
        }
        // A retention pass that ran during the replay may have deleted events before it read them.
        if (plan.afterSequence !== undefined) await requireRetained(app, plan.afterSequence);
      }
    } finally {
      // Given up at a yield, or while a step ran: leave the feed.
      if (this.state === 'ended') this.end();
    }
  }
}
