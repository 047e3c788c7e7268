import type { WorkloadActor } from './workload-binding.js';

/**
 * Event types of the append-only log (docs/design.md, Domain). The log is the audit trail and the source
 * of WatchExpiry; every state change writes its event in the same transaction, and the expiry
 * scheduler appends `expiring_soon` and `expired` (src/expiry/scheduler.ts).
 */
export type TokenEventType =
  | 'created'
  | 'rotated'
  | 'replayed'
  | 'retry_refused'
  | 'revoked'
  | 'family_revoked'
  /** Revoked because its workload minted one more than its federation rule's `max_active_tokens` (reason `superseded`). */
  | 'superseded'
  | 'expiring_soon'
  | 'expired'
  | 'predecessor_retired';

/** Who did it and from where: the audit half of an event. */
export interface Actor {
  /** The id of the token that authenticated the call, or a word such as `bootstrap`. */
  actor: string;
  /** The caller's network peer, when known. */
  peer: string | null;
  /** The verified workload (JWT `iss`/`sub`) that proved the call, if one did; never the JWT. */
  act?: WorkloadActor | null;
}

/** An event to append; the store assigns its sequence number. */
export interface NewTokenEvent extends Actor {
  type: TokenEventType;
  tokenId: string;
  familyId: string;
  successorId: string | null;
  reason: string | null;
  occurredAt: number;
  /** The threshold of an `expiring_soon` event, in seconds. */
  thresholdSeconds?: number | null;
}

/** An event as stored, with its position in the log. */
export interface TokenEvent extends NewTokenEvent {
  sequence: number;
}

/** A stored event with the facts of its token a watcher filters and reports on. */
export interface WatchedEvent extends TokenEvent {
  ownerId: string;
  expiresAt: number;
}
