import type { IncomingMessage } from 'node:http';
import { RotorError } from '../domain/errors.js';

/** Largest form body accepted by the OAuth endpoints. */
const MAX_FORM_BYTES = 64 * 1024;

/** Parameters that RFC 8693 §2.1 allows more than once; every other one must appear once (RFC 6749 §3.2). */
const REPEATABLE = new Set(['audience', 'resource']);

/** A parsed `application/x-www-form-urlencoded` body. */
export interface FormBody {
  get(name: string): string;
  getAll(name: string): string[];
}

/**
 * Reads and parses a form body (RFC 6749 §3.2 / Appendix B) with a size limit. Wrong content
 * type, oversized bodies, invalid UTF-8 and repeated single-valued parameters are
 * `invalid_argument`.
 */
export async function readForm(req: IncomingMessage): Promise<FormBody> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new RotorError('invalid_argument', 'content-type must be application/x-www-form-urlencoded');
  }
  const body = await readBody(req);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    throw new RotorError('invalid_argument', 'request body is not valid UTF-8');
  }
  const params = new URLSearchParams(text);
  for (const name of new Set(params.keys())) {
    if (!REPEATABLE.has(name) && params.getAll(name).length > 1) {
      throw new RotorError('invalid_argument', `parameter ${name} must not be repeated`, { field: name });
    }
  }
  return { get: (n) => params.get(n) ?? '', getAll: (n) => params.getAll(n) };
}

/**
 * Collects the body up to MAX_FORM_BYTES. Past the limit it refuses at once but keeps the
 * request flowing, so the rest of the body is discarded and the answer reaches the client.
 * (Leaving a `for await` loop early would destroy the request: the connection then stalls with
 * the body unread and the client never sees the answer.)
 */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        req.off('data', onData);
        req.resume();
        reject(new RotorError('invalid_argument', `request body exceeds ${MAX_FORM_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    const ended = () => reject(new RotorError('invalid_argument', 'request body ended early'));
    req.once('error', ended);
    req.once('close', ended);
  });
}
