/**
 * The token-file lock of `rotor agent` (src/cli/agent-lock.ts): one holder per file, any path to
 * the file's directory names the same lock, and the kernel frees it when the holder is killed.
 * The end-to-end refusal of a second agent is in test/e2e/agent-process.test.ts.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lockName, lockTokenFile, type TokenFileLock } from '../../src/cli/agent-lock.js';
import { ROOT } from '../support/process.js';

const work = mkdtempSync(join(tmpdir(), 'rotor-agent-lock-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function held(file: string): Promise<Extract<TokenFileLock, { held: true }>> {
  const lock = await lockTokenFile(file);
  if (!lock.held) throw new Error(`expected to take the lock of ${file}, held by ${lock.holderPid}`);
  return lock;
}

describe.skipIf(process.platform !== 'linux')('agent token-file lock', () => {
  it('a second taker is refused with the holder pid until the holder releases', async () => {
    const file = join(work, 'a.token');
    const first = await held(file);
    expect(await lockTokenFile(file)).toEqual({ held: false, holderPid: process.pid });
    await first.release();
    const again = await held(file);
    await again.release();
  });

  it('is per file: another name in the same directory is another lock', async () => {
    const a = await held(join(work, 'one.token'));
    const b = await held(join(work, 'two.token'));
    await a.release();
    await b.release();
  });

  it('any path to the directory names the same lock', async () => {
    const real = join(work, 'real');
    mkdirSync(real);
    symlinkSync(real, join(work, 'link'));
    expect(lockName(join(work, 'link', 'x.token'))).toBe(lockName(join(real, 'x.token')));
    const lock = await held(join(real, 'x.token'));
    expect(await lockTokenFile(join(work, 'link', 'x.token'))).toEqual({ held: false, holderPid: process.pid });
    expect(await lockTokenFile(join(work, 'real', '.', 'x.token'))).toMatchObject({ held: false });
    await lock.release();
  });

  it('a holder killed with SIGKILL leaves no stale lock', async () => {
    const file = join(work, 'killed.token');
    const module = `${ROOT}dist/src/cli/agent-lock.js`;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { lockTokenFile } = await import(${JSON.stringify(module)}); const l = await lockTokenFile(${JSON.stringify(file)}); console.log(l.held); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const firstLine = await new Promise<string>((resolve) =>
      child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())),
    );
    expect(firstLine).toBe('true');
    expect(await lockTokenFile(file)).toEqual({ held: false, holderPid: child.pid });
    child.kill('SIGKILL');
    await exited;
    const lock = await held(file);
    await lock.release();
  });

  it('a peer that connects and never closes does not hold up release (any process may connect)', async () => {
    const file = join(work, 'peer.token');
    const lock = await held(file);
    const peer = createConnection(lockName(file)!);
    await new Promise((resolve) => peer.once('data', resolve));
    // vitest's test timeout catches a release that waits for the peer.
    await lock.release();
    peer.destroy();
    const again = await held(file);
    await again.release();
  });

  it('no directory yet: no lock to take (the agent reports the missing directory itself)', async () => {
    expect(lockName(join(work, 'missing', 'f.token'))).toBeUndefined();
    expect((await lockTokenFile(join(work, 'missing', 'f.token'))).held).toBe(true);
  });
});
