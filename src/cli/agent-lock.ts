import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { basename, dirname } from 'node:path';

/**
 * One `rotor agent` per token file. Two agents on one file race each rotation, and the loser
 * exits 4 ("rotated elsewhere") after the winner wrote a secret it cannot know; worse, each
 * restart of the loser may present a token the other already rotated. So the second agent
 * refuses to start instead.
 *
 * The lock is a Linux abstract-namespace Unix socket named after the file: the kernel releases
 * it the moment its process ends, however it ends (SIGKILL, OOM), so a crash never leaves a
 * stale lock behind, and nothing is written next to F. The name is a digest of F's directory
 * (device and inode, so two paths to one directory are one lock; F itself is replaced on every
 * write) and F's base name. The holder answers a connection with its pid, which the refusal names.
 *
 * Scope: one network namespace (a host, or the containers of one pod). Agents on different
 * machines sharing a volume are not seen; elsewhere than Linux there is no abstract namespace
 * and no lock (docs/agent.md, "Limits").
 */
export type TokenFileLock = { held: true; release(): Promise<void> } | { held: false; holderPid: number | undefined };

/** The socket name for `file`, or undefined when there is no lock to take (not Linux, or no directory yet). */
export function lockName(file: string): string | undefined {
  if (process.platform !== 'linux') return undefined;
  let dir;
  try {
    dir = statSync(dirname(file));
  } catch {
    // The agent reports a missing directory itself when it reads or writes F.
    return undefined;
  }
  const digest = createHash('sha256').update(`${dir.dev}:${dir.ino}/${basename(file)}`).digest('hex').slice(0, 40);
  return `\0rotor-agent-${digest}`;
}

/** Takes the lock of `file`, or says which process holds it. */
export async function lockTokenFile(file: string): Promise<TokenFileLock> {
  const name = lockName(file);
  if (name === undefined) return { held: true, release: async () => undefined };
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end(`${process.pid}\n`);
  });
  // The lock must not keep the agent alive, nor stop it from exiting.
  server.unref();
  const bound = await new Promise<true | NodeJS.ErrnoException>((resolve) => {
    server.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    server.listen(name, () => resolve(true));
  });
  if (bound === true) return { held: true, release: () => closeServer(server) };
  if (bound.code !== 'EADDRINUSE') throw bound;
  return { held: false, holderPid: await holderPid(name) };
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Asks the holder for its pid; undefined when it does not answer within a second. */
function holderPid(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const socket = createConnection(name);
    const done = (pid: number | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(pid);
    };
    const timer = setTimeout(() => done(undefined), 1000);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d.slice(0, 32)));
    socket.on('end', () => {
      const pid = Number(text.trim());
      done(Number.isSafeInteger(pid) && pid > 0 ? pid : undefined);
    });
    socket.on('error', () => done(undefined));
  });
}
