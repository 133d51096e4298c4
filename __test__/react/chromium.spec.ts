// A real browser: headless Chromium (Debian's, driven by playwright-core) loads a page that uses
// the hooks with the browser's own EventSource, and shows an event published from Node.
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { BusProcess } from './bus-process';

jest.setTimeout(60_000);

const CHROMIUM = '/usr/bin/chromium';

let busProcess: BusProcess | undefined;
let pageServer: http.Server | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((resolve) => (pageServer ? pageServer.close(() => resolve()) : resolve()));
  await busProcess?.stop();
});

async function bundle(): Promise<string> {
  const root = path.join(__dirname, '..', '..');
  const result = await build({
    entryPoints: [path.join(__dirname, 'chromium-page.tsx')],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
    // As an app imports it; resolved to this checkout's build.
    alias: { '@situs/event-bus/react': path.join(root, 'dist', 'react', 'index.js') },
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}

/** Serves the page and its script on 127.0.0.1 (another origin than the SSE server: CORS). */
async function servePage(script: string): Promise<string> {
  const html = '<!doctype html><meta charset="utf-8"><title>event bus</title><div id="root"></div><script src="/app.js"></script>';
  pageServer = http.createServer((req, res) => {
    if (req.url?.startsWith('/app.js')) res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    else res.writeHead(200, { 'content-type': 'text/html' }).end(html);
  });
  await new Promise<void>((resolve) => pageServer!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(pageServer.address() as AddressInfo).port}/`;
}

test('a page using useEventBus in Chromium shows an event published from Node', async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium\` (.ci/run does)`);
  }
  const [script, bus] = await Promise.all([bundle(), BusProcess.start()]);
  busProcess = bus;
  const sseUrl = await bus.listen({ cors: true });
  const pageUrl = await servePage(script);

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(`${pageUrl}?sse=${encodeURIComponent(sseUrl)}`);

  await page.waitForSelector('#status[data-state="open"]');
  expect(await page.textContent('#latest')).toBe('no project yet');
  expect(await bus.sseConnections()).toBe(1);

  const [event] = await bus.publish({ type: 'project.created', payload: { name: 'Apollo' }, projectId: 'p1' });
  await page.locator('#latest', { hasText: /^Apollo$/ }).waitFor();
  expect(await page.textContent('#feed li')).toBe(`${event.position} project.created`);
  expect(await page.textContent('#status')).toBe(`open ${event.position}`);
  expect(errors).toEqual([]);

  // Leaving the page closes the connection on the server.
  await page.close();
  const deadline = Date.now() + 10_000;
  while ((await bus.sseConnections()) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(await bus.sseConnections()).toBe(0);
});
