// `npm run demo`: the NestJS demo app on the embedded SQLite store (EVENT_STORE_URL switches it).
// `npm run demo -- --smoke`: boots on a free port with a scratch SQLite file, exercises each part
// once, prints what it saw and exits 0 (CI runs this).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startDemo } from './app';
import { smoke } from './smoke';

const PUBLIC_DIR = path.join(__dirname, '..', 'public');

function portFrom(value: string | undefined, fallback: number): number {
  const port = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`not a port: ${value}`);
  return port;
}

async function runSmoke(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nest-demo-'));
  const storeUrl = process.env.EVENT_STORE_URL ?? `sqlite://${path.join(dir, 'event-bus.db')}`;
  const demo = await startDemo({ storeUrl, port: 0, host: '127.0.0.1', ssePort: 0, publicDir: PUBLIC_DIR }, ['warn', 'error']);
  console.log(`smoke: demo at ${demo.url} (store ${storeUrl.replace(/\/\/[^@/]*@/, '//…@')}, SSE ${demo.sseUrl})`);
  try {
    await smoke(demo, (line) => console.log(`smoke: ${line}`));
  } finally {
    await demo.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log('smoke: ok');
}

async function runDemo(): Promise<void> {
  const host = process.env.HOST ?? '127.0.0.1';
  const demo = await startDemo({
    storeUrl: process.env.EVENT_STORE_URL,
    port: portFrom(process.env.PORT, 3000),
    host,
    ssePort: portFrom(process.env.SSE_PORT, 0),
    publicDir: PUBLIC_DIR,
  }, ['warn', 'error']); // Nest's route-mapping lines would bury the URL
  // Ctrl-C / SIGTERM: Nest closes the app, then the bus drains and closes.
  demo.app.enableShutdownHooks();
  console.log(`\n  @situs/event-bus demo: open ${demo.url}/\n`);
  console.log(`  REST     ${demo.url}/api/projects   (POST {"name"}, PATCH /:id, DELETE /:id)`);
  console.log(`  @Sse()   ${demo.url}/api/events     Rust SSE ${demo.sseUrl}`);
  console.log(`  health   ${demo.url}/health          metrics ${demo.url}/metrics`);
  console.log(`  store    ${process.env.EVENT_STORE_URL ? 'EVENT_STORE_URL' : 'sqlite://./event-bus.db'}   Ctrl-C stops\n`);
}

(process.argv.includes('--smoke') ? runSmoke() : runDemo()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
