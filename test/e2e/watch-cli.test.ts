import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { secretsIn } from '../support/leak-scan.js';
import { runCli, startCli, startServe, waitFor, type ServeProcess } from '../support/process.js';

interface Line {
  sequence: number;
  type: string;
  token_id: string | null;
  successor_id: string | null;
  state: string | null;
}

/**
 * `rotor watch` as a process against `rotor serve`: output formats, resume after a dropped connection, exit codes.
 * Each test starts several CLI processes (about 0.8 s each on an idle 2-core machine, some 5 s in all):
 * the timeouts leave room for a loaded one.
 */
describe.each(ENGINES)('rotor watch end to end (real serve process) on %s', (engine) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-watch-cli-'));
  const env: Record<string, string> = { ROTOR_DATA_DIR: dataDir, ROTOR_LOG_LEVEL: 'info' };
  const secrets: string[] = [];
  let admin: string;
  let serve: ServeProcess;
  let proxy: FaultProxy;
  const url = () => `http://127.0.0.1:${serve.httpPort}`;

  let db: ScratchDatabase | undefined;

  beforeAll(async () => {
    if (engine === 'postgres') {
      db = await scratchDatabase();
      env.ROTOR_DATABASE_URL = db.url;
    }
    const boot = await runCli(['bootstrap', '--create', '--owner', 'ops'], env);
    admin = boot.stdout.trim();
    secrets.push(admin);
    serve = await startServe(env);
    proxy = new FaultProxy(serve.httpPort);
    await proxy.start();
  });

  afterAll(async () => {
    await proxy.stop();
    await serve.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await db?.drop();
  });

  async function create(owner: string): Promise<{ id: string; family_id: string; secret: string }> {
    const r = await runCli(
      [
        'token',
        'create',
        '--server',
        url(),
        '--owner',
        owner,
        '--name',
        'w',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        '1h',
        '--json',
      ],
      { ROTOR_TOKEN: admin },
    );
    const { token, secret } = JSON.parse(r.stdout) as { token: { id: string; family_id: string }; secret: string };
    secrets.push(secret);
    return { ...token, secret };
  }

  async function rotate(secret: string): Promise<{ id: string; secret: string }> {
    const r = await runCli(['token', 'rotate', '--server', url(), '--json'], { ROTOR_TOKEN: secret });
    expect(r.stderr).toBe('');
    const { token, secret: next } = JSON.parse(r.stdout) as { token: { id: string }; secret: string };
    secrets.push(next);
    return { id: token.id, secret: next };
  }

  it('prints JSON lines, and after a dropped connection resumes with after_sequence: the missed event once, no snapshot again, no duplicate', async () => {
    const t = await create('watch-json');
    const w = startCli(
      [
        'watch',
        '--family',
        t.family_id,
        '--snapshot',
        '--json',
        '--server',
        `http://127.0.0.1:${proxy.port}`,
        '--max-backoff',
        '1s',
      ],
      { ROTOR_TOKEN: admin },
    );
    const lines = () =>
      w
        .stdout()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Line);
    try {
      await waitFor('the snapshot', () =>
        lines().some((l) => l.type === 'SNAPSHOT' && l.token_id === t.id && l.state === 'active'),
      );
      const s1 = await rotate(t.secret);
      await waitFor('the first rotation', () =>
        lines().some((l) => l.type === 'ROTATED' && l.token_id === t.id && l.successor_id === s1.id),
      );

      // Cut the stream and keep the server unreachable through the proxy while the next rotation happens.
      proxy.paused = true;
      proxy.dropAll();
      await waitFor('the watch to notice', () => w.stderr().includes('stream interrupted'));
      const s2 = await rotate(s1.secret);
      proxy.paused = false;
      await waitFor('the missed rotation', () =>
        lines().some((l) => l.type === 'ROTATED' && l.token_id === s1.id && l.successor_id === s2.id),
      );
      const s3 = await rotate(s2.secret);
      await waitFor('a live rotation after the resume', () =>
        lines().some((l) => l.type === 'ROTATED' && l.token_id === s2.id && l.successor_id === s3.id),
      );
    } finally {
      w.child.kill('SIGTERM');
    }
    expect(await w.exited).toBe(0);
    const all = lines();
    const seqs = all.map((l) => l.sequence);
    expect(new Set(seqs).size).toBe(seqs.length);
    // The requested snapshot of the first token came once (a successor's creation is logged as a SNAPSHOT of it).
    expect(all.filter((l) => l.type === 'SNAPSHOT' && l.token_id === t.id)).toHaveLength(1);
    expect(all.filter((l) => l.type === 'ROTATED').map((l) => l.token_id)).toEqual([
      t.id,
      expect.any(String),
      expect.any(String),
    ]);
    expect(seqs.slice(1)).toEqual([...seqs.slice(1)].sort((a, b) => a - b));
    expect(w.stderr()).toMatch(/reconnecting in \d+ ms after sequence \d+/);
    expect(secretsIn(w.stdout() + w.stderr(), secrets)).toEqual([]);
  }, 60_000);

  it('prints human lines for the credential’s own token by default', async () => {
    const t = await create('watch-human');
    const w = startCli(['watch', '--snapshot', '--server', url()], { ROTOR_TOKEN: t.secret });
    try {
      await waitFor('the snapshot line', () => w.stdout().includes('SNAPSHOT'));
    } finally {
      w.child.kill('SIGTERM');
    }
    expect(await w.exited).toBe(0);
    expect(w.stdout()).toMatch(
      new RegExp(`^\\S+Z #\\d+ SNAPSHOT ${t.id} family_id=${t.family_id} state=active expires_at=\\S+Z\\n$`),
    );
  }, 60_000);

  it('exits 1 with the server’s reason on a refused credential or selection, 2 on bad flags', async () => {
    const bad = await runCli(['watch', '--server', url()], { ROTOR_TOKEN: 'rtr_pat_nonsense' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^rotor: unauthenticated: /);
    const t = await create('watch-denied');
    const denied = await runCli(['watch', '--owner', 'somebody-else', '--server', url()], { ROTOR_TOKEN: t.secret });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^rotor: permission_denied: /);
    const threshold = await runCli(['watch', '--threshold', '5m', '--server', url()], { ROTOR_TOKEN: t.secret });
    expect(threshold.code).toBe(1);
    expect(threshold.stderr).toContain('not scheduled by this server');
    for (const args of [
      ['--after-sequence', '-1'],
      ['--threshold', '0s'],
      ['--owner', 'a', '--family', 'b'],
    ]) {
      const r = await runCli(['watch', ...args, '--server', url()], { ROTOR_TOKEN: t.secret });
      expect(r.code, args.join(' ')).toBe(2);
    }
  }, 60_000);
});
