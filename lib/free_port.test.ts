import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { describe, it } from "node:test";

import { ephemeralLow, freePort } from "./free_port.ts";

function listen(port: number, host?: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ port, host, exclusive: true }, () => resolve(server));
  });
}

describe("freePort", () => {
  it("gives ports below the kernel's ephemeral range, each one bindable and none twice", async () => {
    const low = ephemeralLow();
    const ports = [];
    for (let i = 0; i < 50; i++) ports.push(await freePort("127.0.0.1"));
    assert.equal(new Set(ports).size, ports.length, "a port was handed out twice");
    for (const port of ports) assert.ok(port >= 10_000 && port < low, `${port} is not below the ephemeral range (${low})`);
    const servers = await Promise.all(ports.map((port) => listen(port, "127.0.0.1")));
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it("checks every interface when no host is given", async () => {
    const port = await freePort();
    const server = await listen(port);
    await new Promise((resolve) => server.close(resolve));
  });
});
