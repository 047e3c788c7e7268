import { randomFillSync } from 'node:crypto';

/**
 * Random UUIDs (version 4, RFC 9562 §5.4) for the request ids of the access log, one per call
 * that sent none. `crypto.randomUUID` joins each from 20 pieces, a rope of about 600 bytes the
 * first read flattens (bench/README.md, "Tenth session"); this writes the 36 characters into one
 * buffer and reads them out as one string. The random bytes come from the same CSPRNG, drawn
 * 4 KiB at a time.
 */
export class RequestIds {
  private readonly pool = Buffer.alloc(POOL_BYTES);
  private offset = POOL_BYTES;
  private readonly text = Buffer.alloc(36);

  next(): string {
    if (this.offset === POOL_BYTES) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    const p = this.pool;
    const o = this.offset;
    this.offset += 16;
    const t = this.text;
    let at = 0;
    for (let i = 0; i < 16; i++) {
      let byte = p[o + i]!;
      if (i === 6)
        byte = (byte & 0x0f) | 0x40; // version 4
      else if (i === 8) byte = (byte & 0x3f) | 0x80; // variant 10
      t[at++] = HEX[byte >> 4]!;
      t[at++] = HEX[byte & 0x0f]!;
      if (i === 3 || i === 5 || i === 7 || i === 9) t[at++] = DASH;
    }
    return t.toString('latin1', 0, 36);
  }
}

/** 256 UUIDs per refill. */
const POOL_BYTES = 4096;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
const DASH = 0x2d;
