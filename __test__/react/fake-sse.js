// TEMPORARY stand-in for bus.sse.listen until the Rust SSE server lands in main. Same wire protocol.
const http = require('node:http');

let connections = 0;
module.exports.connections = () => connections;
module.exports.listen = (bus, { port, host, path, cors }) =>
  new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const u = new URL(req.url, 'http://x');
      if (u.pathname !== path) return res.writeHead(404).end();
      const types = u.searchParams.get('types') ? u.searchParams.get('types').split(',') : ['**'];
      const projectId = u.searchParams.get('projectId') || undefined;
      const format = u.searchParams.get('format');
      const last = u.searchParams.get('lastEventId') || req.headers['last-event-id'];
      const headers = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
      if (cors) headers['access-control-allow-origin'] = req.headers.origin || '*';
      res.writeHead(200, headers);
      res.write(': connected\n\nretry: 3000\n\n');
      connections++;
      const send = (e) =>
        res.write(`id: ${e.position}\n${format === 'message' ? '' : `event: ${e.type}\n`}data: ${JSON.stringify(e)}\n\n`);
      const sub = bus.subscribe(types, send, { projectId, from: last !== undefined ? Number(last) : 'now' });
      const hb = setInterval(() => res.write(': hb\n\n'), 15000);
      req.on('close', () => {
        connections--;
        sub.unsubscribe();
        clearInterval(hb);
      });
    });
    server.listen(port, host, () => {
      resolve({
        url: `http://${host}:${server.address().port}${path}`,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
