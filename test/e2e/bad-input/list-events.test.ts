/**
 * docs/bad-input.md "ListEvents": ListEvents on both ports: paging and filters out of range. Every
 * row of that section is one case here, in the same order; suite.ts runs them against a real server
 * on each engine and checks the rows against the doc.
 */
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { describeBadInput } from './suite.js';
import { admin, invalidArgument, rpc, type Case } from './support.js';

const cases: Case[] = [
  // ---- ListEvents (as admin) ----
  {
    name: 'ListEvents page_size 501',
    ...rpc(
      TokenService,
      'listEvents',
      () => ({ pageSize: 501 }),
      admin,
      invalidArgument('page_size must be between 0 and 500'),
    ),
  },
  {
    name: 'ListEvents garbage page_token',
    ...rpc(
      TokenService,
      'listEvents',
      () => ({ pageToken: 'garbage!not-a-cursor' }),
      admin,
      invalidArgument('page_token is not valid'),
    ),
  },
  {
    name: 'ListEvents a type that is not an event type name (ROTATED)',
    ...rpc(
      TokenService,
      'listEvents',
      () => ({ types: ['ROTATED'] }),
      admin,
      invalidArgument('types holds "ROTATED", not an event type'),
    ),
  },
  {
    name: 'ListEvents 17 types',
    ...rpc(
      TokenService,
      'listEvents',
      () => ({ types: Array.from({ length: 17 }, (_, i) => `type_${String.fromCharCode(97 + i)}`) }),
      admin,
      invalidArgument('types may list at most 16 event types'),
    ),
  },
  {
    name: 'ListEvents until not after since',
    ...rpc(
      TokenService,
      'listEvents',
      () => ({ since: timestampFromMs(2_000_000), until: timestampFromMs(2_000_000) }),
      admin,
      invalidArgument('until must be later than since'),
    ),
  },
  {
    name: 'ListEvents token_id that is not an id',
    ...rpc(
      TokenService,
      'listEvents',
      () => ({ tokenId: 'tok-1' }),
      admin,
      invalidArgument('token_id: is not a valid id'),
    ),
  },
];

describeBadInput('ListEvents', cases);
