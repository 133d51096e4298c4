// Consumer-group join time on PostgreSQL (issue 12 #4): how long after a member joins it holds its
// fair share of the partitions, when another member (in another process) holds them all.
//
//   parent: bus A, group member holding all 16 partitions (leaseMs 30 000: no renewal in the window)
//   child (fork of this file): bus B; on 'join' notes the time and subscribes to the group, on
//   'leave' unsubscribes
//
// The parent polls event_bus_group_partitions (every ~2 ms) until A and B hold 8 each: join time
// = that moment − the child's time just before `subscribe` (same machine, same clock). After a
// leave it waits until A holds all 16 again (reported as leave time). Not a test: prints one JSON
// line. Run after a build (`npm run build`, or a release build for release figures):
//   node bench/group-join.js      (PostgreSQL at BENCH_DATABASE_URL / TEST_DATABASE_URL)
// Knobs: BENCH_JOINS (20).
const { fork } = require('node:child_process');
const { randomUUID } = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { Client } = require('pg');
const { EventBus } = require('..');

const DB = process.env.BENCH_DATABASE_URL || process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const JOINS = Number(process.env.BENCH_JOINS || 20);
const GROUP = { group: 'bench', from: 'now', partitions: 16, leaseMs: 30_000 };
const LIMIT_MS = 15_000;
const now = () => performance.timeOrigin + performance.now();

async function joiner() {
  const bus = await EventBus.open({ storeUrl: process.env.URL, logger: () => undefined });
  let sub = null;
  process.on('message', async (msg) => {
    if (msg === 'join') {
      const at = now();
      sub = bus.subscribe('bench.*', () => undefined, GROUP);
      process.send({ joinedAt: at });
    } else if (msg === 'leave') {
      sub.unsubscribe();
      process.send({ left: true });
    } else if (msg === 'exit') {
      await bus.close();
      process.exit(0);
    }
  });
  process.send({ ready: true });
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main() {
  const schema = `eb_bench_${randomUUID().replace(/-/g, '')}`;
  const admin = new Client({ connectionString: DB });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = `${DB}${DB.includes('?') ? '&' : '?'}options[search_path]=${schema}`;
  const holder = await EventBus.open({ storeUrl: url, logger: () => undefined });
  holder.subscribe('bench.*', () => undefined, GROUP);

  // Partitions held per member (live leases only).
  const held = async () => {
    const { rows } = await admin.query(
      `SELECT owner, count(*)::int AS n FROM ${schema}.event_bus_group_partitions
       WHERE group_name = $1 AND owner IS NOT NULL AND lease_until > now() GROUP BY owner`,
      [GROUP.group],
    );
    return rows.map((r) => r.n).sort((a, b) => a - b);
  };
  const waitFor = async (want) => {
    const started = now();
    for (;;) {
      const got = await held().catch(() => []);
      if (got.join() === want) return now();
      if (now() - started > LIMIT_MS) throw new Error(`no ${want} split within ${LIMIT_MS} ms (held: ${got})`);
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  await waitFor('16');

  const child = fork(__filename, ['joiner'], { env: { ...process.env, URL: url } });
  const inbox = [];
  const waiters = [];
  child.on('message', (m) => (waiters.length ? waiters.shift()(m) : inbox.push(m)));
  const next = () => new Promise((r) => (inbox.length ? r(inbox.shift()) : waiters.push(r)));
  const ask = (msg) => {
    child.send(msg);
    return next();
  };
  await next(); // ready
  const joins = [];
  const leaves = [];
  for (let i = 0; i < JOINS; i++) {
    const { joinedAt } = await ask('join');
    joins.push((await waitFor('8,8')) - joinedAt);
    const leftAt = now();
    await ask('leave');
    leaves.push((await waitFor('16')) - leftAt);
  }
  child.send('exit');
  await new Promise((r) => child.on('exit', r));
  await holder.close();
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  await admin.end();

  const stats = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: +percentile(s, 50).toFixed(1), p95: +percentile(s, 95).toFixed(1), max: +s[s.length - 1].toFixed(1) };
  };
  console.log(
    JSON.stringify({
      case: 'group join on postgres: member in another process, 16 partitions, leaseMs 30000',
      joins: JOINS,
      joinToFairShareMs: stats(joins),
      leaveToTakenBackMs: stats(leaves),
      leaseRenewalMs: GROUP.leaseMs / 3,
    }),
  );
}

if (process.argv[2] === 'joiner') {
  joiner().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
