import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseFraction } from '../../src/cli/agent-command.js';
import {
  clearPending,
  newIdempotencyKey,
  pendingPath,
  readPending,
  readTokenFile,
  writeFileAtomic,
  writePending,
} from '../../src/cli/token-file.js';

describe('token file and pending-rotation record', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'rotor-token-file-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces a file atomically with mode 0600, whatever the old mode, leaving no temporary file', async () => {
    const f = join(dir, 'token');
    writeFileSync(f, 'old\n', { mode: 0o644 });
    await writeFileAtomic(f, 'new-secret\n');
    expect(readFileSync(f, 'utf8')).toBe('new-secret\n');
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['token']);
  });

  it('leaves the old content and no temporary file when the write cannot happen', async () => {
    // The rename fails after the temporary file was written: the target is a non-empty directory.
    const f = join(dir, 'token');
    mkdirSync(f);
    writeFileSync(join(f, 'old'), 'old\n');
    await expect(writeFileAtomic(f, 'new-secret\n')).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(readdirSync(dir)).toEqual(['token']);
    expect(readFileSync(join(f, 'old'), 'utf8')).toBe('old\n');
  });

  it('reads one token, trimmed; absent is undefined; two tokens or an empty file are refused', async () => {
    const f = join(dir, 'token');
    expect(await readTokenFile(f)).toBeUndefined();
    writeFileSync(f, '  rtr_sa_abc \n');
    expect(await readTokenFile(f)).toBe('rtr_sa_abc');
    writeFileSync(f, 'a b\n');
    await expect(readTokenFile(f)).rejects.toThrow(`${f} must hold exactly one token`);
    writeFileSync(f, '\n');
    await expect(readTokenFile(f)).rejects.toThrow('must hold exactly one token');
  });

  it('round-trips a pending record (mode 0600), clears it, and refuses a malformed one', async () => {
    const f = join(dir, 'token');
    const p = { idempotencyKey: newIdempotencyKey(), tokenSha256: 'a'.repeat(64), startedAt: 123 };
    expect(p.idempotencyKey).toMatch(/^[A-Za-z0-9_-]{32}$/);
    await writePending(f, p);
    expect(statSync(pendingPath(f)).mode & 0o777).toBe(0o600);
    expect(await readPending(f)).toEqual(p);
    await clearPending(f);
    expect(await readPending(f)).toBeUndefined();
    await clearPending(f); // idempotent
    writeFileSync(pendingPath(f), '{"idempotencyKey":"short"}');
    await expect(readPending(f)).rejects.toThrow('is not a pending-rotation record');
  });

  it('parses --rotate-at-fraction as a ratio or a decimal strictly between 0 and 1', () => {
    expect(parseFraction('2/3')).toBeCloseTo(0.6667, 4);
    expect(parseFraction('0.8')).toBe(0.8);
    expect(parseFraction('.5')).toBe(0.5);
    for (const bad of ['0', '1', '3/2', '1/0', '0/5', 'abc', '-0.5', '1.5', '']) {
      expect(() => parseFraction(bad), bad).toThrow('--rotate-at-fraction must be a fraction strictly between 0 and 1');
    }
  });
});
