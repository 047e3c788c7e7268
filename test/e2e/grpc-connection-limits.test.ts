/**
 * Connection limits of the gRPC port (README: "Connection limits"), with raw sockets (node:net,
 * node:tls) against a real server: a connection that sends nothing, or only the 24-byte HTTP/2
 * magic, is cut after the handshake timeout (plain text and TLS); one that completes the preface
 * and then idles gets a GOAWAY after the idle timeout; a peer address past its connection limit,
 * and any connection past the process-wide cap, is closed at once while a grpc-js caller from
 * another address is served; max connection age ends a WatchExpiry stream with UNAVAILABLE and
 * the client resumes by sequence; the stream cap is announced in SETTINGS. No timing is asserted: every wait is on a socket or stream
 * event, bounded by the test timeout.
 *
 * The attacker binds 127.0.0.2 (Linux routes all of 127.0.0.0/8 to the loopback interface), so a
 * grpc-js client on 127.0.0.1 is a different peer.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { Code } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HealthService } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { grpcClient } from '../support/grpc-client.js';
import { ROOT } from '../support/process.js';
import { grpcApi } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

/** The client connection preface's fixed part (RFC 9113 §3.4), without the SETTINGS frame that must follow. */
const MAGIC = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** An empty SETTINGS frame: length 0, type 0x4, no flags, stream 0. */
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
const PREFACE = Buffer.concat([MAGIC, EMPTY_SETTINGS]);
const ATTACKER = '127.0.0.2';

const FIXTURES = `${ROOT}test/fixtures/tls`;
const TLS_ENV = { ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.pem`, ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.key` };
const CA = readFileSync(`${FIXTURES}/ca.pem`);
issuedSecrets.add(readFileSync(TLS_ENV.ROTOR_TLS_KEY_FILE, 'utf8').split('\n')[1]!);

/** A raw client connection: what the server sent, and whether (and when) the server closed it. */
interface RawConnection {
  socket: Socket;
  received: Buffer[];
  /** Resolves once the socket closed, whoever closed it. */
  closed: Promise<void>;
  isClosed(): boolean;
  /** Resolves once the server sent any bytes. */
  answered: Promise<void>;
}

const open: RawConnection[] = [];

function track(socket: Socket, send: Buffer | undefined): Promise<RawConnection> {
  const received: Buffer[] = [];
  let isClosed = false;
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      resolve();
    }),
  );
  const answered = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.on('data', (d: Buffer) => received.push(d));
  // A server reset (ECONNRESET) is one way of being closed; the 'close' event follows it.
  socket.on('error', () => undefined);
  const conn: RawConnection = { socket, received, closed, isClosed: () => isClosed, answered };
  open.push(conn);
  return new Promise((resolve) => {
    const ready = () => {
      if (send) socket.write(send);
      resolve(conn);
    };
    if (socket.connecting || 'encrypted' in socket)
      socket.once(('encrypted' in socket ? 'secureConnect' : 'connect') as 'connect', ready);
    else ready();
    // A connection refused before it connected (or a failed TLS handshake) still settles.
    socket.once('close', () => resolve(conn));
  });
}

/** A TCP connection to the gRPC port; `send` is written once it connects. */
function raw(s: TestServer, send?: Buffer, localAddress?: string): Promise<RawConnection> {
  return track(
    tcpConnect({ host: '127.0.0.1', port: s.rotor.grpcPort, ...(localAddress ? { localAddress } : {}) }),
    send,
  );
}

/** Frame types in what the server sent (RFC 9113 §4.1: 9-byte headers, 24-bit length). */
function frameTypes(bytes: Buffer): number[] {
  const types: number[] = [];
  for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3)) types.push(bytes[at + 3]!);
  return types;
}
const GOAWAY = 0x7;
const SETTINGS = 0x4;

/** The parameters of the first SETTINGS frame the server sent (RFC 9113 §6.5.1: 16-bit id, 32-bit value). */
function firstSettings(bytes: Buffer): Map<number, number> {
  const params = new Map<number, number>();
  for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3)) {
    if (bytes[at + 3] !== SETTINGS) continue;
    for (let p = at + 9; p + 6 <= at + 9 + bytes.readUIntBE(at, 3); p += 6)
      params.set(bytes.readUInt16BE(p), bytes.readUInt32BE(p + 2));
    return params;
  }
  return params;
}
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;

function health(s: TestServer, credentials?: grpc.ChannelCredentials) {
  return grpcClient(HealthService, s.grpcAddress, {}, credentials);
}

afterEach(() => {
  for (const c of open.splice(0)) c.socket.destroy();
});

describe('gRPC port: handshake timeout (plain text)', () => {
  let s: TestServer;
  // The idle timeout stays at its default (minutes), so only the handshake timeout can cut these.
  beforeAll(async () => {
    s = await startTestServer({
      ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS: '300',
      ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER: '0',
    });
  });
  afterAll(async () => s?.stop());

  it('cuts connections that send nothing or only the preface magic, not one that sent its preface; a grpc-js call still succeeds', async () => {
    // Opened first, so its deadline passes before any of the others'.
    const complete = await raw(s, PREFACE);
    const silent = await Promise.all(Array.from({ length: 30 }, () => raw(s)));
    const magicOnly = await Promise.all(Array.from({ length: 30 }, () => raw(s, MAGIC)));
    await Promise.all([...silent, ...magicOnly].map((c) => c.closed));
    for (const c of [...silent, ...magicOnly]) expect(frameTypes(Buffer.concat(c.received))).not.toContain(GOAWAY);
    expect(complete.isClosed()).toBe(false);
    expect(frameTypes(Buffer.concat(complete.received))[0]).toBe(SETTINGS);
    const client = health(s);
    try {
      expect(await client.call('check', {})).toBeDefined();
    } finally {
      client.close();
    }
  });
});

describe('gRPC port: idle timeout', () => {
  let s: TestServer;
  // The handshake timeout stays at its default (10 s): a GOAWAY proves the idle timeout did it.
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_GRPC_IDLE_TIMEOUT_SECONDS: '1' });
  });
  afterAll(async () => s?.stop());

  it('sends GOAWAY to a connection that completed the preface and then opened no stream, and closes it', async () => {
    const idle = await Promise.all(Array.from({ length: 10 }, () => raw(s, PREFACE)));
    await Promise.all(idle.map((c) => c.closed));
    for (const c of idle) expect(frameTypes(Buffer.concat(c.received))).toContain(GOAWAY);
  });

  it('keeps a connection that carries an open stream past the idle timeout', async () => {
    const api = grpcApi(s);
    try {
      const w = api.watchExpiry({ ownerId: 'idle-watch' }, s.adminSecret);
      await waitForWatchers(s, 1);
      // An idle connection next to it closes; the stream's connection is not idle.
      const idle = await raw(s, PREFACE);
      await idle.closed;
      const t = await api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'idle-watch',
          name: 'w',
          scopes: ['read'],
          expiresAt: inMs(s.clock.now(), 3_600_000),
        },
        s.adminSecret,
      );
      issuedSecrets.add(t.secret);
      await w.until((r) => r.some((e) => e.tokenId === t.token!.id));
      expect(w.done).toBe(false);
      w.cancel();
    } finally {
      api.close();
    }
  });
});

describe('gRPC port: connections per peer address', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER: '3',
      ROTOR_GRPC_MAX_CONCURRENT_STREAMS: '7',
    });
  });
  afterAll(async () => s?.stop());

  it('closes a peer’s connection past its limit at once; another address is served meanwhile', async () => {
    // The attacker holds its maximum with connections that look like real clients.
    const held = await Promise.all(Array.from({ length: 3 }, () => raw(s, PREFACE, ATTACKER)));
    await Promise.all(held.map((c) => c.answered));
    const refused = await raw(s, PREFACE, ATTACKER);
    await refused.closed;
    // Refused before any HTTP/2 session: not even the server's SETTINGS came back.
    expect(refused.received).toEqual([]);

    const client = health(s);
    try {
      expect(await client.call('check', {})).toBeDefined();
    } finally {
      client.close();
    }
    expect(held.map((c) => c.isClosed())).toEqual([false, false, false]);
    for (const c of held) expect(frameTypes(Buffer.concat(c.received))[0]).toBe(SETTINGS);
    // The stream cap is announced in the server's SETTINGS.
    expect(firstSettings(Buffer.concat(held[1]!.received)).get(SETTINGS_MAX_CONCURRENT_STREAMS)).toBe(7);

    // A slot freed by the attacker is a slot again, once the server has seen the connection go
    // (a refusal before that is retried; a slot never freed fails the test by its timeout).
    held[0]!.socket.end();
    await held[0]!.closed;
    let again: RawConnection;
    do {
      again = await raw(s, PREFACE, ATTACKER);
      await Promise.race([again.answered, again.closed]);
    } while (again.isClosed());
    expect(frameTypes(Buffer.concat(again.received))[0]).toBe(SETTINGS);
  });
});

describe('gRPC port: process-wide connection cap', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_GRPC_MAX_CONNECTIONS: '4', ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER: '0' });
  });
  afterAll(async () => s?.stop());

  it('closes a connection past the cap whatever its address, and accepts again once one left', async () => {
    const held = await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((a) => raw(s, PREFACE, a)));
    await Promise.all(held.map((c) => c.answered));
    const refused = await raw(s, PREFACE, '127.0.0.6');
    await refused.closed;
    expect(refused.received).toEqual([]);
    held[3]!.socket.end();
    await held[3]!.closed;
    let again: RawConnection;
    do {
      again = await raw(s, PREFACE, '127.0.0.7');
      await Promise.race([again.answered, again.closed]);
    } while (again.isClosed());
    expect(frameTypes(Buffer.concat(again.received))[0]).toBe(SETTINGS);
    expect(held.slice(0, 3).map((c) => c.isClosed())).toEqual([false, false, false]);
  });
});

describe('gRPC port: handshake timeout over TLS', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      ...TLS_ENV,
      ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS: '300',
      ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER: '0',
    });
  });
  afterAll(async () => s?.stop());

  it('cuts a connection that never starts TLS, and one that finishes TLS but sends only the preface magic; grpc-js over TLS works', async () => {
    const tlsRaw = (send: Buffer) =>
      track(
        tlsConnect({
          host: '127.0.0.1',
          port: s.rotor.grpcPort,
          servername: 'localhost',
          ca: CA,
          ALPNProtocols: ['h2'],
        }),
        send,
      );
    const complete = await tlsRaw(PREFACE);
    const noTls = await Promise.all(Array.from({ length: 10 }, () => raw(s)));
    const tlsMagic = await Promise.all(Array.from({ length: 10 }, () => tlsRaw(MAGIC)));
    for (const c of tlsMagic) expect(c.isClosed()).toBe(false); // the TLS handshake itself succeeded
    await Promise.all([...noTls, ...tlsMagic].map((c) => c.closed));
    expect(complete.isClosed()).toBe(false);
    await complete.answered;
    expect(frameTypes(Buffer.concat(complete.received))[0]).toBe(SETTINGS);
    const client = health(s, grpc.credentials.createSsl(CA));
    try {
      expect(await client.call('check', {})).toBeDefined();
    } finally {
      client.close();
    }
  });
});

describe('gRPC port: max connection age', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      ROTOR_GRPC_MAX_CONNECTION_AGE_SECONDS: '3',
      ROTOR_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS: '1',
    });
  });
  afterAll(async () => s?.stop());

  it('ends a WatchExpiry stream with UNAVAILABLE, not silently; the client resumes by sequence on a new connection', async () => {
    const api = grpcApi(s);
    try {
      const owner = 'aged';
      const w = api.watchExpiry({ ownerId: owner }, s.adminSecret);
      await waitForWatchers(s, 1);
      const first = await api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: owner,
          name: 'a',
          scopes: ['read'],
          expiresAt: inMs(s.clock.now(), 3_600_000),
        },
        s.adminSecret,
      );
      issuedSecrets.add(first.secret);
      const [seen] = await w.until((r) => r.length >= 1);
      const failure = await w.ended;
      expect(failure?.code).toBe(Code.Unavailable);

      const second = await api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: owner,
          name: 'b',
          scopes: ['read'],
          expiresAt: inMs(s.clock.now(), 3_600_000),
        },
        s.adminSecret,
      );
      issuedSecrets.add(second.secret);
      const resumed = api.watchExpiry({ ownerId: owner, afterSequence: seen!.sequence }, s.adminSecret);
      const [next] = await resumed.until((r) => r.length >= 1);
      expect(next!.tokenId).toBe(second.token!.id);
      resumed.cancel();
    } finally {
      api.close();
    }
  });
});
