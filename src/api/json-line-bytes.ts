/**
 * A JSON log line built as UTF-8 bytes, field by field, into one growing buffer that holds the
 * lines written since it was last taken. The access log writes one line per call; as strings,
 * each line was a dozen concatenations that the batch's join, the by-shape scan and the UTF-8
 * encoding then walked again (bench/README.md, "Eleventh session"). Here constant parts are copied
 * as pre-encoded bytes and plain ASCII values byte by byte; anything else goes through
 * JSON.stringify, so the bytes are always what `JSON.stringify` and UTF-8 encoding would give.
 */
export class JsonLineBytes {
  private buf: Buffer;
  private at = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Bytes held (since the last take). */
  get length(): number {
    return this.at;
  }

  /** Drops everything after the first `length` bytes (a line that was not finished). */
  truncate(length: number): void {
    if (length < this.at) this.at = length;
  }

  /** Pre-encoded bytes, as they are: constant JSON fragments made once with `Buffer.from`. */
  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  /** A JSON string: `s` quoted and escaped as JSON.stringify does. */
  string(s: string): void {
    this.room(s.length + 2);
    const b = this.buf;
    let at = this.at;
    b[at++] = QUOTE;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      // Printable ASCII other than `"` and `\` is the same byte in JSON and in UTF-8.
      if (c < 0x20 || c > 0x7e || c === QUOTE || c === BACKSLASH) {
        this.utf8(JSON.stringify(s));
        return;
      }
      b[at++] = c;
    }
    b[at++] = QUOTE;
    this.at = at;
  }

  /** A non-negative integer as JSON (status codes). */
  uint(n: number): void {
    if (n >= 0 && n < 10) {
      this.room(1);
      this.buf[this.at++] = 0x30 + n;
    } else this.utf8(String(n));
  }

  /** Text that is JSON as it stands (a number formatted elsewhere, `null`), encoded as UTF-8. */
  utf8(text: string): void {
    this.room(text.length * 3);
    const b = this.buf;
    let at = this.at;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 0x7f) {
        this.at += b.write(text, this.at, 'utf8');
        return;
      }
      b[at++] = c;
    }
    this.at = at;
  }

  /**
   * Everything held, as a buffer the caller now owns; this starts over with a fresh buffer (the
   * taken one may still be waiting to be written). Empty when nothing is held.
   */
  take(): Buffer {
    if (this.at === 0) return EMPTY;
    const taken = this.buf.subarray(0, this.at);
    this.buf = Buffer.allocUnsafe(this.buf.length);
    this.at = 0;
    return taken;
  }

  private room(bytes: number): void {
    if (this.at + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + bytes));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const EMPTY = Buffer.alloc(0);
