import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Writes a ROTOR_TRUST_CONFIG document to a fresh temporary file and returns its path. */
export function writeTrustConfig(doc: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'rotor-trust-')), 'trust.json');
  writeFileSync(file, JSON.stringify(doc, null, 2));
  return file;
}

/** The RFC 8693 token type of a JWT (actor or subject). */
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
