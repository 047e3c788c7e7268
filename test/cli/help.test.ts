import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as tables from '../../src/cli/flag-tables.js';
import { COMMANDS } from '../../src/cli/flag-tables.js';
import { helpFor } from '../../src/cli/help.js';
import { ROOT, runCli } from '../support/process.js';

/** The `--flag` names a help text lists. */
function flagsIn(text: string): string[] {
  return [...new Set([...text.matchAll(/^ {2}--([a-z][a-z-]*)/gm)].map((m) => m[1]!))].sort();
}

describe('rotor <command> --help lists every flag its parser accepts', () => {
  it.each(Object.entries(COMMANDS))('rotor %s --help (a real process) matches its parser table', async (name, spec) => {
    const r = await runCli([...name.split(' '), '--help'], {});
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout.startsWith(`usage: ${spec.synopsis}\n`)).toBe(true);
    expect(flagsIn(r.stdout)).toEqual(Object.keys(spec.flags).sort());
  });

  it('rotor help <command> and -h give the same text; a flag value before --help does not confuse it', () => {
    expect(helpFor(['help', 'token', 'create'])).toBe(helpFor(['token', 'create', '--help']));
    expect(helpFor(['agent', '--token-file', 'F', '-h'])).toBe(helpFor(['help', 'agent']));
    expect(helpFor(['token', 'list', '--owner', 'web', '--help'])).toMatch(/^usage: rotor token list /);
    expect(helpFor(['token', 'list', '--', '--help'])).toBeUndefined();
    expect(helpFor(['token', '--help'])).toContain('rotor token rotate --help');
  });

  it("a usage error prints the failing command's help, not the list of commands", async () => {
    const r = await runCli(['token', 'get', '--scope', 'x', 'tok_a'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^rotor: Unknown option '--scope'.*\nusage: rotor token get ID \[flags\]\n/s);
    expect(r.stderr).not.toContain('bootstrap');
  });

  it('token create lists --audience, --description, --expires-at and the policy flags', () => {
    const flags = flagsIn(helpFor(['token', 'create', '--help'])!);
    for (const f of [
      'audience',
      'description',
      'expires-at',
      'overlap',
      'reuse-grace',
      'default-lifetime',
      'max-lifetime',
    ])
      expect(flags).toContain(f);
  });

  it('every parseArgs call in src/cli parses a table of src/cli/flag-tables.ts (the one --help prints)', () => {
    const exported = new Set(Object.keys(tables));
    const dir = `${ROOT}src/cli`;
    const calls: string[] = [];
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(`${dir}/${file}`, 'utf8');
      for (const m of text.matchAll(/parseArgs\(\{([^}]*)/g)) {
        const options = /options: (\w+)/.exec(m[1]!)?.[1];
        calls.push(`${file}: ${options ?? 'inline options'}`);
        // `table` is the token subcommands' helper, called with those tables only.
        expect(options === 'table' || (options !== undefined && exported.has(options)), `${file}: ${m[0]}`).toBe(true);
      }
    }
    expect(calls.length).toBeGreaterThanOrEqual(4);
  });
});
