import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AccessRecord } from '../api/access-log.js';
import type { CallMeta } from '../app/context.js';
import type { DpopRequest } from '../app/dpop.js';

/**
 * The DPoP facts of a request on the HTTP port (OAuth endpoints and Connect alike): the `DPoP`
 * header and the URL the request reached, `http(s)://<Host or :authority><path>` without query
 * (docs/dpop.md, "htu"). Undefined when the request carries no proof.
 */
export function dpopOf(req: IncomingMessage): DpopRequest | undefined {
  const proof = req.headers.dpop;
  if (proof === undefined) return undefined;
  const path = (req.url ?? '/').split('?', 1)[0]!.split('#', 1)[0]!;
  const scheme = (req.socket as Partial<TLSSocket>).encrypted === true ? 'https' : 'http';
  const authority = req.headers.host ?? (req.headers[':authority'] as string | undefined) ?? '';
  return {
    proof: Array.isArray(proof) ? (proof[0] ?? '') : proof,
    htm: req.method ?? '',
    url: `${scheme}://${authority}${path}`,
    path,
  };
}

/**
 * The call facts of a request on the HTTP port (Connect RPCs and the other routes alike): bearer
 * header, peer, and DPoP proof. With the access log on, the access record is the call's facts, so
 * `authenticate` notes the token id straight into it (src/api/access-log.ts).
 */
export function httpCallMeta(req: IncomingMessage, rec: AccessRecord | undefined): CallMeta {
  const dpop = dpopOf(req);
  if (rec) {
    if (dpop) rec.dpop = dpop;
    return rec;
  }
  return { authorization: req.headers.authorization, peer: req.socket.remoteAddress ?? null, ...(dpop && { dpop }) };
}
