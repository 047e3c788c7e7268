import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { subkey } from './token-keys.js';

/**
 * The key of DPoP nonces, from the server secret: the one place this derivation happens, so a
 * change of derivation (label "rotor dpop nonce") is one line here.
 */
export function dpopNonceKey(serverSecret: Uint8Array): KeyObject {
  return createSecretKey(subkey(serverSecret, 'rotor dpop nonce'));
}

/**
 * Stateless DPoP nonces (RFC 9449 §8): the keyed MAC of a time step, so every replica that shares
 * the server secret issues and accepts the same nonces without storage. A nonce of the current
 * step or the one before is accepted, so a nonce lives between one and two steps.
 */
export class DpopNonces {
  constructor(
    private readonly key: KeyObject,
    private readonly stepSeconds: number,
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
    for (const s of [step, step - 1]) {
      const want = Buffer.from(this.forStep(s));
      if (want.length === given.length && timingSafeEqual(want, given)) ok = true;
    }
    return ok;
  }

  private step(now: number): number {
    return Math.floor(now / 1000 / this.stepSeconds);
  }

  private forStep(step: number): string {
    return createHmac('sha256', this.key).update(`dpop-nonce:${step}`).digest('base64url');
  }
}
