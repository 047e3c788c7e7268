/**
 * docs/bad-input.md "ListTokens": ListTokens on both ports: paging and filters out of range. Every
 * row of that section is one case here, in the same order; suite.ts runs them against a real server
 * on each engine and checks the rows against the doc.
 */
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { describeBadInput } from './suite.js';
import { admin, invalidArgument, rpc, type Case } from './support.js';

const cases: Case[] = [
  // ---- ListTokens (as admin) ----
  {
    name: 'ListTokens page_size 501',
    ...rpc(
      TokenService,
      'listTokens',
      () => ({ pageSize: 501 }),
      admin,
      invalidArgument('page_size must be between 0 and 500'),
    ),
  },
  {
    name: 'ListTokens negative page_size (-1)',
    ...rpc(
      TokenService,
      'listTokens',
      () => ({ pageSize: -1 }),
      admin,
      invalidArgument('page_size must be between 0 and 500'),
    ),
  },
  {
    name: 'ListTokens garbage page_token',
    ...rpc(
      TokenService,
      'listTokens',
      () => ({ pageToken: 'garbage!not-a-cursor' }),
      admin,
      invalidArgument('page_token is not valid'),
    ),
  },
  {
    name: 'ListTokens state out of the enum range (99)',
    ...rpc(
      TokenService,
      'listTokens',
      () => ({ state: 99 }),
      admin,
      invalidArgument('state is not a known token state'),
    ),
  },
  {
    name: 'ListTokens owner_id with a space',
    ...rpc(
      TokenService,
      'listTokens',
      () => ({ ownerId: 'bad input' }),
      admin,
      invalidArgument('owner_id: must be printable characters without whitespace'),
    ),
  },
];

describeBadInput('ListTokens', cases);
