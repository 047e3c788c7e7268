import { createContextKey, type HandlerContext } from '@connectrpc/connect';
import type { CallMeta } from '../app/context.js';

/** The caller's network peer, set by whichever server accepted the call. */
export const peerKey = createContextKey<string | null>(null, { description: 'network peer' });

/** Extracts the transport-neutral call facts from a Connect handler context. */
export function callMeta(ctx: HandlerContext): CallMeta {
  return { authorization: ctx.requestHeader.get('authorization') ?? undefined, peer: ctx.values.get(peerKey) };
}
