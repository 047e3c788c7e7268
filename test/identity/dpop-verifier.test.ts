import { describe, expect, it } from 'vitest';
import { JoseDpopVerifier } from '../../src/identity/dpop-verifier.js';
import { MemoryReplayCache } from '../../src/identity/replay-cache.js';
import { dpopProof, newDpopKey } from '../support/dpop.js';

const HTU = 'https://rotor.example/rotor.v1.TokenService/RotateToken';
const NOW = Date.UTC(2026, 11, 7, 12);
const iat = Math.floor(NOW / 1000);

function verifier() {
  return new JoseDpopVerifier(new MemoryReplayCache(), () => NOW, { maxAgeSeconds: 60, nonces: undefined });
}

const check = (proof: string) => ({
  proof,
  htm: 'POST',
  htus: [HTU],
  ath: undefined,
  athRequired: false,
  credential: true,
});

describe('DPoP proof verification with imported keys kept (src/identity/dpop-verifier.ts)', () => {
  it('gives the key thumbprint for the first proof of a key and for every later one', async () => {
    const v = verifier();
    const key = await newDpopKey();
    for (let i = 0; i < 3; i++) {
      await expect(v.verify(check(await dpopProof(key, { htu: HTU, iat })))).resolves.toEqual({ jkt: key.jkt });
    }
    const other = await newDpopKey('ES384');
    const proof = await dpopProof(other, { htu: HTU, iat, header: { alg: 'ES384' } });
    await expect(v.verify(check(proof))).resolves.toEqual({ jkt: other.jkt });
  });

  it('still checks every signature once a key is known: a proof naming that key but signed by another is refused', async () => {
    const v = verifier();
    const [holder, thief] = [await newDpopKey(), await newDpopKey()];
    await v.verify(check(await dpopProof(holder, { htu: HTU, iat })));
    // The thief's proof carries the holder's public key in its header, signed with the thief's key.
    const forged = await dpopProof(thief, { htu: HTU, iat, header: { jwk: holder.publicJwk } });
    await expect(v.verify(check(forged))).rejects.toMatchObject({
      code: 'invalid_dpop_proof',
      message: expect.stringContaining('signature does not verify'),
    });
    // A tampered payload under a known key: refused too.
    const good = await dpopProof(holder, { htu: HTU, iat });
    const [h, , sig] = good.split('.');
    const payload = Buffer.from(JSON.stringify({ htm: 'POST', htu: HTU, iat, jti: 'changed' })).toString('base64url');
    await expect(v.verify(check(`${h}.${payload}.${sig}`))).rejects.toMatchObject({ code: 'invalid_dpop_proof' });
  });

  it('still refuses a replayed proof of a known key', async () => {
    const v = verifier();
    const key = await newDpopKey();
    const proof = await dpopProof(key, { htu: HTU, iat });
    await v.verify(check(proof));
    await expect(v.verify(check(proof))).rejects.toMatchObject({
      code: 'invalid_dpop_proof',
      message: expect.stringContaining('replay'),
    });
  });
});
