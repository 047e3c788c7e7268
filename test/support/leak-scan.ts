import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The shape of a full Rotor secret: kind prefix, 43 random and 6 checksum base62 characters. */
const SECRET_SHAPE = /rtr_(pat|prj|grp|sa)_[0-9A-Za-z]{49}/g;

/** A signed JWT whose header and payload are JSON objects (`eyJ` is base64url of `{"`). */
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/g;

/** Every full secret or signed JWT (by shape, or from `known`) found in `text`. */
export function secretsIn(text: string, known: Iterable<string> = []): string[] {
  const found = new Set([...(text.match(SECRET_SHAPE) ?? []), ...(text.match(JWT_SHAPE) ?? [])]);
  for (const k of known) if (text.includes(k)) found.add(k);
  return [...found];
}

/** Scans every file under `dir` (database, WAL, key file…) for secrets, as raw bytes read as latin1. */
export function secretsInDirectory(dir: string, known: Iterable<string> = []): { file: string; secret: string }[] {
  const hits: { file: string; secret: string }[] = [];
  const knownList = [...known];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else for (const secret of secretsIn(readFileSync(path).toString('latin1'), knownList)) hits.push({ file: path, secret: secret.slice(0, 12) + '…' });
    }
  };
  walk(dir);
  return hits;
}
