import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { ConfigError } from './config-error.js';
import type { SettingName } from './setting-names.js';

/** The server's certificate chain and private key, PEM, for both ports (README: "TLS"). */
export interface TlsConfig {
  cert: Buffer;
  key: Buffer;
  /** The files they were read from (absolute), for the start-up log line. */
  certFile: string;
  keyFile: string;
  /** When the server certificate expires (ms since the epoch); certificates are read at start only. */
  validTo: number;
}

type Env = Record<string, string | undefined>;

function readPem(env: Env, name: SettingName): { file: string; pem: Buffer } {
  const file = resolve(env[name]!);
  try {
    return { file, pem: readFileSync(file) };
  } catch (e) {
    throw new ConfigError(`${name}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * `ROTOR_TLS_CERT_FILE` and `ROTOR_TLS_KEY_FILE`: both (TLS on both ports) or neither (plain text,
 * for a loopback address or behind a TLS-terminating proxy). A variable that is set but empty is
 * refused rather than read as "no TLS". Read once at start and checked: the first certificate of
 * the chain parses and has not expired, the key is an unencrypted PEM key, and it is that
 * certificate's key. No message ever quotes the key.
 */
export function loadTlsConfig(env: Env, now: number = Date.now()): TlsConfig | undefined {
  for (const name of ['ROTOR_TLS_CERT_FILE', 'ROTOR_TLS_KEY_FILE']) {
    if (name in env && env[name] !== undefined && env[name]!.trim() === '')
      throw new ConfigError(`${name} is set but empty: give a file, or unset it for plain text`);
  }
  const hasCert = env.ROTOR_TLS_CERT_FILE !== undefined;
  const hasKey = env.ROTOR_TLS_KEY_FILE !== undefined;
  if (!hasCert && !hasKey) return undefined;
  if (hasCert !== hasKey)
    throw new ConfigError('ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE go together: set both for TLS, or neither');
  const cert = readPem(env, 'ROTOR_TLS_CERT_FILE');
  const key = readPem(env, 'ROTOR_TLS_KEY_FILE');
  let leaf: X509Certificate;
  try {
    // The first certificate of the file: the server's own, followed by its chain.
    leaf = new X509Certificate(cert.pem);
  } catch {
    throw new ConfigError(`ROTOR_TLS_CERT_FILE: ${cert.file} holds no PEM certificate`);
  }
  if (Date.parse(leaf.validTo) <= now)
    throw new ConfigError(
      `ROTOR_TLS_CERT_FILE: the certificate in ${cert.file} expired on ${new Date(Date.parse(leaf.validTo)).toISOString()}`,
    );
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key.pem);
  } catch (e) {
    const encrypted = /passphrase/i.test((e as Error).message) || key.pem.includes('ENCRYPTED');
    throw new ConfigError(
      `ROTOR_TLS_KEY_FILE: ${key.file} ${encrypted ? 'is encrypted; give the key without a passphrase' : 'holds no PEM private key'}`,
    );
  }
  if (!leaf.checkPrivateKey(privateKey))
    throw new ConfigError(`ROTOR_TLS_KEY_FILE: ${key.file} is not the key of the certificate in ${cert.file}`);
  try {
    createSecureContext({ cert: cert.pem, key: key.pem });
  } catch {
    throw new ConfigError(
      `ROTOR_TLS_CERT_FILE: ${cert.file} is not a certificate chain Node can serve with ${key.file}`,
    );
  }
  return { cert: cert.pem, key: key.pem, certFile: cert.file, keyFile: key.file, validTo: Date.parse(leaf.validTo) };
}
