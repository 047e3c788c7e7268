/**
 * `rotor agent --dpop-key-file` (docs/agent.md, docs/dpop.md) as a process against `rotor serve`
 * as a process: the CLI creates a token bound to a key file it makes with mode 0600, the agent
 * proves every call with that key and rotates the token file before expiry, survives the server
 * being SIGKILLed mid-rotation (same idempotency key, a fresh proof, the same successor, no
 * revocation), and the successor it writes is bound to the same key: useless without it.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { secretsIn } from '../support/leak-scan.js';
import { runCli, startCli, startServe, waitFor, type ServeProcess } from '../support/process.js';

interface CliToken {
  id: string;
  family_id: string;
  state: string;
  revoke_reason: string | null;
  dpop_jkt: string | null;
}

describe.each(ENGINES)('rotor agent with a DPoP key end to end on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-agent-dpop-'));
  const work = mkdtempSync(join(tmpdir(), 'rotor-agent-dpop-files-'));
  const env: Record<string, string> = {
    ROTOR_DATA_DIR: dataDir,
    ROTOR_LOG_LEVEL: 'info',
    ROTOR_EXPIRY_THRESHOLDS: '1s',
    ROTOR_EXPIRY_SCAN_INTERVAL_MS: '200',
  };
  const secrets: string[] = [];
  let admin: string;
  let serve: ServeProcess;
  let db: ScratchDatabase | undefined;
  const url = () => `http://127.0.0.1:${serve.httpPort}`;

  beforeAll(async () => {
    if (engine === 'postgres') {
      db = await scratchDatabase();
      env.ROTOR_DATABASE_URL = db.url;
    }
    const boot = await runCli(['bootstrap', '--create', '--owner', 'ops'], env);
    expect(boot.code).toBe(0);
    admin = boot.stdout.trim();
    secrets.push(admin);
    serve = await startServe(env);
  });
  afterAll(async () => {
    await serve?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  async function family(familyId: string): Promise<CliToken[]> {
    const r = await runCli(['token', 'list', '--server', url(), '--family', familyId, '--json'], {
      ROTOR_TOKEN: admin,
    });
    return (JSON.parse(r.stdout) as { tokens: CliToken[] }).tokens;
  }

  it(`keeps a bound token fresh across a server SIGKILLed mid-rotation without revoking the family on ${engine}`, async () => {
    const keyFile = join(work, 'dpop.pem');
    const created = await runCli(
      [
        'token',
        'create',
        '--server',
        url(),
        '--kind',
        'service_account',
        '--owner',
        'svc-dpop',
        '--name',
        'agent',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        '60s',
        '--dpop-key-file',
        keyFile,
        '--json',
      ],
      { ROTOR_TOKEN: admin },
    );
    expect(created.stderr).toBe('');
    const { token, secret } = JSON.parse(created.stdout) as { token: CliToken; secret: string };
    secrets.push(secret);
    // The CLI made the key file, private to its owner, and bound the token to it.
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(token.dpop_jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const file = join(work, 'dpop.token');
    const proxy = new FaultProxy(serve.httpPort);
    await proxy.start();
    try {
      let committed: CliToken[] = [];
      const lost = proxy.loseNextResponse('/rotor.v1.TokenService/RotateToken', async () => {
        serve.child.kill('SIGKILL');
        await new Promise((r) => serve.child.once('exit', r));
        serve = await startServe(env);
        committed = await family(token.family_id);
        proxy.targetPort = serve.httpPort;
      });
      const a = startCli(
        [
          'agent',
          '--token-file',
          file,
          '--server',
          `http://127.0.0.1:${proxy.port}`,
          '--dpop-key-file',
          keyFile,
          '--max-backoff',
          '1s',
          '--poll-interval',
          '1s',
          '--rotate-at-fraction',
          '0.1',
        ],
        { ROTOR_TOKEN: secret },
      );
      await lost;
      expect(committed.map((m) => m.state)).toEqual(['rotated', 'active']);
      const successor = await waitFor('the successor in the file', () => {
        const t = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
        return t !== undefined && t !== secret ? t : undefined;
      });
      secrets.push(successor);
      a.child.kill('SIGTERM');
      expect(await a.exited).toBe(0);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(a.stderr()).toContain('rotation failed; retrying with the same idempotency key');
      expect(secretsIn(a.stdout() + a.stderr(), secrets)).toEqual([]);
      // One successor, bound to the same key, nothing revoked.
      const members = await family(token.family_id);
      expect(members.map((m) => [m.id, m.state, m.revoke_reason, m.dpop_jkt])).toEqual([
        [token.id, 'rotated', 'rotated', token.dpop_jkt],
        [committed[1]!.id, 'active', null, token.dpop_jkt],
      ]);
      // The file's token is useless without the key, and works with it.
      const without = await runCli(['token', 'get', committed[1]!.id, '--server', url(), '--json'], {
        ROTOR_TOKEN: successor,
      });
      expect(without.code).not.toBe(0);
      expect(without.stderr).toContain('DPoP proof missing');
      const withKey = await runCli(
        ['token', 'get', committed[1]!.id, '--server', url(), '--dpop-key-file', keyFile, '--json'],
        { ROTOR_TOKEN: successor },
      );
      expect(withKey.stderr).toBe('');
      expect(JSON.parse(withKey.stdout)).toMatchObject({ id: committed[1]!.id, state: 'active' });
    } finally {
      await proxy.stop();
    }
  }, 90_000);
});
