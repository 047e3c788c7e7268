import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of the HTTP port that can lose one response on purpose: when armed, the
 * connection that carries the next request whose head contains `marker` is forwarded to the
 * server, and the moment the server's answer comes back both sockets are destroyed and
 * `onLost` runs — the server committed, the client never heard. The target port can change
 * (a restarted server); while it is down, clients see refused connections through the proxy.
 */
export class FaultProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private armed: { marker: string; onLost: () => void } | undefined;
  /** Waiters of `responseSeen`: a response to a request containing `marker` that carries `needle`. */
  private readonly sightings = new Set<{ marker: string; needle: string; seen: () => void }>();
  /** Requests whose head contains one of these get 404 (Connect: UNIMPLEMENTED), as from a server without the method. */
  readonly refused = new Set<string>();
  /** While true, new connections are closed at once (the server looks down). */
  paused = false;
  port = 0;

  constructor(public targetPort: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Loses the response of the next request containing `marker`; resolves after `onLost` ran. */
  loseNextResponse(marker: string, onLost: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.armed = { marker, onLost: () => void onLost().then(resolve, reject) };
    });
  }

  /**
   * Resolves once the server's answer to a request whose head contains `marker` has carried
   * `needle` back towards the client (for a stream: a message naming it was sent), or rejects
   * after `ms`. Lets a test wait for a state of a client it cannot observe directly (another
   * process) instead of for a log line that comes before that state.
   */
  responseSeen(marker: string, needle: string, ms = 15_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.sightings.delete(w);
        reject(new Error(`no answer to a request for ${marker} carried ${needle} within ${ms} ms`));
      }, ms);
      const w = {
        marker,
        needle,
        seen: () => {
          clearTimeout(timer);
          this.sightings.delete(w);
          resolve();
        },
      };
      this.sightings.add(w);
    });
  }

  /** Cuts every open connection (streams included). */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  private accept(client: Socket): void {
    if (this.paused) {
      client.destroy();
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.sockets.add(client).add(upstream);
    let cutOnAnswer = false;
    // For responseSeen: the request line of the request this connection carries now (HTTP/1.1
    // without pipelining: one at a time), and what the server has answered to it so far.
    let requested = '';
    let answered = '';
    client.on('data', (chunk: Buffer) => {
      const head = chunk.toString('latin1');
      if ([...this.refused].some((m) => head.includes(m))) {
        client.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      if (this.armed && head.includes(this.armed.marker)) cutOnAnswer = true;
      const requestLine = /^[A-Z]+ \S+ HTTP\/1\.[01]\r\n/.exec(head);
      if (requestLine) {
        requested = requestLine[0];
        answered = '';
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutOnAnswer && this.armed) {
        const { onLost } = this.armed;
        this.armed = undefined;
        client.destroy();
        upstream.destroy();
        onLost();
        return;
      }
      client.write(chunk);
      if (this.sightings.size > 0) {
        answered = (answered + chunk.toString('latin1')).slice(-65_536);
        for (const w of [...this.sightings]) if (requested.includes(w.marker) && answered.includes(w.needle)) w.seen();
      }
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
