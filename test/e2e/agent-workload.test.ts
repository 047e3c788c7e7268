import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { startTestIssuer, type TestIssuer } from '../support/jwt-issuer.js';
import { secretsIn } from '../support/leak-scan.js';
import { runCli, startCli, startServe, waitFor, type CliProcess, type ServeProcess } from '../support/process.js';
import { writeTrustConfig } from '../support/trust.js';

interface CliToken {
  id: string;
  family_id: string;
  previous_id: string | null;
  state: string;
}

/**
 * `rotor agent --actor-token-file` (docs/agent.md, "Tokens bound to a workload") as a process
 * against `rotor serve` trusting a loopback JWT issuer. Each JWT is accepted once (its jti is
 * spent), so an agent that keeps a bound token fresh across several rotations proves it reads
 * the file again before each one.
 */
describe.each(ENGINES)('rotor agent with a workload-bound token (real serve process) on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-agent-wl-'));
  const work = mkdtempSync(join(tmpdir(), 'rotor-agent-wl-files-'));
  const env: Record<string, string> = { ROTOR_DATA_DIR: dataDir, ROTOR_LOG_LEVEL: 'info' };
  const secrets: string[] = [];
  const agents: CliProcess[] = [];
  let ci: TestIssuer;
  let admin: string;
  let serve: ServeProcess;
  let db: ScratchDatabase | undefined;
  const url = () => `http://127.0.0.1:${serve.httpPort}`;

  beforeAll(async () => {
    ci = await startTestIssuer();
    env.ROTOR_TRUST_CONFIG = writeTrustConfig({
      issuers: [{ issuer: ci.issuer, jwks_uri: ci.jwksUri, audiences: ['rotor'], algorithms: ['ES256'] }],
    });
    if (engine === 'postgres') {
      db = await scratchDatabase();
      env.ROTOR_DATABASE_URL = db.url;
    }
    const boot = await runCli(['bootstrap', '--owner', 'ops', '--create'], env);
    expect(boot.code).toBe(0);
    admin = boot.stdout.trim();
    secrets.push(admin);
    serve = await startServe(env);
  });

  afterEach(async () => {
    for (const a of agents.splice(0)) {
      if (a.child.exitCode === null) a.child.kill('SIGKILL');
      await a.exited;
      expect(secretsIn(a.stdout() + a.stderr(), secrets)).toEqual([]);
    }
  });

  afterAll(async () => {
    await serve?.stop();
    await ci?.close();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  /**
   * The family still has only its first token, neither rotated nor revoked. Its lifetime is short
   * (the agent's turn comes at 2/3 of it), so on a loaded machine it may have expired by the time
   * the test looks: that is still "not rotated".
   */
  function expectUntouched(members: { state: string }[]): void {
    expect(members).toHaveLength(1);
    expect(['active', 'expired']).toContain(members[0]!.state);
  }

  async function createBoundToken(owner: string, expiresIn: string): Promise<{ token: CliToken; secret: string }> {
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
        'bound-agent',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        expiresIn,
        '--bind-issuer',
        ci.issuer,
        '--bind-subject',
        'project_path:group/app:*',
        '--bind-audience',
        'rotor',
        '--json',
      ],
      { ROTOR_TOKEN: admin },
    );
    expect(r.stderr).toBe('');
    const created = JSON.parse(r.stdout) as { token: CliToken; secret: string };
    secrets.push(created.secret);
    return created;
  }

  async function family(familyId: string): Promise<CliToken[]> {
    const r = await runCli(['token', 'list', '--server', url(), '--family', familyId, '--json'], {
      ROTOR_TOKEN: admin,
    });
    return (JSON.parse(r.stdout) as { tokens: CliToken[] }).tokens;
  }

  async function jwt(): Promise<string> {
    const j = await ci.sign(Date.now());
    secrets.push(j);
    return j;
  }

  function agent(file: string, firstToken: string, extra: string[], extraEnv: Record<string, string> = {}) {
    const a = startCli(
      [
        'agent',
        '--token-file',
        file,
        '--server',
        url(),
        '--max-backoff',
        '1s',
        '--poll-interval',
        '1s',
        '--rotate-at-fraction',
        '0.5',
        ...extra,
      ],
      { ROTOR_TOKEN: firstToken, ...extraEnv },
    );
    agents.push(a);
    return a;
  }

  const fileToken = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined);

  it('keeps a bound token fresh while the actor-token file is replaced between rotations (each JWT once)', async () => {
    const { token, secret } = await createBoundToken('svc-wl-fresh', '10s');
    const dir = join(work, 'fresh');
    const queue = join(dir, 'queue');
    mkdirSync(queue, { recursive: true });
    const actorFile = join(dir, 'id_token');
    const file = join(dir, 'token');
    // The workload's side: the hook (run after every write of the token file, before the next
    // rotation) moves the next fresh JWT over the actor-token file, as a kubelet or CI runner would.
    writeFileSync(actorFile, `${await jwt()}\n`);
    for (let i = 1; i <= 4; i++) writeFileSync(join(queue, `jwt-${i}`), `${await jwt()}\n`);
    const used = readFileSync(join(queue, 'jwt-1'), 'utf8').trim();
    const hook = join(dir, 'next-jwt.sh');
    writeFileSync(
      hook,
      `next=$(ls "$QUEUE" | sort | head -n 1)\n[ -n "$next" ] && mv "$QUEUE/$next" "$ACTOR_FILE"\nexit 0\n`,
    );
    const a = agent(file, secret, ['--actor-token-file', actorFile, '--exec', `sh '${hook}'`], {
      QUEUE: queue,
      ACTOR_FILE: actorFile,
    });

    // Three rotations, each with the JWT the hook put in place after the previous write.
    let current = secret;
    for (let n = 1; n <= 3; n++) {
      current = await waitFor(
        `rotation ${n}`,
        () => {
          if (a.child.exitCode !== null) throw new Error(`the agent exited ${a.child.exitCode}:\n${a.stderr()}`);
          const t = fileToken(file);
          return t !== undefined && t !== current ? t : undefined;
        },
        30_000,
      );
      secrets.push(current);
    }
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    expect(existsSync(`${file}.pending`)).toBe(false);
    const members = await family(token.family_id);
    expect(members.length).toBeGreaterThanOrEqual(4);
    expect(members.at(-1)!.state).toBe('active');
    expect(members.slice(0, -1).every((m) => m.state === 'rotated')).toBe(true);

    // The first rotation's JWT is spent: presenting it again is refused, which is why the agent
    // must read the file afresh (and the CLI says so in its own words).
    const spent = join(dir, 'spent');
    writeFileSync(spent, `${used}\n`);
    const again = await runCli(['token', 'rotate', '--server', url(), '--actor-token-file', spent], {
      ROTOR_TOKEN: current,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      'rotor: unauthenticated: the workload JWT (--actor-token-file or ROTOR_ACTOR_TOKEN) has been used before (jti replay): request a fresh JWT\n',
    );
  }, 90_000);

  it('without --actor-token-file: exits 6 saying what is missing, leaves no F.pending and the token active', async () => {
    const { token, secret } = await createBoundToken('svc-wl-missing', '6s');
    const file = join(work, 'missing.token');
    const a = agent(file, secret, []);
    expect(await a.exited).toBe(6);
    expect(a.stderr()).toMatch(
      /rotor agent: the token in .*missing\.token is bound to a workload: rotating it needs the workload's JWT\. Start the agent with --actor-token-file .*; the token in .*missing\.token was not rotated and is still active\n$/,
    );
    expect(readdirSync(work).filter((f) => f.startsWith('missing.token'))).toEqual(['missing.token']);
    expectUntouched(await family(token.family_id));
  }, 30_000);

  it('with a spent JWT in the file: exits 6 naming the file and the refusal, leaves no F.pending', async () => {
    const { token, secret } = await createBoundToken('svc-wl-spent', '6s');
    const file = join(work, 'spent.token');
    const actorFile = join(work, 'spent.jwt');
    const j = await jwt();
    // Spend it on another token first.
    const other = await createBoundToken('svc-wl-spender', '1h');
    writeFileSync(actorFile, `${j}\n`);
    const spend = await runCli(['token', 'rotate', '--server', url(), '--actor-token-file', actorFile, '--json'], {
      ROTOR_TOKEN: other.secret,
    });
    expect(spend.stderr).toBe('');
    secrets.push((JSON.parse(spend.stdout) as { secret: string }).secret);

    const a = agent(file, secret, ['--actor-token-file', actorFile]);
    expect(await a.exited).toBe(6);
    expect(a.stderr()).toContain(
      `rotor agent: the server refused the workload JWT in ${actorFile} (actor_token has been used before (jti replay): request a fresh JWT)`,
    );
    expect(existsSync(`${file}.pending`)).toBe(false);
    expectUntouched(await family(token.family_id));
  }, 30_000);

  it('refuses an unreadable --actor-token-file at start (exit 2)', async () => {
    const r = await runCli(
      ['agent', '--token-file', join(work, 'never.token'), '--actor-token-file', join(work, 'absent.jwt')],
      { ROTOR_TOKEN: admin, ROTOR_SERVER: url() },
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`rotor: --actor-token-file: cannot read ${join(work, 'absent.jwt')} (ENOENT)`);
    expect(existsSync(join(work, 'never.token'))).toBe(false);
  });
});
