// Boots the demo app in this process on a scratch SQLite file, port 0 and 127.0.0.1 only.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startDemo, type DemoApp } from '../../examples/nest-demo/src/app';

export const DEMO_DIR = path.join(__dirname, '..', '..', 'examples', 'nest-demo');

export interface BootedDemo {
  demo: DemoApp;
  stop(): Promise<void>;
}

export async function bootDemo(): Promise<BootedDemo> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-test-'));
  const demo = await startDemo(
    { storeUrl: `sqlite://${path.join(dir, 'event-bus.db')}`, port: 0, host: '127.0.0.1', ssePort: 0, publicDir: path.join(DEMO_DIR, 'public') },
    ['error'],
  );
  return {
    demo,
    async stop() {
      await demo.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
