import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tokenClient } from '../../src/cli/client.js';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { secretsIn } from '../support/leak-scan.js';
import { runCli, startCli, startServe, waitFor, type CliProcess, type ServeProcess } from '../support/process.js';

interface CliToken {
  id: string;
  family_id: string;
  previous_id: string | null;
  state: string;
  expires_at: string;
  revoked_at: string | null;
  revoke_reason: string | null;
}

/**
 * `rotor agent` (docs/agent.md) as a process against `rotor serve` as a process.
 * Tokens live a few seconds and the agent rotates after a fraction of that, so each case takes
 * seconds. A token's clock starts when the test creates it, and the agent (a new Node process)
 * needs about 0.8 s on an idle 2-core machine to look it up and open its stream, several times
 * that under load: lifetimes leave it 6 s or more for that.
 */
describe.each(ENGINES)('rotor agent end to end (real serve process) on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-agent-e2e-'));
  const work = mkdtempSync(join(tmpdir(), 'rotor-agent-files-'));
  // The server schedules one EXPIRING_SOON threshold, 4 s, and scans for due ones every 200 ms.
  const env: Record<string, string> = {
    ROTOR_DATA_DIR: dataDir,
    ROTOR_LOG_LEVEL: 'info',
    ROTOR_EXPIRY_THRESHOLDS: '4s',
    ROTOR_EXPIRY_SCAN_INTERVAL_MS: '200',
  };
  const secrets: string[] = [];
  const agents: CliProcess[] = [];
  let admin: string;
  let serve: ServeProcess;
  const url = () => `http://127.0.0.1:${serve.httpPort}`;

  let db: ScratchDatabase | undefined;

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

  afterEach(async () => {
    for (const a of agents.splice(0)) {
      if (a.child.exitCode === null) a.child.kill('SIGKILL');
      await a.exited;
      // Whatever happened, the agent never printed a secret.
      expect(secretsIn(a.stdout() + a.stderr(), secrets)).toEqual([]);
    }
  });

  afterAll(async () => {
    await serve.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  async function createAgentToken(owner: string, expiresIn: string): Promise<{ token: CliToken; secret: string }> {
    const r = await runCli(
      [
        'token',
        'create',
        '--server',
        url(),
        '--kind',
        'service_account',
        '--owner',
        owner,
        '--name',
        'agent',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        expiresIn,
        '--json',
      ],
      { ROTOR_TOKEN: admin },
    );
    expect(r.stderr).toBe('');
    const created = JSON.parse(r.stdout) as { token: CliToken; secret: string };
    secrets.push(created.secret);
    return created;
  }

  async function getToken(id: string, server = url()): Promise<CliToken> {
    const r = await runCli(['token', 'get', id, '--server', server, '--json'], { ROTOR_TOKEN: admin });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout) as CliToken;
  }

  async function family(familyId: string): Promise<CliToken[]> {
    const r = await runCli(['token', 'list', '--server', url(), '--family', familyId, '--json'], {
      ROTOR_TOKEN: admin,
    });
    return (JSON.parse(r.stdout) as { tokens: CliToken[] }).tokens;
  }

  function agent(file: string, server: string, firstToken: string, extra: string[] = []): CliProcess {
    const a = startCli(
      [
        'agent',
        '--token-file',
        file,
        '--server',
        server,
        '--max-backoff',
        '1s',
        '--poll-interval',
        '1s',
        '--rotate-at-fraction',
        '0.5',
        ...extra,
      ],
      { ROTOR_TOKEN: firstToken },
    );
    agents.push(a);
    return a;
  }

  const fileToken = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined);

  it('rotates the token file on EXPIRING_SOON before expiry (mode 0600), runs the --exec hook, keeps rotating, and stops cleanly on SIGTERM', async () => {
    // 10 s: the 4 s threshold is due 6 s in, and the agent must be watching by then (its stream
    // sends what happens after it opened; the snapshot does not repeat an EXPIRING_SOON).
    const { token, secret } = await createAgentToken('svc-fresh', '10s');
    const file = join(work, 'fresh.token');
    const hookLog = join(work, 'hook.log');
    // The fraction (0.9: 9 s) comes after the 4 s threshold (due 6 s in): the stream drives this.
    const a = agent(file, url(), secret, [
      '--rotate-at-fraction',
      '0.9',
      '--exec',
      `printf '%s %s %s\\n' "$ROTOR_TOKEN_ID" "$ROTOR_TOKEN_FILE" "\${ROTOR_TOKEN:-unset}" >> '${hookLog}'`,
    ]);

    const successorSecret = await waitFor('the first rotation', () => {
      const t = fileToken(file);
      return t !== undefined && t !== secret ? t : undefined;
    });
    secrets.push(successorSecret);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // The agent writes the successor, then forgets the pending record: wait for the second step.
    await waitFor('the pending record to be cleared', () => !existsSync(`${file}.pending`));

    const old = await getToken(token.id);
    expect(old.state).toBe('rotated');
    expect(Date.parse(old.revoked_at!)).toBeLessThan(Date.parse(old.expires_at));
    // The file's token works, and it is the successor.
    const self = await runCli(['token', 'list', '--server', url(), '--family', token.family_id, '--json'], {
      ROTOR_TOKEN: successorSecret,
    });
    expect(self.code).toBe(0);
    const members = (JSON.parse(self.stdout) as { tokens: CliToken[] }).tokens;
    expect(members.map((m) => m.state)).toEqual(['rotated', 'active']);
    const successor = members[1]!;
    expect(successor.previous_id).toBe(token.id);
    // The hook ran after the first write (ROTOR_TOKEN into the absent file) and after the rotation,
    // with ROTOR_TOKEN_ID and ROTOR_TOKEN_FILE set and ROTOR_TOKEN removed (docs/agent.md, "The hook").
    await waitFor(
      'the hook',
      () =>
        existsSync(hookLog) &&
        readFileSync(hookLog, 'utf8').startsWith(`${token.id} ${file} unset\n${successor.id} ${file} unset\n`),
    );

    // The successor is rotated in turn (same 10 s lifetime, on its own 4 s notice).
    await waitFor('the second rotation', () => {
      const t = fileToken(file);
      if (t !== undefined && t !== successorSecret) {
        secrets.push(t);
        return true;
      }
      return false;
    });
    expect(statSync(file).mode & 0o777).toBe(0o600);

    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(a.stderr()).toContain('"msg":"rotated; wrote the successor"');
    expect(a.stderr()).toContain('"why":"EXPIRING_SOON (threshold 4 s)"');
    expect(a.stderr()).not.toContain('of the lifetime has passed');
    expect((await family(token.family_id)).map((m) => m.state)).toEqual(['rotated', 'rotated', 'active']);
    // 12 s of the tokens' clock, plus CLI processes: 13-20 s alone.
  }, 60_000);

  it('rotates at the lifetime fraction while the stream is open, when the fraction comes before the threshold', async () => {
    // 20 % of 10 s: due 2 s in, 4 s before the 4 s notice. An agent slower to start than 2 s
    // rotates at once on the fraction too; it only has to start before the token expires.
    const { token, secret } = await createAgentToken('svc-fraction', '10s');
    const file = join(work, 'fraction.token');
    const a = agent(file, url(), secret, ['--rotate-at-fraction', '0.2']);
    const next = await waitFor('the rotation', () => {
      const t = fileToken(file);
      return t !== undefined && t !== secret ? t : undefined;
    });
    secrets.push(next);
    const old = await getToken(token.id);
    expect(old.state).toBe('rotated');
    expect(Date.parse(old.revoked_at!)).toBeLessThan(Date.parse(old.expires_at));
    expect(a.stderr()).toContain('"why":"20 % of the lifetime has passed"');
    expect(a.stderr()).not.toContain('"why":"EXPIRING_SOON');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 20_000);

  it('survives the server being SIGKILLed mid-rotation: the retry with the same key gets the same successor and the family stays alive', async () => {
    // 16 s: the agent rotates 8 s in, and the successor (created before the SIGKILL, received only
    // after the restart) is not due for another 8 s, so a slow restart on a loaded machine cannot
    // make the agent start rotating it before the SIGTERM below.
    const { token, secret } = await createAgentToken('svc-crash', '16s');
    const file = join(work, 'crash.token');
    const proxy = new FaultProxy(serve.httpPort);
    await proxy.start();
    try {
      let committed: CliToken[] = [];
      const lost = proxy.loseNextResponse('/rotor.v1.TokenService/RotateToken', async () => {
        serve.child.kill('SIGKILL');
        await new Promise((r) => serve.child.once('exit', r));
        serve = await startServe(env);
        // The rotation committed before the server died: the token is already superseded.
        committed = await family(token.family_id);
        proxy.targetPort = serve.httpPort;
      });
      const a = agent(file, `http://127.0.0.1:${proxy.port}`, secret);
      await lost;
      expect(committed.map((m) => m.state)).toEqual(['rotated', 'active']);
      const successorSecret = await waitFor('the successor in the file', () => {
        const t = fileToken(file);
        return t !== undefined && t !== secret ? t : undefined;
      });
      secrets.push(successorSecret);
      // Stop the agent now, so that the successor is not rotated in turn while we look at it.
      a.child.kill('SIGTERM');
      expect(await a.exited).toBe(0);
      expect(existsSync(`${file}.pending`)).toBe(false);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      // The retry used the same key and got the successor the lost call had minted.
      expect(a.stderr()).toContain('rotation failed; retrying with the same idempotency key');
      const wrote = a
        .stderr()
        .split('\n')
        .filter((l) => l.includes('"msg":"rotated; wrote the successor"'));
      expect(JSON.parse(wrote[0]!)).toMatchObject({ token_id: committed[1]!.id });
      const works = await runCli(['token', 'get', committed[1]!.id, '--server', url(), '--json'], {
        ROTOR_TOKEN: successorSecret,
      });
      expect(works.stderr).toBe('');
      expect(JSON.parse(works.stdout)).toMatchObject({ id: committed[1]!.id, state: 'active', previous_id: token.id });

      // Still exactly one successor, nothing revoked: no reuse was detected.
      expect((await family(token.family_id)).map((m) => [m.id, m.state, m.revoke_reason])).toEqual([
        [token.id, 'rotated', 'rotated'],
        [committed[1]!.id, 'active', null],
      ]);
    } finally {
      await proxy.stop();
    }
    // 18 s alone, 8 of them the token's clock; the rest (a server restart, six CLI processes)
    // grows with the load.
  }, 90_000);

  it('exits non-zero with a clear message when its family is revoked', async () => {
    const { token, secret } = await createAgentToken('svc-revoked', '60s');
    const file = join(work, 'revoked.token');
    // Through a proxy that shows when the server has sent the stream's snapshot of the token: the
    // stream has joined the feed by then, so the revocation reaches the agent as FAMILY_REVOKED.
    // (Its "waiting" line comes before it opens the stream; a revocation right after that line can
    // beat the stream's authentication or snapshot, and the agent then exits 3 with another message.)
    const proxy = new FaultProxy(serve.httpPort);
    await proxy.start();
    try {
      const watching = proxy.responseSeen('/rotor.v1.ExpiryService/WatchExpiry', token.id);
      const a = agent(file, `http://127.0.0.1:${proxy.port}`, secret);
      await watching;
      await tokenClient(url(), admin).revokeFamily({ familyId: token.family_id });
      const code = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
      expect(code).toBe(3);
      expect(a.stderr()).toContain(
        `rotor agent: family ${token.family_id} was revoked (family_revoked): the token in ${file} is dead; issue a new token`,
      );
      expect(fileToken(file)).toBe(secret);
    } finally {
      await proxy.stop();
    }
  }, 20_000);

  it('a second agent on the same file (through another path) exits 5 naming the first, which keeps running', async () => {
    const { secret } = await createAgentToken('svc-twice', '60s');
    const file = join(work, 'twice.token');
    const a = agent(file, url(), secret);
    // The first agent writes ROTOR_TOKEN into the absent file after it took the lock.
    await waitFor('the first write', () => fileToken(file) === secret);
    symlinkSync(work, `${work}-link`);
    try {
      const b = agent(join(`${work}-link`, 'twice.token'), url(), secret);
      const code = await Promise.race([b.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
      expect(code).toBe(5);
      expect(b.stderr()).toContain(
        `rotor agent: another rotor agent (pid ${a.child.pid}) already keeps ${join(`${work}-link`, 'twice.token')} fresh; stop it first`,
      );
    } finally {
      rmSync(`${work}-link`, { force: true });
    }
    expect(a.child.exitCode).toBe(null);
    expect(fileToken(file)).toBe(secret);
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 30_000);

  it('without WatchExpiry (the method answers 404), rotates on the fraction and notices a revocation by polling', async () => {
    const proxy = new FaultProxy(serve.httpPort);
    proxy.refused.add('/rotor.v1.ExpiryService/WatchExpiry');
    await proxy.start();
    try {
      // 20 % of 10 s: due 2 s in; the agent only has to start before the token expires.
      const { token, secret } = await createAgentToken('svc-nostream', '10s');
      const file = join(work, 'nostream.token');
      const a = agent(file, `http://127.0.0.1:${proxy.port}`, secret, ['--rotate-at-fraction', '0.2']);
      const next = await waitFor('the rotation', () => {
        const t = fileToken(file);
        return t !== undefined && t !== secret ? t : undefined;
      });
      secrets.push(next);
      expect(a.stderr()).toContain('the server has no WatchExpiry');
      expect(a.stderr()).toContain('"why":"20 % of the lifetime has passed"');
      await tokenClient(url(), admin).revokeFamily({ familyId: token.family_id });
      const code = await Promise.race([a.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
      expect(code).toBe(3);
      // The revocation can land before the poll's call authenticates (the bearer is refused) or
      // between that and the lookup of the token (introspection answers inactive): both are the
      // same verdict, and both name the file.
      expect(a.stderr()).toMatch(
        new RegExp(
          `rotor agent: the token in ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} no longer authenticates \\((bearer token has been revoked: its family was revoked at [0-9TZ:.-]+|token is not active)\\)`,
        ),
      );
    } finally {
      await proxy.stop();
    }
  }, 20_000);
});
