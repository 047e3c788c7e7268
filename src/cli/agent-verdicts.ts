import { Code, ConnectError } from '@connectrpc/connect';
import { ExpiryEventType, type ExpiryEvent } from '../gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../gen/rotor/v1/token_pb.js';

/** What the agent needs to know about the token it keeps fresh. Times are epoch milliseconds. */
export interface AgentToken {
  id: string;
  familyId: string;
  createdAt: number;
  expiresAt: number;
  state: TokenState;
}

/** Exit codes of `rotor agent` (docs/agent.md). */
export const AGENT_EXIT = {
  stopped: 0,
  error: 1,
  usage: 2,
  /** The token or its family was revoked, or the token expired or no longer authenticates. */
  revoked: 3,
  /** Someone else rotated the token (or a rotation may have completed out of reach): the successor's secret is not ours. */
  rotatedElsewhere: 4,
  /** Another agent on this machine already keeps the file fresh (src/cli/agent-lock.ts). */
  locked: 5,
  /**
   * The token is bound to a workload and the server refused the workload's proof (none sent, a
   * JWT it rejects, or a JWT of another workload); the token itself is still active.
   */
  workloadProof: 6,
} as const;

/** The domain codes (`rotor-error`) of a refused workload proof (docs/workload-identity.md#errors). */
const WORKLOAD_REFUSALS = new Set(['workload_proof_required', 'invalid_workload_token', 'workload_mismatch']);

/** How a run of the agent ended. */
export interface AgentResult {
  code: number;
  message: string;
}

/** Ends the agent with an exit code and a message for the operator. */
export class AgentExit extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** What ends the agent's wait. */
export type Trigger =
  | { kind: 'rotate'; why: string }
  | { kind: 'recheck' }
  | { kind: 'stop' }
  | { kind: 'exit'; exit: AgentExit };

/** What one WatchExpiry event means for the token kept in `file`; undefined: keep waiting. */
export function judgeEvent(e: ExpiryEvent, token: AgentToken, file: string): Trigger | undefined {
  if (e.type === ExpiryEventType.FAMILY_REVOKED && (e.familyId === token.familyId || e.tokenId === token.id)) {
    return exit(
      AGENT_EXIT.revoked,
      `family ${token.familyId} was revoked${e.reason ? ` (${e.reason})` : ''}: the token in ${file} is dead; issue a new token`,
    );
  }
  if (e.tokenId !== token.id) return undefined;
  switch (e.type) {
    case ExpiryEventType.SNAPSHOT:
      return e.state === TokenState.ACTIVE || e.state === TokenState.UNSPECIFIED
        ? undefined
        : { kind: 'exit', exit: notActive({ ...token, state: e.state }, file) };
    case ExpiryEventType.EXPIRING_SOON: {
      const thresholdMs = Number(e.threshold?.seconds ?? 0n) * 1000;
      // A threshold as long as the whole lifetime was due at birth, and would be for every
      // successor of the same lifetime too: rotating on it would loop. The fraction covers it.
      if (thresholdMs >= token.expiresAt - token.createdAt) return undefined;
      return { kind: 'rotate', why: `EXPIRING_SOON (threshold ${thresholdMs / 1000} s)` };
    }
    case ExpiryEventType.EXPIRED:
      return exit(AGENT_EXIT.revoked, `token ${token.id} expired before it could be rotated; issue a new token`);
    case ExpiryEventType.REVOKED:
      return exit(
        AGENT_EXIT.revoked,
        `token ${token.id} was revoked${e.reason ? ` (${e.reason})` : ''}; issue a new token`,
      );
    case ExpiryEventType.ROTATED:
      return { kind: 'exit', exit: rotatedElsewhere(`token ${token.id}`, e.successorId, file) };
    default:
      return undefined;
  }
}

/** The exit for a token found in a state other than ACTIVE. */
export function notActive(token: AgentToken, file: string): AgentExit {
  switch (token.state) {
    case TokenState.ROTATED:
      return rotatedElsewhere(`token ${token.id}`, '', file);
    case TokenState.EXPIRED:
      return new AgentExit(AGENT_EXIT.revoked, `token ${token.id} has expired; issue a new token`);
    default:
      return new AgentExit(AGENT_EXIT.revoked, `token ${token.id} was revoked; issue a new token`);
  }
}

function rotatedElsewhere(what: string, successorId: string, file: string): AgentExit {
  return new AgentExit(
    AGENT_EXIT.rotatedElsewhere,
    `${what} was rotated by another client${successorId ? ` (successor ${successorId})` : ''}; only that client received the successor's secret, so this agent cannot continue. Put the current token into ${file} and restart`,
  );
}

/**
 * A final (non-retryable) server answer while `doing`, as an agent exit with a message for the
 * operator. `actorTokenFile`: the agent's --actor-token-file, if any, named in a workload refusal.
 */
export function finalError(file: string, e: unknown, doing: string, actorTokenFile?: string): Error {
  if (!(e instanceof ConnectError)) return e instanceof Error ? e : new Error(String(e));
  const domain = e.metadata.get('rotor-error');
  if (domain !== null && WORKLOAD_REFUSALS.has(domain)) return workloadRefusal(file, e, domain, actorTokenFile);
  if (domain === 'reuse_detected') return new AgentExit(AGENT_EXIT.revoked, `family revoked: ${e.rawMessage}`);
  if (domain === 'already_rotated')
    return rotatedElsewhere(`the token in ${file}`, e.metadata.get('rotor-successor-id') ?? '', file);
  switch (e.code) {
    case Code.Unauthenticated:
      return new AgentExit(
        AGENT_EXIT.revoked,
        `the token in ${file} no longer authenticates (${e.rawMessage}): it or its family was revoked, it expired, or it was rotated elsewhere; issue a new token`,
      );
    case Code.FailedPrecondition:
      return new AgentExit(AGENT_EXIT.revoked, `${doing}: ${e.rawMessage}`);
    case Code.PermissionDenied:
      return new AgentExit(
        AGENT_EXIT.error,
        `${doing}: ${e.rawMessage} (the token needs the rotor:rotate scope to rotate itself)`,
      );
    default:
      return new AgentExit(AGENT_EXIT.error, `${doing}: ${describeError(e)}`);
  }
}

/** The exit for a refused workload proof: what was refused and what to fix, never the JWT. */
function workloadRefusal(file: string, e: ConnectError, domain: string, actorTokenFile: string | undefined): AgentExit {
  const message =
    domain === 'workload_proof_required'
      ? actorTokenFile === undefined
        ? `the token in ${file} is bound to a workload: rotating it needs the workload's JWT. Start the agent with --actor-token-file naming the file the workload's JWT is kept in (a Kubernetes projected service-account token, a CI job's id_token)`
        : `the token in ${file} is bound to a workload and the server received no workload JWT (${e.rawMessage}); check that ${actorTokenFile} holds the JWT`
      : domain === 'workload_mismatch'
        ? `the workload JWT in ${actorTokenFile ?? '(none)'} is not the workload the token in ${file} is bound to (${e.rawMessage}): run the agent in that workload, or issue a token bound to this one`
        : `the server refused the workload JWT in ${actorTokenFile ?? '(none)'} (${e.rawMessage}): the file must hold a current JWT from a trusted issuer, never used for a rotation before (each is accepted once)`;
  return new AgentExit(AGENT_EXIT.workloadProof, message);
}

function exit(code: number, message: string): Trigger {
  return { kind: 'exit', exit: new AgentExit(code, message) };
}

/** A short, secret-free description of an error for the log. */
export function describeError(e: unknown): string | undefined {
  if (e === undefined) return undefined;
  if (e instanceof ConnectError) return `${Code[e.code]}: ${e.rawMessage}`;
  return e instanceof Error ? e.message : String(e);
}
