import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError } from './config.js';

/** The server's certificate chain and private key, PEM, for both ports (README: "TLS"). */
export interface TlsConfig {
  cert: Buffer;
  key: Buffer;
  /** The files they were read from, for the start-up log line. */
  certFile: string;
  keyFile: string;
}

type Env = Record<string, string | undefined>;

function readPem(env: Env, name: string): { file: string; pem: Buffer } {
  const file = env[name]!;
  try {
    return { file, pem: readFileSync(file) };
  } catch (e) {
    throw new ConfigError(`${name}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * `ROTOR_TLS_CERT_FILE` and `ROTOR_TLS_KEY_FILE`: both (TLS on both ports) or neither (plain text,
 * for a loopback address or behind a TLS-terminating proxy). Read once at start, and checked to
 * be a PEM chain and the key that goes with it; no message ever quotes the key.
 */
export function loadTlsConfig(env: Env): TlsConfig | undefined {
  const hasCert = Boolean(env.ROTOR_TLS_CERT_FILE);
  const hasKey = Boolean(env.ROTOR_TLS_KEY_FILE);
  if (!hasCert && !hasKey) return undefined;
  if (hasCert !== hasKey) throw new ConfigError('ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE go together: set both for TLS, or neither');
  const cert = readPem(env, 'ROTOR_TLS_CERT_FILE');
  const key = readPem(env, 'ROTOR_TLS_KEY_FILE');
  if (!cert.pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`ROTOR_TLS_CERT_FILE: ${cert.file} holds no PEM certificate`);
  try {
    createSecureContext({ cert: cert.pem, key: key.pem });
  } catch {
    throw new ConfigError(`ROTOR_TLS_KEY_FILE: ${key.file} is not a PEM private key of the certificate in ${cert.file}`);
  }
  return { cert: cert.pem, key: key.pem, certFile: cert.file, keyFile: key.file };
}
