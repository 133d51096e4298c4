import fs from 'node:fs';
import path from 'node:path';
import { cli, CLI, expectOneLineFailure, refusedPort } from './run-cli';

jest.setTimeout(120_000);

const COMMANDS = [
  [],
  ['migrate'],
  ['tail'],
  ['query'],
  ['stats'],
  ['webhooks'],
  ['webhooks', 'list'],
  ['webhooks', 'deliveries'],
  ['webhooks', 'replay'],
  ['dead-letters'],
  ['dead-letters', 'list'],
  ['dead-letters', 'retry'],
  ['archive'],
];

describe('--help', () => {
  it.each(COMMANDS.map((c) => [c.join(' ') || '(the program)', c]))('%s: usage and the exit codes, exit 0, no store needed', async (_name, command) => {
    const result = await cli([...command, '--help']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain(`Usage: situs-event-bus${command.length ? ` ${command.join(' ')}` : ''} `);
    expect(result.stdout).toContain('Exit codes:');
    expect(result.stdout).toContain('--store-url <url>');
    expect(result.stdout).toMatch(/^ {2}3 {2}the store is unreachable/m);
  });

  it('names every command, and each command its options', async () => {
    const top = (await cli(['--help'])).stdout;
    for (const name of ['migrate', 'tail', 'query', 'stats', 'webhooks', 'dead-letters', 'archive']) expect(top).toMatch(new RegExp(`^ {2}${name}\\b`, 'm'));
    expect(top).toContain('--store-url <url>');
    expect(top).toContain('(env: EVENT_STORE_URL)');
    const query = (await cli(['query', '--help'])).stdout;
    for (const flag of ['--type', '--project', '--tenant', '--user', '--since', '--until', '--after', '--cursor', '--limit', '--order', '--archived']) {
      expect(query).toContain(flag);
    }
    expect((await cli(['tail', '--help'])).stdout).toContain('SIGINT (Ctrl-C) or SIGTERM closes the bus and exits 0');
    expect((await cli(['archive', '--help'])).stdout).toContain('--older-than <age>');
  });
});

describe('usage errors exit 2', () => {
  it.each([
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['query', '--colour', 'red'], /unknown option '--colour'/],
    [['query', '--limit', '0'], /--limit <n>' argument '0' is invalid/],
    [['query', '--since', 'yesterday'], /expected a duration \(30d, 12h, 15m, 90s\) or an ISO-8601 date, got "yesterday"/],
    [['query', '--order', 'sideways'], /Allowed choices are asc, desc/],
    [['query', '--after', '3', '--cursor', 'x'], /cannot be used with option '--cursor/],
    [['tail', '--from', 'later'], /expected now, beginning or a position, got "later"/],
    [['archive'], /required option '--older-than <age>' not specified/],
    [['archive', '--older-than', '30 days'], /expected a duration/],
    [['webhooks', 'deliveries', '--status', 'lost'], /Allowed choices are pending, retrying, delivered, dead/],
    [['webhooks', 'replay', 'x1'], /value 'x1' is invalid for argument 'deliveryId'/],
    [['dead-letters', 'retry'], /missing required argument 'id'/],
    [['webhooks'], /Usage: situs-event-bus webhooks/],
  ])('%j', async (args, message) => {
    const result = await cli(args, { EVENT_STORE_URL: 'memory:' });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });

  it('replay wants a delivery id or --failed with --endpoint', async () => {
    for (const [args, message] of [
      [[], 'give the delivery id to replay, or --failed --endpoint <id>'],
      [['--failed'], '--failed needs --endpoint <id>'],
      [['3', '--failed', '--endpoint', 'e'], 'give a delivery id or --failed, not both'],
      [['3', '--endpoint', 'e'], '--endpoint and --since go with --failed'],
    ] as const) {
      expectOneLineFailure(await cli(['webhooks', 'replay', ...args], { EVENT_STORE_URL: 'memory:' }), 2, new RegExp(`^situs-event-bus: ${message.replace(/[-<>]/g, '\\$&')} \\(see --help\\)$`));
    }
  });

  it('without --store-url nor EVENT_STORE_URL, one line and exit 2 (no sqlite file made up)', async () => {
    const result = await cli(['stats']);
    expectOneLineFailure(result, 2, /^situs-event-bus: no store URL: pass --store-url URL or set EVENT_STORE_URL/);
    expect(fs.existsSync(path.join(process.cwd(), 'event-bus.db'))).toBe(false);
  });

  it('a value the bus refuses (INVALID_EVENT) is a usage error too', async () => {
    const result = await cli(['query', '--type', 'a..b', '--store-url', 'memory:']);
    expectOneLineFailure(result, 2, /^situs-event-bus: INVALID_EVENT: .*types\[0\]/);
  });
});

describe('a store that cannot be used: one line with the code, exit 3, the password masked', () => {
  it('an unreachable PostgreSQL (a refused port on 127.0.0.1)', async () => {
    const port = await refusedPort();
    const result = await cli(['stats', '--store-url', `postgres://ops:Sup3rSecret@127.0.0.1:${port}/events`]);
    expectOneLineFailure(result, 3, new RegExp(`^situs-event-bus: STORE_UNAVAILABLE: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port}: connection refused$`));
    expect(result.stderr).not.toContain('Sup3rSecret');
  });

  it('the same from EVENT_STORE_URL, for every command that opens the store', async () => {
    const port = await refusedPort();
    const env = { EVENT_STORE_URL: `postgres://ops:Sup3rSecret@127.0.0.1:${port}/events` };
    for (const args of [['migrate'], ['query'], ['tail'], ['webhooks', 'list'], ['dead-letters', 'retry', '1'], ['archive', '--older-than', '30d']]) {
      const result = await cli(args, env);
      expectOneLineFailure(result, 3, /^situs-event-bus: STORE_UNAVAILABLE: cannot connect to PostgreSQL/);
      expect(result.stderr).not.toContain('Sup3rSecret');
    }
  });

  it.each([
    ['an unsupported scheme', 'mysql://ops:Sup3rSecret@db.internal/events', /^situs-event-bus: INVALID_CONFIG: storeUrl "mysql:\/\/ops:\*\*\*@db\.internal\/events" is not supported/],
    // The core echoes a URL it cannot read as it was given: the CLI masks the password itself.
    ['a mistyped URL', 'postgres//ops:Sup3rSecret@db.internal/events', /^situs-event-bus: INVALID_CONFIG: storeUrl "postgres\/\/ops:\*\*\*@db\.internal\/events" is not supported/],
    ['a bad port', 'postgres://ops:Sup3rSecret@127.0.0.1:99999/events', /^situs-event-bus: INVALID_CONFIG: storeUrl is not a valid PostgreSQL URL/],
  ])('%s', async (_what, url, line) => {
    const result = await cli(['migrate', '--store-url', url]);
    expectOneLineFailure(result, 3, line);
    expect(result.stderr).not.toContain('Sup3rSecret');
  });
});

it('package.json names the bin, a node script in dist/', () => {
  const manifest = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8'));
  expect(path.resolve(__dirname, '..', '..', manifest.bin['situs-event-bus'])).toBe(CLI);
  expect(fs.readFileSync(CLI, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  expect(manifest.dependencies.commander).toMatch(/^\d+\.\d+\.\d+$/);
});

it('--version prints the package version', async () => {
  const manifest = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8'));
  expect(await cli(['--version'])).toMatchObject({ code: 0, stdout: `${manifest.version}\n` });
});
