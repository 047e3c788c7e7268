import { describe, expect, it } from 'vitest';
import { defaultServerUrl } from '../../src/cli/server-url.js';
import { inCliTerms } from '../../src/cli/cli-output.js';

describe('the server the CLI talks to by default', () => {
  it.each([
    [{}, 'http://127.0.0.1:8080'],
    [{ ROTOR_SERVER: 'https://rotor.example' }, 'https://rotor.example'],
    [{ ROTOR_SERVER: 'https://rotor.example', ROTOR_HTTP_PORT: '9000' }, 'https://rotor.example'],
    [{ ROTOR_HTTP_PORT: '9000' }, 'http://127.0.0.1:9000'],
    [{ ROTOR_HTTP_PORT: '0' }, 'http://127.0.0.1:8080'],
    [{ ROTOR_HOST: '0.0.0.0', ROTOR_HTTP_PORT: '9000' }, 'http://127.0.0.1:9000'],
    [{ ROTOR_HOST: '::' }, 'http://[::1]:8080'],
    [{ ROTOR_HOST: 'fd00::5' }, 'http://[fd00::5]:8080'],
    [{ ROTOR_HOST: 'rotor.internal', ROTOR_TLS_CERT_FILE: '/etc/rotor/cert.pem' }, 'https://rotor.internal:8080'],
  ])('%o → %s', (env, url) => {
    expect(defaultServerUrl(env)).toBe(url);
  });

  it('names ROTOR_HTTP_PORT when it is not a port', () => {
    expect(() => defaultServerUrl({ ROTOR_HTTP_PORT: '70000' })).toThrow(
      'ROTOR_HTTP_PORT must be a port number (0-65535), got "70000"',
    );
  });
});

describe("server messages in the CLI's flag names", () => {
  it.each([
    ['expires_at is required', '--expires-in or --expires-at is required'],
    ['expires_at must be in the future', 'the expiry (--expires-in / --expires-at) must be in the future'],
    ['policy.max_lifetime_seconds must be positive', '--max-lifetime must be positive'],
    [
      'policy.reuse_grace_seconds must be between 0 and 3600 seconds',
      '--reuse-grace must be between 0 and 3600 seconds',
    ],
    ['policy.overlap_seconds is out of range', '--overlap is out of range'],
    [
      'policy.workload_binding.issuer: is not a trusted issuer of this server',
      '--bind-issuer: is not a trusted issuer of this server',
    ],
    ['page_size must be between 0 and 500', '--page-size must be between 0 and 500'],
    [
      'this token is bound to a workload: rotating it needs actor_token with actor_token_type urn:ietf:params:oauth:token-type:jwt',
      "this token is bound to a workload: rotating it needs the workload's JWT (--actor-token-file PATH or ROTOR_ACTOR_TOKEN)",
    ],
    [
      'actor_token has been used before (jti replay): request a fresh JWT',
      'the workload JWT (--actor-token-file or ROTOR_ACTOR_TOKEN) has been used before (jti replay): request a fresh JWT',
    ],
    ['bearer token has expired', 'bearer token has expired'],
    ['token expires_at is later', 'token expires_at is later'],
  ])('%s', (server, cli) => {
    expect(inCliTerms(server)).toBe(cli);
  });
});
