import { constants } from 'node:fs';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import {
  calculateJwkThumbprint,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  importPKCS8,
  type CryptoKey,
  type JWK,
} from 'jose';
import { UsageError } from './usage-error.js';

/** A client's DPoP key (docs/dpop.md): the private key, its public JWK and thumbprint. */
export interface DpopKey {
  privateKey: CryptoKey;
  publicJwk: JWK;
  jkt: string;
}

/**
 * Loads the EC P-256 private key (PKCS#8 PEM) of `--dpop-key-file`, creating it with mode 0600
 * when the file does not exist (`create`), so a key is made once and never leaves the host.
 */
export async function loadDpopKey(path: string, create: boolean): Promise<DpopKey> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !create)
      throw new UsageError(`--dpop-key-file ${path}: ${(e as Error).message}`);
    pem = await createKeyFile(path);
  }
  let privateKey: CryptoKey;
  try {
    privateKey = await importPKCS8(pem, 'ES256', { extractable: true });
  } catch {
    throw new UsageError(`--dpop-key-file ${path}: not an EC P-256 private key in PKCS#8 PEM`);
  }
  const { kty, crv, x, y } = await exportJWK(privateKey);
  const publicJwk: JWK = { kty, crv, x, y };
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') };
}

/** Writes a fresh key with O_EXCL and mode 0600; a concurrent creator's key wins. */
async function createKeyFile(path: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const pem = await exportPKCS8(privateKey);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readFile(path, 'utf8');
    throw new UsageError(`--dpop-key-file ${path}: ${(e as Error).message}`);
  }
  try {
    await handle.writeFile(pem);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return pem;
}
