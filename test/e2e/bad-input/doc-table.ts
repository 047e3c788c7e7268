/**
 * docs/bad-input.md as the bad-input tests see it: the rows of a table rendered from its cases,
 * the rows the doc lists under each section heading, and which file of test/e2e/bad-input/ checks
 * which section. The rendering is the one the doc is written in, so the doc cannot drift from the
 * tests.
 */
import { Code } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import type { Case, RpcExpect } from './support.js';

/** The sections of docs/bad-input.md that hold a table, in their order, and the file that checks each. */
export const BAD_INPUT_SECTIONS = [
  ['The presented token and the RFC 8693 parameters', 'token-exchange.test.ts'],
  ['RotateToken', 'rotate-token.test.ts'],
  ['CreateToken', 'create-token.test.ts'],
  ['ListTokens', 'list-tokens.test.ts'],
  ['ListEvents', 'list-events.test.ts'],
  ['Caller credentials, introspection and revocation', 'caller-credentials.test.ts'],
  ['Garbage and oversized bodies', 'garbage-bodies.test.ts'],
] as const;

/** A `## ` heading of docs/bad-input.md with a table of bad inputs under it. */
export type BadInputSection = (typeof BAD_INPUT_SECTIONS)[number][0];

/** The table rows of a docs/bad-input.md text under each `## ` heading (rows before the first heading under ''), in order. */
export function docRowsBySection(doc: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let heading = '';
  for (const l of doc.split('\n')) {
    if (l.startsWith('## ')) heading = l.slice('## '.length).trim();
    else if (l.startsWith('| ') && !l.startsWith('| Input') && !l.startsWith('| ---'))
      sections.set(heading, [...(sections.get(heading) ?? []), l]);
  }
  return sections;
}

function grpcName(code: number): string {
  return grpc.status[code] ?? String(code);
}

function connectName(code: number): string {
  if (code === grpc.status.OK) return 'ok';
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

function md(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function rpcCell(e: RpcExpect | undefined, name: (code: number) => string, via?: string): string {
  if (!e) return '—';
  let cell = `\`${name(e.code)}\``;
  if (e.message !== '') cell += ` "${md(e.message)}"`;
  if (e.responseDoc) cell += `, ${e.responseDoc}`;
  if (via) cell += ` (${via})`;
  return cell;
}

function httpCell(h: Case['http']): string {
  if (!h) return '—';
  const e = h.expect;
  const parts = [`${e.status}`];
  if (e.error !== undefined) parts.push(`\`${e.error}\` "${md(e.description ?? '')}"`);
  if (e.json !== undefined) parts.push(`\`${md(JSON.stringify(e.json))}\``);
  if (e.body === '') parts.push('empty body');
  if (e.header) parts.push(`\`${e.header[0]}: ${md(e.header[1])}…\``);
  return `${parts.join(' ')} (${h.via})`;
}

/** The row of docs/bad-input.md that documents `c`. */
export function docRow(c: Case): string {
  return `| ${md(c.name)} | ${rpcCell(c.grpc?.expect, grpcName)} | ${rpcCell(c.connect?.expect, connectName, c.connect?.via)} | ${httpCell(c.http)} |`;
}
