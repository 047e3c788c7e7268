import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { parseArgs } from 'node:util';
import { asBearer, rotorClients } from './client.js';
import { positiveDuration } from './duration.js';
import { resumableWatch, type OpenWatch, type WatchSelection } from './event-stream.js';
import { eventJson, eventLine } from './expiry-events.js';
import { systemClock } from './retry-policy.js';
import { describeError } from './agent-verdicts.js';
import { UsageError } from './usage-error.js';
import { WATCH_FLAGS } from './flag-tables.js';
import { defaultServerUrl } from './server-url.js';

/**
 * `rotor watch`: prints WatchExpiry events, one per line (human, or JSON with --json), and
 * reconnects with `after_sequence` on transient failures. Ends on SIGINT/SIGTERM (exit 0) or
 * a final error such as a refused credential (thrown; the CLI exits 1).
 */
export async function watchCommand(args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<void> {
  const { values } = parseArgs({ args, options: WATCH_FLAGS, strict: true });
  const server = values.server ?? defaultServerUrl(env);
  const secret = env.ROTOR_TOKEN;
  if (!secret)
    throw new UsageError(
      'ROTOR_TOKEN must hold the credential to watch with (and, without selection flags, the token to watch)',
    );
  const chosen = [values['token-id'].length > 0, values.owner !== undefined, values.family !== undefined].filter(
    Boolean,
  ).length;
  if (chosen > 1) throw new UsageError('choose at most one of --token-id, --owner, --family');
  if (values.owner === '' || values.family === '' || values['token-id'].includes(''))
    throw new UsageError('--token-id, --owner and --family must not be empty');
  const selection: WatchSelection = {
    tokenIds: values['token-id'],
    ownerId: values.owner ?? '',
    familyId: values.family ?? '',
    thresholds: values.threshold.map((t) => durationFromMs(positiveDuration(t, '--threshold') * 1000)),
  };
  let afterSequence: bigint | undefined;
  if (values['after-sequence'] !== undefined) {
    if (!/^\d{1,20}$/.test(values['after-sequence']) || BigInt(values['after-sequence']) > 0xffffffffffffffffn)
      throw new UsageError('--after-sequence must be a non-negative integer (a sequence printed by rotor watch)');
    afterSequence = BigInt(values['after-sequence']);
  }
  const maxMs = positiveDuration(values['max-backoff'], '--max-backoff') * 1000;
  const idleTimeoutMs = positiveDuration(values['idle-timeout'], '--idle-timeout') * 1000;

  // `rotor watch | head`: src/cli/cli-output.ts ends the process quietly when the reader goes away.
  const { expiry } = rotorClients(server);
  const open: OpenWatch = (req, sig) => expiry.watchExpiry(req, asBearer(secret, { signal: sig }));
  const events = resumableWatch(open, selection, {
    clock: systemClock,
    backoff: { baseMs: 250, maxMs },
    signal,
    includeSnapshot: values.snapshot,
    idleTimeoutMs,
    ...(afterSequence === undefined ? {} : { afterSequence }),
    onReconnect: (error, delayMs, after) =>
      process.stderr.write(
        `rotor watch: stream interrupted (${describeError(error) ?? 'ended by the server'}); reconnecting in ${delayMs} ms after sequence ${after?.toString() ?? '-'}\n`,
      ),
  });
  try {
    for await (const e of events)
      process.stdout.write(`${values.json ? JSON.stringify(eventJson(e)) : eventLine(e)}\n`);
  } catch (e) {
    if (e instanceof ConnectError && e.code === Code.Unimplemented)
      throw new Error('the server does not implement WatchExpiry (ExpiryService)');
    throw e;
  }
}
