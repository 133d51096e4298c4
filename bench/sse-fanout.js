// SSE fan-out (issue 6): N concurrent SSE clients on loopback receive a broadcast at 100 ev/s, from
// the bus's SSE server (Rust, off the Node event loop) and, in the same run, from a NestJS `@Sse()`
// endpoint returning an RxJS Subject (the usual way to do it in a Nest app).
//
// Processes (child_process.fork of this file; a small request/reply protocol over IPC):
//   parent ── fork ──► server <impl>:  opens the server, publishes bench.tick at RATE ev/s from the
//          │                          start (send time in the payload), counts its connections
//          └─ spawn ─► clients × K:    each holds N/K SSE connections, parses every event and
//                                     histograms receive time − send time (one machine, one clock)
// Each case (impl, N) gets a fresh server process: wait 1 s (RSS before), open N connections (K
// client processes, CONNECT_CONCURRENCY connects in flight each, a deadline of 30 s + 2 ms × N),
// count those answered 200, settle 1 s (RSS connected), then measure the events whose sequence
// numbers fall in a window of RATE × SECONDS events that starts 0.5 s ahead, drain, report (RSS
// after, server/client/machine CPU, the clients' event-loop delay, the publisher's lateness).
// A case holds when every connection opened, p99 ≤ P99_MS, ≤ MAX_MISSED of the events were missed
// and the publisher kept ≥ 95% of RATE. Then a search per impl: up the ladder from 1,000 while it
// holds (down if 1,000 fails), then up to two halvings of the gap to the first N that failed.
//
// Implementations:
//   bus       EventBus.open({ storeUrl: 'memory:' }) + bus.sse.listen(); publishes with bus.publish
//   nest      NestJS 11 app (platform-express), @Sse('events') returning Subject.asObservable()
//             as MessageEvent { id, type, data }; the publisher calls subject.next()
//   bus-node  (not run by default) the bus + a hand-written node:http SSE server: one subscriber
//             serialises each event once and writes it to every response; the stand-in for
//             bus.sse before it existed, and the best a Node fan-out on the bus does
//   nest-bus  (not run by default) the README's NestJS integration: @Sse() returning an Observable
//             over bus.sse.stream() (one native stream per connection, Nest writes each message)
// Clients: by default bench/sse-client (Rust, built by `npm run bench:sse`; JSON lines on
// stdin/stdout instead of IPC), 2 processes. BENCH_SSE_CLIENT=net forks this file instead: raw
// node:net sockets read through `onread` into a shared buffer, the GET written by hand, a minimal
// chunked-encoding decoder and an SSE block splitter that finds `"seq":`, `"t":` and `id:` with
// indexOf (the first event of each connection is also JSON.parse'd as a check), 4 processes;
// BENCH_SSE_CLIENT=http uses node:http (agent: false). The 2-core machine runs the clients too:
// they compete with the server for CPU (each case reports both).
//
// Run: npm run bench:sse   (release build; raises the fd limit to 65536, or to the hard limit)
// Knobs (environment): BENCH_SSE_CLIENTS (N list, "1000,5000,10000"), BENCH_SSE_IMPLS ("bus,nest"),
// BENCH_SSE_RATE (100), BENCH_SSE_SECONDS (10), BENCH_SSE_CLIENT_PROCS (2 native, 4 Node),
// BENCH_SSE_CLIENT (native|net|http), BENCH_SSE_P99_MS (100), BENCH_SSE_SEARCH (1: also run the step-up search; 0: no),
// BENCH_SSE_LADDER (the search's N steps), BENCH_SSE_TYPES (the bus's ?types= filter, "bench.*";
// empty: none), BENCH_SSE_MAX_MISSED (fraction of events a held load may miss, 0.001),
// BENCH_SSE_PIN=1 (server on CPU 1, clients on CPU 0), BENCH_SSE_MAX_RSS_MB (a server past it is
// killed, 4096).
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const http = require('node:http');
const { execFileSync } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const { performance, monitorEventLoopDelay } = require('node:perf_hooks');
const processes = require('./lib/processes');
const { cpuOf, threadsCpu, machineCpu, serve } = processes;
const path = require('node:path');
const spawnChild = (role, args) => processes.spawnChild(__filename, role, args);

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const NS = list(process.env.BENCH_SSE_CLIENTS || '1000,5000,10000').map(Number);
const IMPLS = list(process.env.BENCH_SSE_IMPLS || 'bus,nest');
const RATE = Number(process.env.BENCH_SSE_RATE || 100);
const SECONDS = Number(process.env.BENCH_SSE_SECONDS || 10);
const CLIENT_KIND = process.env.BENCH_SSE_CLIENT || 'native';
const CLIENT_PROCS = Number(process.env.BENCH_SSE_CLIENT_PROCS || (CLIENT_KIND === 'native' ? 2 : 4));
// The native client (bench/sse-client, built by `npm run bench:sse`).
const NATIVE_CLIENT = path.join(__dirname, 'sse-client/target/release/sse-bench-client');
const P99_MS = Number(process.env.BENCH_SSE_P99_MS || 100);
const SEARCH = process.env.BENCH_SSE_SEARCH !== '0';
const LADDER = list(process.env.BENCH_SSE_LADDER || '250,500,750,1000,1500,2000,3000,5000,7500,10000,12500,15000').map(Number);
const TYPES = process.env.BENCH_SSE_TYPES ?? 'bench.*';
const MAX_MISSED = Number(process.env.BENCH_SSE_MAX_MISSED || 0.001);
const CONNECT_CONCURRENCY = 64; // connects in flight per client process
const CONNECT_TIMEOUT_MS = 30_000; // for all N connections of a case, plus CONNECT_MS_PER_CLIENT × N
const CONNECT_MS_PER_CLIENT = 2;
// BENCH_SSE_PIN=1: the server's threads on CPU 1, the client processes on CPU 0 (taskset), so each
// side has one core and the clients cannot take the server's.
const PIN = process.env.BENCH_SSE_PIN === '1';
const MAX_SERVER_RSS_MB = Number(process.env.BENCH_SSE_MAX_RSS_MB || 4096);
const DRAIN_QUIET_MS = 3_000; // stop draining after this long without progress
const DRAIN_MAX_MS = 20_000;

const now = () => performance.timeOrigin + performance.now();
const sleep = (d) => new Promise((r) => setTimeout(r, d));

// ---------------------------------------------------------------------------------------------
// Latency histogram: 0.1 ms bins below 100 ms, 1 ms bins up to 10 s, one overflow bin; the exact
// maximum on the side. Client processes ship it to the parent (≈ 11k counters), not every sample.

const FINE = 1000; // bins of 0.1 ms: [0, 100 ms)
const COARSE = 9900; // bins of 1 ms: [100 ms, 10 s)
const BINS = FINE + COARSE + 1;
function bin(latency) {
  if (latency < 0) return 0;
  if (latency < 100) return Math.floor(latency * 10);
  if (latency < 10_000) return FINE + Math.floor(latency - 100);
  return BINS - 1;
}
const binUpper = (i) => (i < FINE ? (i + 1) / 10 : i < FINE + COARSE ? 100 + (i - FINE) + 1 : Infinity);

function quantile(hist, total, q) {
  if (total === 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= rank) return binUpper(i);
  }
  return null;
}

const ms = (x) => (x === null || x === undefined || !Number.isFinite(x) ? x ?? null : +x.toFixed(2));

// The publisher every server runs: RATE events per second on schedule, open loop (nothing awaited
// before the next is due, so a slow server cannot slow the producer down to hide latency). Each
// payload carries its sequence number and send time; `lag` is send time − scheduled time (the
// publishing thread itself being late, e.g. a busy Node event loop).
function startPublisher(publishOne) {
  const state = { seq: 0, errors: 0, lag: new Uint32Array(BINS), lagMax: 0 };
  const start = now() + 50;
  const tick = () => {
    const t0 = now();
    const due = Math.floor(((t0 - start) * RATE) / 1000) + 1;
    while (state.seq < due) {
      const seq = state.seq++;
      const t = now();
      const lag = t - (start + (seq * 1000) / RATE);
      state.lag[bin(lag)]++;
      if (lag > state.lagMax) state.lagMax = lag;
      try {
        const p = publishOne(seq, t);
        if (p && typeof p.catch === 'function') p.catch(() => state.errors++);
      } catch {
        state.errors++;
      }
    }
    setTimeout(tick, Math.max(0, start + (state.seq * 1000) / RATE - now()));
  };
  setTimeout(tick, 50);
  return state;
}

function rssKb(pid = process.pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// Counts a node:http server's open sockets (the nest and bus-node servers).
function countSockets(server) {
  const c = { open: 0 };
  server.on('connection', (socket) => {
    c.open++;
    socket.once('close', () => c.open--);
  });
  return c;
}

// A NestJS 11 app (platform-express) whose one controller answers `@Sse('events')` with
// `events()`, listening on loopback: what `@Controller() class … { @Sse('events') events() … }`
// compiles to (tsc's __decorate is Reflect.decorate when reflect-metadata is loaded).
async function startNestSse(events) {
  require('reflect-metadata');
  const { Controller, Module, Sse } = require('@nestjs/common');
  const { NestFactory } = require('@nestjs/core');
  class EventsController {}
  EventsController.prototype.events = events;
  Reflect.decorate([Sse('events')], EventsController.prototype, 'events', Object.getOwnPropertyDescriptor(EventsController.prototype, 'events'));
  Reflect.decorate([Controller()], EventsController);
  class AppModule {}
  Reflect.decorate([Module({ controllers: [EventsController] })], AppModule);
  const app = await NestFactory.create(AppModule, { logger: false });
  const httpServer = app.getHttpServer();
  const sockets = countSockets(httpServer);
  httpServer.keepAliveTimeout = 0;
  httpServer.requestTimeout = 0;
  await app.listen(0, '127.0.0.1');
  return { app, sockets, url: `http://127.0.0.1:${httpServer.address().port}/events` };
}

async function serverMain(impl) {
  let url;
  let connections; // () → open SSE connections as the server sees them
  let dropped = () => null; // () → connections the server closed as too slow (the bus counts them)
  let close;
  let publisher;
  let info = {};
  if (impl === 'bus' || impl === 'bus-node') {
    const { EventBus } = require('@situs/event-bus');
    const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
    if (impl === 'bus') {
      if (!bus.sse || typeof bus.sse.listen !== 'function') {
        serve({ info: () => ({ skipped: 'bus.sse.listen is not in this build' }), close: () => setImmediate(() => process.exit(0)) });
        return;
      }
      const server = await bus.sse.listen({ port: 0, host: '127.0.0.1', path: '/events' });
      const u = new URL(server.url);
      if (u.pathname === '/' || u.pathname === '') u.pathname = '/events';
      if (TYPES) u.searchParams.set('types', TYPES);
      url = u.toString();
      connections = () => bus.metrics().sseConnections ?? null;
      dropped = () => bus.metrics().sseDropped ?? null;
      close = async () => {
        await server.close();
        await bus.close();
      };
    } else {
      // Hand-written fan-out: one subscriber, one JSON.stringify per event, one write per client.
      const clients = new Set();
      const server = http.createServer((req, res) => {
        if (!req.url.startsWith('/events')) return res.writeHead(404).end();
        req.socket.setNoDelay(true);
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
        res.write(': connected\n\nretry: 3000\n\n');
        clients.add(res);
        res.on('close', () => clients.delete(res));
      });
      server.keepAliveTimeout = 0;
      server.requestTimeout = 0;
      bus.subscribe('bench.*', (e) => {
        const frame = `id: ${e.position}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
        for (const res of clients) res.write(frame);
      });
      await new Promise((r) => server.listen(0, '127.0.0.1', 4096, r));
      url = `http://127.0.0.1:${server.address().port}/events`;
      connections = () => clients.size;
      close = async () => {
        for (const res of clients) res.destroy();
        await new Promise((r) => server.close(r));
        await bus.close();
      };
    }
    publisher = startPublisher((seq, t) => bus.publish({ type: 'bench.tick', payload: { seq, t } }));
    info.publish = 'bus.publish (memory store), not awaited';
  } else if (impl === 'nest-bus') {
    // The README's NestJS integration: @Sse() returning an Observable over bus.sse.stream() (one
    // native stream per connection; Nest writes each message).
    const { Observable } = require('rxjs');
    const { EventBus } = require('@situs/event-bus');
    const bus = await EventBus.open({ storeUrl: 'memory:', logger: () => {} });
    const nest = await startNestSse(
      () =>
        new Observable((subscriber) => {
          const stream = bus.sse.stream({ types: TYPES ? [TYPES] : undefined });
          void (async () => {
            for await (const m of stream) subscriber.next({ id: m.id, type: m.type, data: m.data ?? {} });
            subscriber.complete();
          })().catch((err) => subscriber.error(err));
          return () => void stream.return?.();
        }),
    );
    const app = nest.app;
    url = nest.url;
    connections = () => bus.metrics().sseConnections ?? null;
    dropped = () => bus.metrics().sseDropped ?? null;
    close = async () => {
      await app.close();
      await bus.close();
    };
    publisher = startPublisher((seq, t) => bus.publish({ type: 'bench.tick', payload: { seq, t } }));
    info.publish = 'bus.publish (memory store), not awaited; Nest @Sse over bus.sse.stream()';
  } else if (impl === 'nest') {
    const { Subject } = require('rxjs');
    const subject = new Subject();
    const { app, sockets, url: nestUrl } = await startNestSse(() => subject.asObservable());
    url = nestUrl;
    connections = () => sockets.open;
    close = () => app.close();
    // The same event the bus sends (id, type, payload, timestamp, position), as a MessageEvent.
    publisher = startPublisher((seq, t) =>
      subject.next({
        id: String(seq + 1),
        type: 'bench.tick',
        data: { id: randomUUID(), type: 'bench.tick', payload: { seq, t }, timestamp: new Date(t).toISOString(), position: seq + 1 },
      }),
    );
    info.publish = 'subject.next (MessageEvent)';
    info.nest = require('@nestjs/core/package.json').version;
  } else {
    throw new Error(`unknown impl ${impl}`);
  }
  serve({
    info: () => ({ url, ...info }),
    connections: () => connections(),
    dropped: () => dropped(),
    seq: () => publisher.seq,
    publisher: () => ({ seq: publisher.seq, errors: publisher.errors, lag: Array.from(publisher.lag), lagMax: publisher.lagMax }),
    close: async () => {
      await Promise.race([close(), sleep(5000)]);
      setImmediate(() => process.exit(0));
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Client side: CONNS SSE connections, each parsed as cheaply as possible.

function clientsMain() {
  const conns = [];
  let window = null; // { s0, s1 }: sequence numbers measured
  const hist = new Uint32Array(BINS);
  let max = 0;
  let received = 0; // events in the window, all connections
  let checked = 0; // connections whose first event was JSON.parse'd
  let badEvents = 0;
  const extra = { outside: 0, outOfOrder: 0 };
  // How late this process's event loop runs (a late client adds its delay to every latency).
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });

  // One SSE event block, buf[from, end) (text between blank lines), at receive time `t`. Indexes
  // into the buffer, no slice per block: the hot path of the clients.
  function onBlock(conn, buf, from, end, t) {
    const i = buf.indexOf('"seq":', from);
    if (i < 0 || i > end) return; // a comment (: connected, heartbeat) or retry:
    const seq = parseInt(buf.substr(i + 6, 16), 10);
    const j = buf.indexOf('"t":', i);
    const sent = parseFloat(buf.substr(j + 4, 24));
    if (!conn.checked) {
      conn.checked = true;
      checked++;
      try {
        const line = buf.slice(from, end).split('\n').find((l) => l.startsWith('data:'));
        const e = JSON.parse(line.slice(5));
        if (e.payload.seq !== seq || e.payload.t !== sent || e.type !== 'bench.tick') badEvents++;
      } catch {
        badEvents++;
      }
    }
    // Order and duplicates by the SSE id (the bus's position; Nest's id is seq + 1).
    const k = buf.indexOf('id: ', from);
    const id = k < 0 || k > i ? NaN : parseInt(buf.substr(k + 4, 20), 10);
    if (!(id > conn.lastId)) extra.outOfOrder++;
    conn.lastId = id;
    if (!window || seq < window.s0 || seq >= window.s1) {
      extra.outside++;
      return;
    }
    conn.received++;
    received++;
    const latency = t - sent;
    hist[bin(latency)]++;
    if (latency > max) max = latency;
  }

  // SSE text (after any chunked framing is removed).
  function onText(conn, text, t) {
    const buf = conn.sse ? conn.sse + text : text;
    let start = 0;
    for (;;) {
      const end = buf.indexOf('\n\n', start);
      if (end < 0) break;
      onBlock(conn, buf, start, end, t);
      start = end + 2;
    }
    conn.sse = start === buf.length ? '' : start === 0 ? buf : buf.slice(start);
  }

  // Transfer-Encoding: chunked, decoded in place: size line, data, CRLF.
  function onBody(conn, data, t) {
    if (!conn.chunked) return onText(conn, data, t);
    let s = conn.raw + data;
    let pos = 0;
    let out = '';
    for (;;) {
      if (conn.left > 0) {
        const take = Math.min(conn.left, s.length - pos);
        out += s.slice(pos, pos + take);
        pos += take;
        conn.left -= take;
        if (conn.left > 0) break;
        conn.left = -2; // then CRLF
      }
      if (conn.left === -2) {
        if (s.length - pos < 2) break;
        pos += 2;
        conn.left = 0;
      }
      const nl = s.indexOf('\r\n', pos);
      if (nl < 0) break;
      const size = parseInt(s.slice(pos, nl), 16);
      pos = nl + 2;
      if (size === 0) {
        conn.ended = true;
        break;
      }
      conn.left = size;
    }
    conn.raw = s.slice(pos);
    if (out) onText(conn, out, t);
  }

  // Reads go straight into one shared buffer through `onread` (no Readable stream, no Buffer per
  // read, no 'data' event): the cheapest way to read a socket from Node.
  const readBuffer = Buffer.allocUnsafe(64 * 1024);
  function openNet(u, conn, done) {
    let head = '';
    const socket = net.connect({
      host: u.hostname,
      port: Number(u.port),
      onread: {
        buffer: readBuffer,
        callback(nread, buf) {
          const t = now();
          const data = buf.latin1Slice(0, nread);
          if (conn.open) return onBody(conn, data, t);
          head += data;
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          const status = head.slice(9, 12);
          if (status !== '200') {
            socket.destroy();
            return done(new Error(`HTTP ${status}`));
          }
          conn.chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head.slice(0, end));
          conn.open = true;
          done();
          const rest = head.slice(end + 4);
          head = '';
          if (rest) onBody(conn, rest, t);
        },
      },
    });
    conn.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      socket.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`);
    });
    socket.on('error', (err) => done(err));
    socket.on('close', () => {
      if (conn.open) conn.closed = true;
      done(new Error('closed'));
    });
  }

  function openHttp(u, conn, done) {
    const req = http.get(u, { agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        res.destroy();
        return done(new Error(`HTTP ${res.statusCode}`));
      }
      conn.open = true;
      done();
      res.setEncoding('latin1');
      res.on('data', (text) => onText(conn, text, now()));
      res.on('close', () => (conn.closed = true));
    });
    conn.socket = req;
    req.on('error', (err) => done(err));
  }

  serve({
    async connect({ url, n, total }) {
      const u = new URL(url);
      const errors = {};
      let next = 0;
      let ok = 0;
      const deadline = Date.now() + CONNECT_TIMEOUT_MS + CONNECT_MS_PER_CLIENT * total;
      const one = () =>
        new Promise((resolve) => {
          const conn = { open: false, closed: false, chunked: false, raw: '', left: 0, sse: '', received: 0, lastId: -1, checked: false };
          conns.push(conn);
          let settled = false;
          const timer = setTimeout(() => done(new Error('timeout')), Math.max(0, deadline - Date.now()));
          function done(err) {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            if (err) {
              const k = err.code || err.message;
              errors[k] = (errors[k] ?? 0) + 1;
              if (conn.socket) conn.socket.destroy();
            } else ok++;
            resolve();
          }
          (CLIENT_KIND === 'http' ? openHttp : openNet)(u, conn, done);
        });
      const loop = async () => {
        while (next < n) {
          next++;
          if (Date.now() >= deadline) {
            errors['not tried (deadline)'] = (errors['not tried (deadline)'] ?? 0) + 1;
            continue;
          }
          await one();
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, n) }, loop));
      return { ok, errors };
    },
    window({ s0, s1 }) {
      window = { s0, s1 };
      loopDelay.reset();
      loopDelay.enable();
    },
    count: () => ({ received, open: conns.filter((c) => c.open && !c.closed).length }),
    report() {
      const open = conns.filter((c) => c.open && !c.closed);
      const perConn = open.map((c) => c.received).sort((a, b) => a - b);
      return {
        hist: Array.from(hist),
        max,
        received,
        open: open.length,
        dropped: conns.filter((c) => c.open && c.closed).length,
        minPerConn: perConn[0] ?? 0,
        checked,
        badEvents,
        // The histogram holds the intervals between its 10 ms timer's runs: the lateness is beyond 10 ms.
        loopDelayMs: { p50: loopDelay.percentile(50) / 1e6 - 10, p99: loopDelay.percentile(99) / 1e6 - 10, max: loopDelay.max / 1e6 - 10 },
        ...extra,
      };
    },
    close() {
      for (const c of conns) c.socket?.destroy();
      setImmediate(() => process.exit(0));
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Parent side.

function cpuSnapshot(server, clients) {
  return {
    wall: performance.now() / 1000,
    server: cpuOf(server.child.pid),
    serverThreads: threadsCpu(server.child.pid),
    clients: clients.reduce((s, c) => s + cpuOf(c.child.pid), 0),
    machine: machineCpu(),
  };
}

function cpuDelta(a, b) {
  const wall = b.wall - a.wall;
  const pct = (x) => Math.round((100 * x) / wall);
  const threads = Object.fromEntries(
    Object.keys(b.serverThreads)
      .map((k) => [k, pct(b.serverThreads[k] - (a.serverThreads[k] ?? 0))])
      .filter(([, v]) => v > 0),
  );
  return {
    serverPct: pct(b.server - a.server),
    serverThreadsPct: threads,
    clientsPct: pct(b.clients - a.clients),
    machineBusyPct: pct(b.machine.busy - a.machine.busy),
    // Everything else on the machine (other work, kernel threads, softirq not charged to us).
    otherPct: pct(b.machine.busy - a.machine.busy - (b.server - a.server) - (b.clients - a.clients)),
    softirqPct: pct(b.machine.softirq - a.machine.softirq),
    machineCapacityPct: pct(b.machine.total - a.machine.total),
  };
}

function line(fields) {
  console.log(JSON.stringify({ bench: 'sse-fanout', ...fields }));
}

const progress = (...a) => process.stderr.write(`[sse-fanout] ${a.join(' ')}\n`);

// Every thread of a child on one CPU.
function pin(child, cpu) {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(child.child.pid)], { stdio: 'ignore' });
}

async function waitSeq(server, target, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seq = await server.request('seq');
    if (seq >= target || Date.now() > deadline) return seq;
    await sleep(Math.min(200, Math.max(5, ((target - seq) * 1000) / RATE / 2)));
  }
}

async function runCase(impl, n) {
  const server = spawnChild('server', [impl]);
  const children = [server];
  // A server that falls far behind may buffer without bound: stop the case before it hurts the
  // machine (others share it).
  let rssLimitHit = false;
  const watchdog = setInterval(() => {
    const rss = rssKb(server.child.pid);
    if (rss !== null && rss > MAX_SERVER_RSS_MB * 1024) {
      rssLimitHit = true;
      server.child.kill('SIGKILL');
    }
  }, 500);
  try {
    await server.ready;
    const info = await server.request('info');
    if (info.skipped) return { impl, clients: n, skipped: info.skipped };
    if (PIN) pin(server, 1);
    await sleep(1000);
    const rssBefore = rssKb(server.child.pid);
    const k = Math.min(CLIENT_PROCS, n);
    const clients = Array.from({ length: k }, () =>
      CLIENT_KIND === 'native' ? processes.spawnNative(NATIVE_CLIENT, 'clients') : spawnChild('clients', []),
    );
    children.push(...clients);
    await Promise.all(clients.map((c) => c.ready));
    if (PIN) for (const c of clients) pin(c, 0);
    const t0 = performance.now();
    const cpuConnect = cpuSnapshot(server, clients);
    const connected = await Promise.all(
      clients.map((c, i) => c.request('connect', { url: info.url, total: n, n: Math.floor(n / k) + (i < n % k ? 1 : 0) })),
    );
    const connectSeconds = (performance.now() - t0) / 1000;
    progress(`  connected in ${connectSeconds.toFixed(1)} s: ${JSON.stringify(connected)}`);
    const connectCpu = cpuDelta(cpuConnect, cpuSnapshot(server, clients));
    const ok = connected.reduce((s, c) => s + c.ok, 0);
    const errors = {};
    for (const c of connected) for (const [e, m] of Object.entries(c.errors)) errors[e] = (errors[e] ?? 0) + m;
    await sleep(1000);
    const rssConnected = rssKb(server.child.pid);
    const serverSees = await server.request('connections');

    // The measured window: RATE × SECONDS events, starting 0.5 s from now.
    const s0 = (await server.request('seq')) + Math.ceil(RATE / 2);
    const s1 = s0 + RATE * SECONDS;
    await Promise.all(clients.map((c) => c.request('window', { s0, s1 })));
    await waitSeq(server, s0, 10_000);
    const cpuBefore = cpuSnapshot(server, clients);
    const tStart = now();
    await waitSeq(server, s1, (SECONDS + 30) * 1000);
    const cpu = cpuDelta(cpuBefore, cpuSnapshot(server, clients));
    progress(`  window published: ${s0}..${s1}`);
    const publishSeconds = (now() - tStart) / 1000;

    // Drain: until every open connection has every window event, or no progress for a while.
    const drainStart = Date.now();
    let last = -1;
    let lastChange = Date.now();
    for (;;) {
      const counts = await Promise.all(clients.map((c) => c.request('count')));
      const received = counts.reduce((s, c) => s + c.received, 0);
      const open = counts.reduce((s, c) => s + c.open, 0);
      if (received >= open * (s1 - s0)) break;
      if (received !== last) {
        last = received;
        lastChange = Date.now();
      }
      if (Date.now() - lastChange > DRAIN_QUIET_MS || Date.now() - drainStart > DRAIN_MAX_MS) break;
      await sleep(100);
    }
    const rssAfter = rssKb(server.child.pid);
    const pub = await server.request('publisher');
    const serverDropped = await server.request('dropped');
    const reports = await Promise.all(clients.map((c) => c.request('report')));

    const hist = new Array(BINS).fill(0);
    for (const r of reports) for (let i = 0; i < BINS; i++) hist[i] += r.hist[i];
    const received = reports.reduce((s, r) => s + r.received, 0);
    const expected = ok * (s1 - s0);
    const lagTotal = pub.lag.reduce((a, b) => a + b, 0);
    const result = {
      impl,
      clients: n,
      connected: ok,
      connectErrors: errors,
      serverSees,
      connectSeconds: +connectSeconds.toFixed(2),
      connectCpu: { serverPct: connectCpu.serverPct, clientsPct: connectCpu.clientsPct },
      events: s1 - s0,
      publishRate: Math.round((s1 - s0) / publishSeconds),
      expected,
      received,
      missed: expected - received,
      missedPct: expected ? +((100 * (expected - received)) / expected).toFixed(3) : null,
      dropped: reports.reduce((s, r) => s + r.dropped, 0),
      serverDropped,
      latencyMs: {
        p50: ms(quantile(hist, received, 0.5)),
        p99: ms(quantile(hist, received, 0.99)),
        p999: ms(quantile(hist, received, 0.999)),
        max: ms(Math.max(...reports.map((r) => r.max))),
      },
      publisherLagMs: { p99: ms(quantile(pub.lag, lagTotal, 0.99)), max: ms(pub.lagMax), errors: pub.errors },
      rssMb: { before: +(rssBefore / 1024).toFixed(1), connected: +(rssConnected / 1024).toFixed(1), after: +(rssAfter / 1024).toFixed(1) },
      rssPerConnKb: {
        connected: ok ? +((rssConnected - rssBefore) / ok).toFixed(1) : null,
        after: ok ? +((rssAfter - rssBefore) / ok).toFixed(1) : null,
      },
      clientLoopDelayMs: {
        p50: ms(Math.max(...reports.map((r) => r.loopDelayMs.p50))),
        p99: ms(Math.max(...reports.map((r) => r.loopDelayMs.p99))),
        max: ms(Math.max(...reports.map((r) => r.loopDelayMs.max))),
      },
      cpu,
      loadavg: require('node:os').loadavg().map((x) => +x.toFixed(2)),
      checks: {
        firstEventsParsed: reports.reduce((s, r) => s + r.checked, 0),
        bad: reports.reduce((s, r) => s + r.badEvents, 0),
        outOfOrderOrDuplicate: reports.reduce((s, r) => s + r.outOfOrder, 0),
      },
    };
    result.held =
      ok === n &&
      result.latencyMs.p99 !== null &&
      result.latencyMs.p99 <= P99_MS &&
      result.missed <= MAX_MISSED * expected &&
      result.publishRate >= 0.95 * RATE &&
      result.checks.bad === 0;
    await Promise.all(children.map((c) => c.request('close').catch(() => undefined)));
    await Promise.race([Promise.all(children.map((c) => c.exited)), sleep(10_000)]);
    return result;
  } catch (err) {
    if (rssLimitHit) throw new Error(`server RSS passed ${MAX_SERVER_RSS_MB} MB: stopped (${err.message})`);
    throw err;
  } finally {
    clearInterval(watchdog);
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  }
}

async function parentMain() {
  line({
    kind: 'setup',
    node: process.version,
    cpus: require('node:os').cpus().length,
    rate: RATE,
    seconds: SECONDS,
    clientProcesses: CLIENT_PROCS,
    pinned: PIN ? 'server on CPU 1, clients on CPU 0' : 'no',
    client: {
      native: 'bench/sse-client (Rust, one thread per process: tokio current_thread, one shared read buffer, chunked decoder, SSE splitter with memmem)',
      http: 'node:http (agent: false) + SSE splitter',
      net: 'node:net with onread (shared buffer) + hand-written GET, chunked decoder, SSE splitter (indexOf)',
    }[CLIENT_KIND],
    p99TargetMs: P99_MS,
    loadavg: require('node:os').loadavg().map((x) => +x.toFixed(2)),
  });
  const results = new Map(); // `${impl}:${n}` → result
  const run = async (impl, n) => {
    const key = `${impl}:${n}`;
    if (!results.has(key)) {
      progress(`${impl} × ${n} …`);
      let r;
      try {
        r = await runCase(impl, n);
      } catch (err) {
        r = { impl, clients: n, error: String(err.message || err), held: false };
      }
      results.set(key, r);
      line({ kind: 'case', ...r });
    }
    return results.get(key);
  };
  for (const n of NS) for (const impl of IMPLS) await run(impl, n);

  if (!SEARCH) return;
  // The most clients each impl holds at p99 ≤ P99_MS with every connection open and (almost) no
  // event missed: step up the ladder from 1,000 while it holds; if 1,000 fails, step down.
  const most = {};
  for (const impl of IMPLS) {
    if (results.get(`${impl}:${NS[0]}`)?.skipped) continue;
    const ladder = [...new Set([...LADDER, ...NS])].sort((a, b) => a - b);
    let i = ladder.indexOf(1000) >= 0 ? ladder.indexOf(1000) : 0;
    let best = null;
    if ((await run(impl, ladder[i])).held) {
      best = ladder[i];
      while (++i < ladder.length && (await run(impl, ladder[i])).held) best = ladder[i];
    } else {
      while (--i >= 0) {
        if ((await run(impl, ladder[i])).held) {
          best = ladder[i];
          break;
        }
      }
    }
    const lowestFailure = () => {
      const failed = [...results.values()].filter((r) => r.impl === impl && !r.held && (best === null || r.clients > best)).map((r) => r.clients);
      return failed.length ? Math.min(...failed) : null;
    };
    // Then narrow the gap between the last N held and the first that failed (up to 2 halvings,
    // to a multiple of 50).
    for (let step = 0; step < 2 && best !== null; step++) {
      const failed = lowestFailure();
      if (failed === null || failed - best <= Math.max(100, best * 0.15)) break;
      const mid = Math.round((best + failed) / 2 / 50) * 50;
      if ((await run(impl, mid)).held) best = mid;
    }
    most[impl] = { heldClients: best, failedAt: lowestFailure(), ladderTop: ladder[ladder.length - 1] };
  }
  const bus10k = results.get('bus:10000');
  line({
    kind: 'summary',
    p99TargetMs: P99_MS,
    most,
    ratio: most.bus?.heldClients && most.nest?.heldClients ? +(most.bus.heldClients / most.nest.heldClients).toFixed(2) : null,
    bus10kP99Ms: bus10k?.latencyMs?.p99 ?? null,
    targets: {
      bus10kP99: bus10k?.latencyMs ? bus10k.held : null,
      fiveTimesNest: most.bus?.heldClients && most.nest?.heldClients ? most.bus.heldClients >= 5 * most.nest.heldClients : null,
    },
  });
}

const [role, arg] = process.argv.slice(2);
const main = role === 'server' ? () => serverMain(arg) : role === 'clients' ? clientsMain : parentMain;
Promise.resolve()
  .then(main)
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
