import { COMMANDS, type CommandSpec, type FlagTable } from './flag-tables.js';

/** The help of one command: synopsis, summary, then every flag of its parser's table. */
export function commandHelp(name: string, spec: CommandSpec): string {
  const rows = flagRows(spec.flags);
  const width = Math.min(28, Math.max(0, ...rows.map(([left]) => left.length)) + 2);
  const lines = [`usage: ${spec.synopsis}`, '', `  ${spec.summary}`];
  if (rows.length > 0) {
    lines.push('', 'flags:');
    for (const [left, help] of rows)
      lines.push(
        left.length + 2 > width ? `  ${left}\n  ${' '.repeat(width)}${help}` : `  ${left.padEnd(width)}${help}`,
      );
  } else {
    lines.push('', `rotor ${name} takes no flags.`);
  }
  return `${lines.join('\n')}\n`;
}

function flagRows(flags: FlagTable): [string, string][] {
  return Object.entries(flags).map(([name, f]) => [
    `--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}${f.multiple ? ' ...' : ''}`,
    f.help,
  ]);
}

/**
 * `rotor help <command…>`, `rotor <command…> --help` / `-h`: the command's help text, or
 * undefined when `argv` asks for no command help (or names a command without a flag table, which
 * then runs as usual and reports itself).
 */
export function helpFor(argv: readonly string[]): string | undefined {
  const end = argv.indexOf('--');
  const args = end === -1 ? argv : argv.slice(0, end);
  const asked = args[0] === 'help' ? args.length > 1 : args.includes('--help') || args.includes('-h');
  if (!asked) return undefined;
  const words = args.filter((a) => a !== 'help' && a !== '--help' && a !== '-h' && !a.startsWith('-'));
  const two = words.slice(0, 2).join(' ');
  const name = COMMANDS[two] ? two : words[0];
  if (name === undefined) return undefined;
  const spec = COMMANDS[name];
  if (spec) return commandHelp(name, spec);
  if (name === 'token')
    return `usage: rotor token create|get|list|rotate|revoke [flags]\n\n${Object.keys(COMMANDS)
      .filter((c) => c.startsWith('token '))
      .map((c) => `  rotor ${c} --help`)
      .join('\n')}\n`;
  return undefined;
}
