/**
 * What the CLI prints, in its own terms: the server's request-field names become the CLI's flag
 * names (one table, here), and a reader that went away (`rotor token list | head -2`) ends the
 * command quietly.
 */

/** Server wording → CLI wording; the first match on the message's field name wins. */
const FIELD_FLAGS: readonly [RegExp, string][] = [
  [/^expires_at is required\b/, '--expires-in or --expires-at is required'],
  [/^expires_at\b/, 'the expiry (--expires-in / --expires-at)'],
  [/^policy\.max_lifetime_seconds\b/, '--max-lifetime'],
  [/^policy\.default_lifetime_seconds\b/, '--default-lifetime'],
  [/^policy\.overlap_seconds\b/, '--overlap'],
  [/^policy\.reuse_grace_seconds\b/, '--reuse-grace'],
  [/^policy\.workload_binding\.(issuer|subject|audience)\b/, '--bind-$1'],
  [/^policy\.workload_binding\.claims\b/, '--bind-claim'],
  [/^page_size\b/, '--page-size'],
  [/^page_token\b/, '--page-token'],
  [/^idempotency_key\b/, '--idempotency-key'],
  [/^owner_id\b/, '--owner'],
  [/^scopes\b/, '--scope'],
  [/^audiences\b/, '--audience'],
  [
    /^this token is bound to a workload: rotating it needs actor_token with actor_token_type \S+/,
    "this token is bound to a workload: rotating it needs the workload's JWT (--actor-token-file PATH or ROTOR_ACTOR_TOKEN)",
  ],
  [/^actor_token\b/, 'the workload JWT (--actor-token-file or ROTOR_ACTOR_TOKEN)'],
];

/** A server message with its leading field name in the CLI's flag names (other messages unchanged). */
export function inCliTerms(message: string): string {
  for (const [field, flag] of FIELD_FLAGS) if (field.test(message)) return message.replace(field, flag);
  return message;
}

/**
 * EPIPE on stdout (the reader closed the pipe, as `head` does) ends the process with exit 0 and
 * no stack trace: the reader had what it wanted.
 */
export function endQuietlyOnClosedStdout(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}
