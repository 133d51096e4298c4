import { execFileSync } from 'node:child_process';
import path from 'node:path';

const root = path.join(__dirname, '..', '..');

/** Modules whose path is under node_modules/<scope/name> in a fresh Node that required `entry`. */
function loadedPackages(entry: string): string[] {
  const script = `
    require(${JSON.stringify(path.join(root, entry))});
    const names = new Set();
    for (const file of Object.keys(require.cache)) {
      const m = /node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(file);
      if (m) names.add(m[1].replace(/\\\\/g, '/'));
    }
    process.stdout.write(JSON.stringify([...names]));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' })) as string[];
}

it('requiring the root package loads no @nestjs module, rxjs or reflect-metadata', () => {
  const loaded = loadedPackages('dist/index.js');
  expect(loaded.filter((n) => n.startsWith('@nestjs/') || n === 'rxjs' || n === 'reflect-metadata')).toEqual([]);
});

it('requiring @situs/event-bus/nest loads Nest but not @nestjs/terminus (the health entry does)', () => {
  const nest = loadedPackages('dist/nest/index.js');
  expect(nest).toEqual(expect.arrayContaining(['@nestjs/common', '@nestjs/core', 'rxjs']));
  expect(nest).not.toContain('@nestjs/terminus');
  expect(loadedPackages('dist/nest/health.js')).toContain('@nestjs/terminus');
});

it('the ESM entry of @situs/event-bus/nest gives the same classes as the CommonJS one', () => {
  const script = `
    import * as esm from ${JSON.stringify(path.join(root, 'dist/nest/index.mjs'))};
    import { createRequire } from 'node:module';
    const cjs = createRequire(import.meta.url)(${JSON.stringify(path.join(root, 'dist/nest/index.js'))});
    process.stdout.write(JSON.stringify({ same: esm.EventBusModule === cjs.EventBusModule && esm.OnBusEvent === cjs.OnBusEvent, names: Object.keys(esm).sort() }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' }));
  expect(out.same).toBe(true);
  expect(out.names).toEqual(expect.arrayContaining(['EventBusModule', 'EventBusService', 'RealtimeEventsService', 'OnBusEvent', 'ProjectEventType']));
});
