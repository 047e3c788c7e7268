import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { deriveServerKey } from './server-keys.js';

/**
 * The key of DPoP nonces, derived from a server secret through HKDF with its own label (like every
 * key Rotor derives from it, docs/server-key.md): the one place this derivation happens.
 */
export function dpopNonceKey(serverSecret: Uint8Array): KeyObject {
  return createSecretKey(deriveServerKey(serverSecret, 'rotor dpop nonce'));
}

/**
 * Stateless DPoP nonces (RFC 9449 §8): the keyed MAC of a time step, so every replica that shares
 * the server secret issues and accepts the same nonces without storage. A nonce of the current
 * step or the one before is accepted, so a nonce lives between one and two steps. Nonces are issued
 * under the current server key and accepted under it and the previous ones (`previous`), so during a
 * server key drill a nonce from a replica not yet restarted still passes on one that was.
 */
export class DpopNonces {
  constructor(
    private readonly key: KeyObject,
    private readonly stepSeconds: number,
    private readonly previous: readonly KeyObject[] = [],
  ) {}

  /** The nonce to hand out at `now` (ms). */
  current(now: number): string {
    return this.forStep(this.step(now));
  }

  /** True for the nonce of the current or the previous step (constant-time comparison). */
  accepts(nonce: string, now: number): boolean {
    const step = this.step(now);
    const given = Buffer.from(nonce);
    let ok = false;
    for (const key of [this.key, ...this.previous]) {
      for (const s of [step, step - 1]) {
        const want = Buffer.from(this.forStep(s, key));
        if (want.length === given.length && timingSafeEqual(want, given)) ok = true;
      }
    }
    return ok;
  }

  private step(now: number): number {
    return Math.floor(now / 1000 / this.stepSeconds);
  }

  private forStep(step: number, key: KeyObject = this.key): string {
    return createHmac('sha256', key).update(`dpop-nonce:${step}`).digest('base64url');
  }
}
