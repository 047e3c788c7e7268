import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import knexFactory from 'knex';

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
      else
        for (const secret of secretsIn(readFileSync(path).toString('latin1'), knownList))
          hits.push({ file: path, secret: `${secret.slice(0, 12)}…` });
    }
  };
  walk(dir);
  return hits;
}

/** Scans every row of every table of a PostgreSQL database (rendered as text) for secrets. */
export async function secretsInPostgres(url: string, known: Iterable<string> = []): Promise<string[]> {
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 1 } });
  try {
    const tables = await knex('information_schema.tables').select('table_name').where({ table_schema: 'public' });
    const hits: string[] = [];
    for (const { table_name } of tables as { table_name: string }[]) {
      const rows = (await knex.raw(`select t::text as row from "${table_name.replace(/"/g, '""')}" t`)) as {
        rows: { row: string }[];
      };
      for (const { row } of rows.rows)
        for (const secret of secretsIn(row, known)) hits.push(`${table_name}: ${secret.slice(0, 12)}…`);
    }
    return hits;
  } finally {
    await knex.destroy();
  }
}
