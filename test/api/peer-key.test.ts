import { describe, expect, it } from 'vitest';
import { peerKey } from '../../src/api/peer-key.js';

describe('peerKey (per-peer connection limit of the gRPC port)', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['::FFFF:cb00:7107', '203.0.113.7'],
    ['2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff::', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    [undefined, 'unknown'],
    ['', 'unknown'],
  ])('%s counts as %s', (address, key) => {
    expect(peerKey(address)).toBe(key);
  });

  it('puts two addresses of one /64 under one key and neighbouring /64s under two', () => {
    expect(peerKey('2001:db8:0:1::a')).toBe(peerKey('2001:db8:0:1:ffff:ffff:ffff:ffff'));
    expect(peerKey('2001:db8:0:1::a')).not.toBe(peerKey('2001:db8:0:2::a'));
  });
});
