import { readFileSync } from 'node:fs';

/**
 * This process's soft limit on open files (`ulimit -n`; Node raises it to the hard limit at
 * start), read from Linux's /proc/self/limits; undefined where that file does not exist or says
 * "unlimited". Node has no getrlimit of its own.
 */
export function openFileLimit(
  read: () => string = () => readFileSync('/proc/self/limits', 'utf8'),
): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+)\s/m.exec(text);
  return m ? Number(m[1]) : undefined;
}
