import { UsageError } from './usage-error.js';

/**
 * The server the CLI talks to when `--server` is not given: `ROTOR_SERVER`, else the HTTP port
 * the same environment would make `rotor serve` listen on (`ROTOR_HOST`, `ROTOR_HTTP_PORT`, https
 * when `ROTOR_TLS_CERT_FILE` is set), so a shell set up to run the server reaches it too. A
 * wildcard bind address is reached over loopback; port 0 (any free port) names no port and is
 * ignored.
 */
export function defaultServerUrl(env: NodeJS.ProcessEnv): string {
  if (env.ROTOR_SERVER) return env.ROTOR_SERVER;
  const scheme = env.ROTOR_TLS_CERT_FILE ? 'https' : 'http';
  let host = env.ROTOR_HOST || '127.0.0.1';
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::' || host === '[::]') host = '::1';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  let port = 8080;
  const text = env.ROTOR_HTTP_PORT;
  if (text !== undefined && text !== '') {
    if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
      throw new UsageError(`ROTOR_HTTP_PORT must be a port number (0-65535), got "${text}"`);
    if (Number(text) !== 0) port = Number(text);
  }
  return `${scheme}://${host}:${port}`;
}
