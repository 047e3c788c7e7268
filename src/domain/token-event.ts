import type { WorkloadActor } from './workload-binding.js';

/**
 * Event types of the append-only log (DESIGN.md, Event). The log is the audit trail and, later,
 * the source of WatchExpiry; every state change writes its event in the same transaction.
 */
export type TokenEventType = 'created' | 'rotated' | 'revoked' | 'family_revoked';

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
}

/** An event as stored, with its position in the log. */
export interface TokenEvent extends NewTokenEvent {
  sequence: number;
}
