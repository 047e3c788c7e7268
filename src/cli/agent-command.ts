import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { LOG_LEVELS, createLineLogger, type LogLevel } from '../runtime/log-lines.js';
import type { Token } from '../gen/rotor/v1/token_pb.js';
import { lockTokenFile } from './agent-lock.js';
import { readActorTokenFile } from './actor-token.js';
import { AGENT_EXIT, AgentExit, runAgent, type AgentApi, type AgentResult, type AgentToken } from './agent.js';
import { asBearer, rotorClients } from './client.js';
import { loadDpopKey, type DpopKey } from './dpop-key.js';
import { systemClock } from './retry-policy.js';
import { UsageError } from './usage-error.js';
import { AGENT_FLAGS } from './flag-tables.js';
import { defaultServerUrl } from './server-url.js';
import { positiveDuration } from './duration.js';

/** Deadline of each unary call, so a server that hangs is retried like one that is down. */
const CALL_TIMEOUT_MS = 15_000;
/** How long an --exec hook may run before it is killed (and logged as failed). */
const HOOK_TIMEOUT_MS = 60_000;

/** Parses --rotate-at-fraction: `2/3` or a decimal, strictly between 0 and 1. */
export function parseFraction(text: string): number {
  const ratio = /^(\d{1,6})\/(\d{1,6})$/.exec(text.trim());
  const value = ratio ? Number(ratio[1]) / Number(ratio[2]) : /^0?\.\d{1,6}$/.test(text.trim()) ? Number(text) : NaN;
  if (!(value > 0 && value < 1))
    throw new UsageError('--rotate-at-fraction must be a fraction strictly between 0 and 1, like 2/3 or 0.8');
  return value;
}

function agentToken(t: Token | undefined): AgentToken {
  if (!t?.createdAt || !t.expiresAt) throw new ConnectError('the server answered without the token', Code.Internal);
  return {
    id: t.id,
    familyId: t.familyId,
    createdAt: timestampMs(t.createdAt),
    expiresAt: timestampMs(t.expiresAt),
    state: t.state,
  };
}

/**
 * AgentApi over Connect on the HTTP port: the bearer is the agent's current token on every call.
 * With `actorTokenFile` (a bound token), every RotateToken call reads the workload JWT afresh.
 */
function connectAgentApi(server: string, actorTokenFile: string | undefined, dpop: DpopKey | undefined): AgentApi {
  const { tokens, expiry } = rotorClients(server, dpop);
  return {
    async describe(secret) {
      const self = await tokens.introspectToken({ token: secret }, asBearer(secret, { timeoutMs: CALL_TIMEOUT_MS }));
      if (!self.active) throw new ConnectError('token is not active', Code.Unauthenticated);
      return agentToken(
        (await tokens.getToken({ id: self.tokenId }, asBearer(secret, { timeoutMs: CALL_TIMEOUT_MS }))).token,
      );
    },
    async rotate(secret, idempotencyKey) {
      let actor: { actorToken: string; actorTokenType: string } | undefined;
      if (actorTokenFile !== undefined) {
        try {
          actor = await readActorTokenFile(actorTokenFile);
        } catch (e) {
          throw new AgentExit(AGENT_EXIT.workloadProof, e instanceof Error ? e.message : String(e));
        }
      }
      const res = await tokens.rotateToken(
        { id: '', idempotencyKey, ...actor },
        asBearer(secret, { timeoutMs: CALL_TIMEOUT_MS }),
      );
      return { token: agentToken(res.token), secret: res.secret };
    },
    watch: (secret) => (request, signal) => expiry.watchExpiry(request, asBearer(secret, { signal })),
  };
}

/**
 * Runs `--exec CMD` through /bin/sh after a write. It learns the file and the token id from
 * ROTOR_TOKEN_FILE / ROTOR_TOKEN_ID, never the secret (ROTOR_TOKEN is removed from its
 * environment: after a rotation it would be stale). Its output goes to the agent's stderr.
 */
function execHook(command: string, tokenFile: string): (token: AgentToken) => Promise<void> {
  return (token) =>
    new Promise((done, fail) => {
      const env: NodeJS.ProcessEnv = { ...process.env, ROTOR_TOKEN_FILE: tokenFile, ROTOR_TOKEN_ID: token.id };
      delete env.ROTOR_TOKEN;
      const child = spawn('/bin/sh', ['-c', command], { env, stdio: ['ignore', 2, 2] });
      const timer = setTimeout(() => child.kill('SIGTERM'), HOOK_TIMEOUT_MS);
      child.once('error', (e) => {
        clearTimeout(timer);
        fail(e);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) done();
        else fail(new Error(signal ? `killed by ${signal}` : `exited with ${code}`));
      });
    });
}

/** `rotor agent --token-file F`: parses flags, wires the real server, clock and signals, runs the agent. */
export async function agentCommand(args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<AgentResult> {
  const { values } = parseArgs({ args, options: AGENT_FLAGS, strict: true });
  if (!values['token-file']) throw new UsageError('--token-file is required');
  const tokenFile = resolve(values['token-file']);
  const level = values['log-level'] as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  if (values.exec === '') throw new UsageError('--exec must not be empty');
  const actorTokenFile = values['actor-token-file'] === undefined ? undefined : resolve(values['actor-token-file']);
  // Read once now so a wrong path is a usage error at start, not a failed rotation hours later.
  if (actorTokenFile !== undefined) await readActorTokenFile(actorTokenFile);
  // The DPoP key is made once, here, with mode 0600, and proves every call from then on.
  const dpop =
    values['dpop-key-file'] === undefined ? undefined : await loadDpopKey(resolve(values['dpop-key-file']), true);
  if (env.ROTOR_TOKEN && /\s/.test(env.ROTOR_TOKEN.trim()))
    throw new UsageError('ROTOR_TOKEN must hold exactly one token');
  const options = {
    tokenFile,
    fraction: parseFraction(values['rotate-at-fraction']),
    retryWindowMs: positiveDuration(values['retry-window'], '--retry-window') * 1000,
    pollMs: positiveDuration(values['poll-interval'], '--poll-interval') * 1000,
    idleTimeoutMs: positiveDuration(values['idle-timeout'], '--idle-timeout') * 1000,
    backoff: { baseMs: 250, maxMs: positiveDuration(values['max-backoff'], '--max-backoff') * 1000 },
    api: connectAgentApi(values.server ?? defaultServerUrl(env), actorTokenFile, dpop),
    ...(actorTokenFile === undefined ? {} : { actorTokenFile }),
    clock: systemClock,
    log: createLineLogger(level, (l) => process.stderr.write(l)),
    signal,
    ...(env.ROTOR_TOKEN?.trim() ? { initialToken: env.ROTOR_TOKEN.trim() } : {}),
    ...(values.exec === undefined ? {} : { hook: execHook(values.exec, tokenFile) }),
  };
  const lock = await lockTokenFile(tokenFile);
  if (!lock.held) {
    const who = lock.holderPid === undefined ? 'another rotor agent' : `another rotor agent (pid ${lock.holderPid})`;
    return {
      code: AGENT_EXIT.locked,
      message: `${who} already keeps ${tokenFile} fresh; stop it first, or give this one its own --token-file`,
    };
  }
  if (lock.unlockedBecause !== undefined) {
    options.log.warn('running without the token-file lock: a second agent on this file would not be refused', {
      error: lock.unlockedBecause,
    });
  }
  try {
    return await runAgent(options);
  } finally {
    await lock.release();
  }
}
