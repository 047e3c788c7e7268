import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { secretsIn } from '../support/leak-scan.js';
import { ROOT, waitFor } from '../support/process.js';
import { startTestServer, type TestServer } from '../support/server.js';

const BUILD_SCRIPT = join(ROOT, 'scripts/build-client.mjs');

interface CliToken {
  id: string;
  family_id: string;
  previous_id: string | null;
  state: string;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], options: { cwd: string; env?: Record<string, string> }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file, ...args], { cwd: options.cwd, env: options.env ?? {} }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Every node_modules directory Node's resolver could look in from `dir` upwards. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) found.push(join(d, 'node_modules'));
    if (dirname(d) === d) return found;
  }
}

/**
 * The self-contained client (`npm run build:client`, README.md "Installing the client on an
 * application host"): built by the real build script, copied alone into an empty directory
 * outside the repository, and run there by a plain `node` with no NODE_PATH and an environment
 * holding only PATH and the ROTOR_* variables, against a real server. If the bundle needed a
 * package from node_modules, Node could not resolve it there and these commands would fail.
 */
describe('the self-contained client bundle on sqlite', () => {
  let server: TestServer;
  let buildDir: string;
  let hostDir: string;
  let client: string;
  const secrets: string[] = [];

  /** The environment of a process on the application host: no NODE_PATH, no NODE_OPTIONS, nothing of the test's. */
  const hostEnv = (extra: Record<string, string>): Record<string, string> => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...extra,
  });
  const bundle = (args: string[], extra: Record<string, string>) =>
    run(client, args, { cwd: hostDir, env: hostEnv(extra) });

  beforeAll(async () => {
    buildDir = mkdtempSync(join(tmpdir(), 'rotor-client-build-'));
    const built = await run(BUILD_SCRIPT, ['--outfile', join(buildDir, 'rotor-client.mjs')], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '' },
    });
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    expect(built.stdout).toMatch(/rotor-client\.mjs \d+\.\d KiB, \d+ modules/);

    hostDir = mkdtempSync(join(tmpdir(), 'rotor-client-host-'));
    client = join(hostDir, 'rotor-client.mjs');
    copyFileSync(join(buildDir, 'rotor-client.mjs'), client);
    server = await startTestServer();
    secrets.push(server.adminSecret);
  });

  afterAll(async () => {
    await server?.stop();
    rmSync(buildDir, { recursive: true, force: true });
    rmSync(hostDir, { recursive: true, force: true });
  });

  it('is one file, away from the repository and from any node_modules', () => {
    expect(readdirSync(hostDir)).toEqual(['rotor-client.mjs']);
    expect(relative(ROOT, hostDir).startsWith('..')).toBe(true);
    expect(nodeModulesAbove(hostDir)).toEqual([]);
    expect(readFileSync(client, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(statSync(client).mode & 0o111).not.toBe(0);
  });

  it('runs `token create` and `token list --json` against the server', async () => {
    const created = await bundle(
      [
        'token',
        'create',
        '--server',
        server.httpUrl,
        '--kind',
        'project',
        '--owner',
        'web',
        '--name',
        'deploy',
        '--expires-in',
        '30d',
      ],
      { ROTOR_TOKEN: server.adminSecret },
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const listed = await bundle(['token', 'list', '--server', server.httpUrl, '--owner', 'web', '--json'], {
      ROTOR_TOKEN: server.adminSecret,
    });
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    const { tokens } = JSON.parse(listed.stdout) as { tokens: CliToken[] };
    expect(tokens.map((t) => t.state)).toEqual(['active']);
    // ROTOR_SERVER works as well as --server.
    const byEnv = await bundle(['token', 'list', '--owner', 'web', '--json'], {
      ROTOR_TOKEN: server.adminSecret,
      ROTOR_SERVER: server.httpUrl,
    });
    expect(byEnv.code).toBe(0);
    expect(JSON.parse(byEnv.stdout)).toEqual(JSON.parse(listed.stdout));
  });

  it('refuses the server commands with a pointer to the full install (exit 2)', async () => {
    const r = await bundle(['migrate'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"migrate" is a server command');
  });

  it('runs `agent`: writes the token file, rotates it once, and stops on SIGTERM with exit 0', async () => {
    // 20 s of lifetime, rotated a quarter in (5 s): room for a slow start of the agent process.
    const created = await bundle(
      [
        'token',
        'create',
        '--server',
        server.httpUrl,
        '--kind',
        'service_account',
        '--owner',
        'svc-bundle',
        '--name',
        'agent',
        '--scope',
        'rotor:rotate',
        '--expires-in',
        '20s',
        '--json',
      ],
      { ROTOR_TOKEN: server.adminSecret },
    );
    expect(created.code).toBe(0);
    const { token, secret } = JSON.parse(created.stdout) as { token: CliToken; secret: string };
    secrets.push(secret);

    mkdirSync(join(hostDir, 'run'), { mode: 0o700 });
    const file = join(hostDir, 'run', 'rotor-token');
    const agent = spawn(
      process.execPath,
      [
        client,
        'agent',
        '--token-file',
        file,
        '--server',
        server.httpUrl,
        '--rotate-at-fraction',
        '0.25',
        '--poll-interval',
        '1s',
        '--max-backoff',
        '1s',
      ],
      { cwd: hostDir, env: hostEnv({ ROTOR_TOKEN: secret }), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
    agent.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
    try {
      const fileToken = () => (existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined);
      // The first write: ROTOR_TOKEN, checked with the server, into the absent file (a slow
      // start may find it due already and replace it at once, so only its presence is awaited).
      await waitFor('the first token in the file', () => fileToken() !== undefined || agent.exitCode !== null, 20_000);
      expect(agent.exitCode, out).toBeNull();
      // The log line may reach the pipe a moment after the file is written.
      await waitFor('the initial-token log line', () =>
        out.includes('"msg":"wrote the initial token from ROTOR_TOKEN"'),
      );
      const successorSecret = await waitFor(
        'the first rotation',
        () => {
          const t = fileToken();
          if (agent.exitCode !== null) throw new Error(`the agent exited ${agent.exitCode}:\n${out}`);
          return t !== undefined && t !== secret ? t : undefined;
        },
        30_000,
      );
      secrets.push(successorSecret);
      expect(statSync(file).mode & 0o777).toBe(0o600);

      agent.kill('SIGTERM');
      expect(await exited, out).toBe(0);

      // The file holds the successor: it authenticates, and the family is the original rotated into it.
      const family = await bundle(
        ['token', 'list', '--server', server.httpUrl, '--family', token.family_id, '--json'],
        {
          ROTOR_TOKEN: successorSecret,
        },
      );
      expect(family.stderr).toBe('');
      const members = (JSON.parse(family.stdout) as { tokens: CliToken[] }).tokens;
      expect(members.map((m) => m.state)).toEqual(['rotated', 'active']);
      expect(members[0]!.id).toBe(token.id);
      expect(members[1]!.previous_id).toBe(token.id);
      expect(out).toContain('"msg":"rotated; wrote the successor"');
      expect(secretsIn(out, secrets)).toEqual([]);
    } finally {
      if (agent.exitCode === null) agent.kill('SIGKILL');
      await exited;
    }
  }, 90_000);
});

/** The build refuses an entry that reaches the store: the guard in scripts/build-client.mjs can fail. */
describe('scripts/build-client.mjs', () => {
  it('fails, naming the importer, when the entry pulls in a database driver', async () => {
    const out = mkdtempSync(join(tmpdir(), 'rotor-client-build-'));
    try {
      const r = await run(
        BUILD_SCRIPT,
        ['--entry', join(ROOT, 'src/cli/main.ts'), '--outfile', join(out, 'rotor-client.mjs')],
        { cwd: ROOT, env: { PATH: process.env.PATH ?? '' } },
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('src/store/database.ts imports knex, a server-only package');
      expect(readdirSync(out)).toEqual([]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
