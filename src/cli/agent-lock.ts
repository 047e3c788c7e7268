import { createHash } from 'node:crypto';
import { type Stats, statSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
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
 * Scope: one network namespace (a host, or the containers of one pod), and one name of F in its
 * directory (a symlink to F itself is another name). Agents on different machines sharing a
 * volume are not seen; elsewhere than Linux there is no abstract namespace and no lock
 * (docs/agent.md, "Limits").
 */
export type TokenFileLock =
  | {
      held: true;
      release(): Promise<void> /** Set when the lock could not be taken for another reason than a holder: the agent runs unlocked. */;
      unlockedBecause?: string;
    }
  | { held: false; holderPid: number | undefined };

/** How long the holder's answer (its pid) may take, and how long a connection to the holder may stay open. */
const ANSWER_MS = 3000;

/** The socket name for `file`, or undefined when there is no lock to take (not Linux, or no directory yet). */
export function lockName(file: string): string | undefined {
  if (process.platform !== 'linux') return undefined;
  let dir: Stats;
  try {
    dir = statSync(dirname(file));
  } catch {
    // The agent reports a missing directory itself when it reads or writes F.
    return undefined;
  }
  const digest = createHash('sha256')
    .update(`${dir.dev}:${dir.ino}/${basename(file)}`)
    .digest('hex')
    .slice(0, 40);
  return `\0rotor-agent-${digest}`;
}

/**
 * Takes the lock of `file`, or says which process holds it. The lock is advisory: when the socket
 * cannot be bound for another reason than a holder (a sandbox that forbids it), the agent runs
 * without it and is told why.
 */
export async function lockTokenFile(file: string): Promise<TokenFileLock> {
  const name = lockName(file);
  if (name === undefined) return { held: true, release: async () => undefined };
  for (let attempt = 0; ; attempt++) {
    const bound = await bind(name);
    if (!(bound instanceof Error)) return { held: true, release: () => bound.release() };
    if (bound.code !== 'EADDRINUSE')
      return { held: true, release: async () => undefined, unlockedBecause: `${bound.code ?? bound.message}` };
    const holder = await askHolder(name);
    // Refused: the holder was ending just then, and the name is free now; take it once more.
    if (holder === 'gone' && attempt === 0) continue;
    return { held: false, holderPid: typeof holder === 'number' ? holder : undefined };
  }
}

/** Binds the name; the server answers each connection with this pid and never keeps one open. */
function bind(name: string): Promise<{ release(): Promise<void> } | NodeJS.ErrnoException> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    // Anyone in the namespace may connect: a peer that does not close must not hold the agent up.
    socket.unref();
    socket.setTimeout(ANSWER_MS, () => socket.destroy());
    socket.end(`${process.pid}\n`);
  });
  // The lock must not keep the agent alive, nor stop it from exiting.
  server.unref();
  return new Promise((resolve) => {
    server.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    server.listen(name, () => {
      // Later errors (say EMFILE on accept) must not crash the agent: the name stays bound.
      server.on('error', () => undefined);
      resolve({
        release: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}

/** Asks the holder for its pid: the pid, undefined when it does not answer in time, 'gone' when nothing listens. */
function askHolder(name: string): Promise<number | undefined | 'gone'> {
  return new Promise((resolve) => {
    let text = '';
    const socket = createConnection(name);
    const done = (answer: number | undefined | 'gone') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(undefined), ANSWER_MS);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (text += d.slice(0, 32)));
    socket.on('end', () => {
      const pid = Number(text.trim());
      done(Number.isSafeInteger(pid) && pid > 0 ? pid : undefined);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'gone' : undefined));
  });
}
