import { isIP, isIPv4, isIPv6 } from 'node:net';

/**
 * What one connection counts against in the per-peer connection limit of the gRPC port: an IPv4
 * address as it is (an IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address as its /64
 * prefix, because one host is routinely handed a whole /64 (RFC 4291 §2.5.1: interface
 * identifiers are 64 bits) and could otherwise open connections from as many addresses as it
 * likes. Anything else (no address known) is its own key.
 */
export function peerKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const bare = address.split('%', 1)[0]!.toLowerCase();
  if (isIPv4(bare)) return bare;
  if (!isIPv6(bare)) return bare;
  const groups = ipv6Groups(bare);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail split in two). */
function ipv6Groups(address: string): number[] {
  const parse = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => {
          if (!g.includes('.')) return [parseInt(g, 16)];
          const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
          return [(a << 8) | b, (c << 8) | d];
        });
  const gap = address.indexOf('::');
  if (gap < 0) return parse(address);
  const head = parse(address.slice(0, gap));
  const tail = parse(address.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/**
 * The peer key of a call's peer as the servers report it (`CallMeta.peer`): the HTTP port gives
 * the bare address, grpc-js `address:port` (an IPv6 address unbracketed), so a trailing port is
 * cut off unless the whole is already an address. What the failed-authentication brake counts
 * under (docs/limits.md).
 */
export function callPeerKey(peer: string | null): string {
  if (peer === null || peer === '') return 'unknown';
  if (isIP(peer) !== 0) return peerKey(peer);
  const colon = peer.lastIndexOf(':');
  return peerKey(colon > 0 && /^\d+$/.test(peer.slice(colon + 1)) ? peer.slice(0, colon) : peer);
}
