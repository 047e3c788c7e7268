import { create } from '@bufbuild/protobuf';
import { timestampFromMs, type Duration } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { authenticate } from '../app/authenticate.js';
import type { AppContext } from '../app/context.js';
import { planWatch, watchEvents, type WatchItem } from '../app/watch.js';
import type { WatchRuntime } from '../app/watch-ports.js';
import { RotorError } from '../domain/errors.js';
import { stateAfter } from '../domain/expiry.js';
import { tokenState } from '../domain/token.js';
import type { TokenEventType } from '../domain/token-event.js';
import {
  ExpiryEventSchema,
  ExpiryEventType,
  type ExpiryService,
  type ExpiryEvent,
} from '../gen/rotor/v1/expiry_service_pb.js';
import { callMeta } from './call-meta.js';
import { mapStream } from './streams.js';
import { STATE_TO_PB } from './token-mapping.js';

/** Log event types → ExpiryEventType; a `created` token enters a selection as a SNAPSHOT (reason `created` or `rotated`). */
const TYPE_TO_PB: Readonly<Record<TokenEventType, ExpiryEventType>> = {
  created: ExpiryEventType.SNAPSHOT,
  expiring_soon: ExpiryEventType.EXPIRING_SOON,
  expired: ExpiryEventType.EXPIRED,
  rotated: ExpiryEventType.ROTATED,
  replayed: ExpiryEventType.REPLAYED,
  retry_refused: ExpiryEventType.RETRY_REFUSED,
  revoked: ExpiryEventType.REVOKED,
  family_revoked: ExpiryEventType.FAMILY_REVOKED,
  predecessor_retired: ExpiryEventType.PREDECESSOR_RETIRED,
  superseded: ExpiryEventType.SUPERSEDED,
};

/** Longest threshold a request may name (ten years); longer ones cannot be scheduled anyway. */
const MAX_THRESHOLD_SECONDS = 10n * 365n * 86400n;

/** A requested threshold: a positive whole number of seconds. */
function thresholdSecondsFromPb(d: Duration): number {
  if (d.seconds <= 0n || d.nanos !== 0 || d.seconds > MAX_THRESHOLD_SECONDS) {
    throw new RotorError('invalid_argument', 'thresholds: each must be a positive whole number of seconds', {
      field: 'thresholds',
    });
  }
  return Number(d.seconds);
}

/**
 * One log event → its wire message, built once however many watchers receive it (the feed hands
 * every watcher the same event object), so fan-out costs no per-stream message building; the
 * gRPC adapter likewise encodes a shared message once (src/api/grpc-server.ts).
 */
const built = new WeakMap<object, ExpiryEvent>();

/** One watcher item → the wire message. Heartbeat items are shared too (src/expiry/subscription.ts). */
export function expiryEventToPb(item: WatchItem): ExpiryEvent {
  if (item.kind === 'snapshot') return buildPb(item);
  const key = item.kind === 'event' ? item.event : item;
  let msg = built.get(key);
  if (!msg) {
    msg = buildPb(item);
    built.set(key, msg);
  }
  return msg;
}

function buildPb(item: WatchItem): ExpiryEvent {
  switch (item.kind) {
    case 'heartbeat':
      return create(ExpiryEventSchema, {
        sequence: BigInt(item.sequence),
        type: ExpiryEventType.HEARTBEAT,
        occurredAt: timestampFromMs(item.at),
      });
    case 'snapshot': {
      const t = item.token;
      return create(ExpiryEventSchema, {
        sequence: BigInt(item.sequence),
        type: ExpiryEventType.SNAPSHOT,
        tokenId: t.id,
        familyId: t.familyId,
        successorId: t.successorId ?? '',
        expiresAt: timestampFromMs(t.expiresAt),
        reason: t.revokeReason ?? '',
        occurredAt: timestampFromMs(item.at),
        state: STATE_TO_PB[tokenState(t, item.at)],
      });
    }
    case 'event': {
      const e = item.event;
      return create(ExpiryEventSchema, {
        sequence: BigInt(e.sequence),
        type: TYPE_TO_PB[e.type],
        tokenId: e.tokenId,
        familyId: e.familyId,
        successorId: e.successorId ?? '',
        expiresAt: timestampFromMs(e.expiresAt),
        threshold: e.thresholdSeconds == null ? undefined : { seconds: BigInt(e.thresholdSeconds), nanos: 0 },
        reason: e.reason ?? (e.type === 'created' ? 'created' : ''),
        occurredAt: timestampFromMs(e.occurredAt),
        state: STATE_TO_PB[stateAfter(e.type, e.reason)],
      });
    }
  }
}

/** `rotor.v1.ExpiryService`: WatchExpiry written once as an async iterable, mounted on both ports. */
export function expiryServiceImpl(app: AppContext, runtime: WatchRuntime): ServiceImpl<typeof ExpiryService> {
  return {
    // A plain iterator, not an async generator: one promise per delivered event (src/api/streams.ts).
    watchExpiry(req, ctx) {
      return mapStream(async () => {
        const caller = await authenticate(app, callMeta(ctx));
        const plan = await planWatch(
          app,
          caller,
          {
            tokenIds: req.tokenIds,
            ownerId: req.ownerId,
            familyId: req.familyId,
            thresholdsSeconds: req.thresholds.map(thresholdSecondsFromPb),
            // A value past 2^53 converts to a number that is not a safe integer, which planWatch refuses.
            afterSequence: req.afterSequence === undefined ? undefined : Number(req.afterSequence),
            includeSnapshot: req.includeSnapshot,
          },
          runtime.thresholdsSeconds,
        );
        return watchEvents(app, runtime, plan, ctx.signal);
      }, expiryEventToPb);
    },
  };
}
