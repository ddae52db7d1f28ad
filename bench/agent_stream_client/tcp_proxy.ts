// A TCP proxy between a client and the server that can play the two network
// faults keepalive exists for:
//
//   idle timeout  like a NAT or load balancer, it closes a connection that
//                 carried no byte in either direction for `idleTimeoutMs`;
//   freeze        the peer vanishes without a FIN or RST (a machine powered
//                 off, a cable pulled): the proxy stops reading and writing,
//                 so nothing the client sends is ever answered.

import { createConnection, createServer, type Server, type Socket } from "node:net";

export interface TcpProxyOptions {
  /** Close connections idle for this long; 0 never does. */
  idleTimeoutMs?: number;
}

export class TcpProxy {
  /** Bytes forwarded client → server and server → client. */
  readonly bytes = { toServer: 0, toClient: 0 };
  /** Connections closed because they were idle. */
  idleClosed = 0;
  private readonly pairs = new Set<{ client: Socket; server: Socket; lastByteAt: number }>();
  private readonly server: Server;
  private readonly sweeper: NodeJS.Timeout;
  private frozen = false;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly options: TcpProxyOptions = {},
  ) {
    this.server = createServer((client) => this.accept(client));
    this.sweeper = setInterval(() => this.sweep(), 100);
  }

  /** Listens on 127.0.0.1 and resolves with the base URL to give clients. */
  listen(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(this.server.address() as { port: number }).port}`));
    });
  }

  /** Stops forwarding in both directions, without closing anything. */
  freeze(): void {
    this.frozen = true;
    for (const { client, server } of this.pairs) {
      client.pause();
      server.pause();
    }
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    for (const { client, server } of this.pairs) {
      client.destroy();
      server.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const server = createConnection(this.target);
    const pair = { client, server, lastByteAt: performance.now() };
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket, counter: "toServer" | "toClient") =>
      from.on("data", (chunk: Buffer) => {
        if (this.frozen) return;
        pair.lastByteAt = performance.now();
        this.bytes[counter] += chunk.length;
        to.write(chunk);
      });
    forward(client, server, "toServer");
    forward(server, client, "toClient");
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    for (const socket of [client, server]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  }

  private sweep(): void {
    const idle = this.options.idleTimeoutMs ?? 0;
    if (!idle || this.frozen) return;
    const now = performance.now();
    for (const pair of this.pairs) {
      if (now - pair.lastByteAt >= idle) {
        this.idleClosed++;
        pair.client.destroy();
        pair.server.destroy();
        this.pairs.delete(pair);
      }
    }
  }
}
