import net from 'node:net';

/** A TCP proxy on 127.0.0.1 that can be stopped (refusing and cutting every connection) and restarted on the same port. */
export async function tcpProxy(target: { host: string; port: number }): Promise<{
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const start = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('close', () => sockets.delete(sock));
          sock.on('error', () => undefined);
        }
        client.pipe(upstream).pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as net.AddressInfo).port;
        server = s;
        resolve();
      });
    });
  await start();
  return {
    get port() {
      return port;
    },
    start,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const sock of sockets) sock.destroy();
        server?.close(() => resolve());
        server = undefined;
      }),
  };
}
