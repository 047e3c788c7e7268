import type { IncomingMessage } from 'node:http';
import { RotorError } from '../domain/errors.js';

/** Largest form body accepted by the OAuth endpoints. */
export const MAX_FORM_BYTES = 64 * 1024;

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
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) {
      req.resume();
      throw new RotorError('invalid_argument', `request body exceeds ${MAX_FORM_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
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
