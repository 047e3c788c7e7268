import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Mode of every file the agent writes: owner read/write only. */
const FILE_MODE = 0o600;

/** Reads the token in `path` (surrounding whitespace dropped); undefined when the file does not exist. */
export async function readTokenFile(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const token = text.trim();
  if (token === '' || /\s/.test(token)) throw new Error(`${path} must hold exactly one token`);
  return token;
}

/**
 * Replaces `path` atomically: a temporary file in the same directory (so rename stays on one file
 * system) created with mode 0600, written and fsynced, renamed over `path`, then the directory
 * fsynced so the rename itself survives a crash. Readers see the old or the new content, never
 * a partial one.
 */
export async function writeFileAtomic(path: string, content: string): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', FILE_MODE);
  try {
    try {
      await fh.chmod(FILE_MODE); // the umask may only have removed bits, but be explicit
      await fh.writeFile(content, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDirectory(dir);
}

async function syncDirectory(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } catch (e) {
    // Some file systems refuse fsync on a directory; the rename is still atomic there.
    if (!['EINVAL', 'EISDIR', 'EPERM', 'EBADF'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
  } finally {
    await d.close();
  }
}

/**
 * A rotation that was started and may not have finished: written BEFORE RotateToken is called,
 * removed after the successor is safely in the token file. `tokenSha256` names the predecessor
 * without storing it (SHA-256 of a 256-bit random secret reveals nothing), so a pending record
 * left behind after the token file was already replaced is recognised as stale.
 */
export interface PendingRotation {
  idempotencyKey: string;
  tokenSha256: string;
  /** Epoch milliseconds when the rotation was first attempted. */
  startedAt: number;
}

/** Where the pending rotation of token file `path` is kept. */
export function pendingPath(path: string): string {
  return `${path}.pending`;
}

/** SHA-256 of a token secret, hex; identifies a token in the pending record. */
export function secretFingerprint(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

const KEY = /^[A-Za-z0-9_-]{16,128}$/;

/** The pending rotation of token file `path`, if any; a malformed record is an error, never ignored. */
export async function readPending(path: string): Promise<PendingRotation | undefined> {
  const file = pendingPath(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const p = parsed as Partial<Record<keyof PendingRotation, unknown>> | undefined;
  if (
    !p ||
    typeof p.idempotencyKey !== 'string' ||
    !KEY.test(p.idempotencyKey) ||
    typeof p.tokenSha256 !== 'string' ||
    !/^[0-9a-f]{64}$/.test(p.tokenSha256) ||
    typeof p.startedAt !== 'number' ||
    !Number.isFinite(p.startedAt)
  ) {
    throw new Error(
      `${file} is not a pending-rotation record; it is written only by rotor agent (remove it only if no rotation is in progress)`,
    );
  }
  return { idempotencyKey: p.idempotencyKey, tokenSha256: p.tokenSha256, startedAt: p.startedAt };
}

/** Persists a pending rotation (atomically, mode 0600) before the rotation call is made. */
export async function writePending(path: string, pending: PendingRotation): Promise<void> {
  await writeFileAtomic(pendingPath(path), `${JSON.stringify(pending)}\n`);
}

/** Forgets the pending rotation of `path` (after the successor is written). */
export async function clearPending(path: string): Promise<void> {
  try {
    await unlink(pendingPath(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    return;
  }
  await syncDirectory(dirname(path));
}

/** A fresh idempotency key: 192 random bits, base64url (32 characters, within the server's 22–128). */
export function newIdempotencyKey(): string {
  return randomBytes(24).toString('base64url');
}
