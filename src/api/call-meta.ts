import { createContextKey, type HandlerContext } from '@connectrpc/connect';
import type { CallMeta } from '../app/context.js';

/**
 * The call facts (bearer header, network peer) as each server saw them. Both servers set it, so
 * handlers need not build a Headers object per call (a measurable cost on the gRPC hot path).
 */
export const callMetaKey = createContextKey<CallMeta | undefined>(undefined, { description: 'call meta' });

/** Extracts the transport-neutral call facts from a Connect handler context. */
export function callMeta(ctx: HandlerContext): CallMeta {
  return (
    ctx.values.get(callMetaKey) ?? { authorization: ctx.requestHeader.get('authorization') ?? undefined, peer: null }
  );
}
