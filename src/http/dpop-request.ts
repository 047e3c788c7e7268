import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
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
