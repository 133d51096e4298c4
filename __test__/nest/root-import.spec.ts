import { execFileSync } from 'node:child_process';

// The child processes import the package by name from this directory, as an app does: in the
// repository that is the package itself (Node's self-reference through package.json "exports"),
// in the NestJS 12 scratch app (__test__/nest12) the installed tarball.
const here = __dirname;

/** Modules whose path is under node_modules/<scope/name> in a fresh Node that required `entry`. */
function loadedPackages(entry: string): string[] {
  const script = `
    require(${JSON.stringify(entry)});
    const names = new Set();
    for (const file of Object.keys(require.cache)) {
      const m = /node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(file);
      if (m) names.add(m[1].replace(/\\\\/g, '/'));
    }
    process.stdout.write(JSON.stringify([...names]));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: here, encoding: 'utf8' })) as string[];
}

it('requiring the root package loads no @nestjs module, rxjs or reflect-metadata', () => {
  const loaded = loadedPackages('@situs/event-bus');
  expect(loaded.filter((n) => n.startsWith('@nestjs/') || n === 'rxjs' || n === 'reflect-metadata')).toEqual([]);
});

it('requiring @situs/event-bus/nest loads Nest but not @nestjs/terminus (the health entry does)', () => {
  const nest = loadedPackages('@situs/event-bus/nest');
  expect(nest).toEqual(expect.arrayContaining(['@nestjs/common', '@nestjs/core', 'rxjs']));
  expect(nest).not.toContain('@nestjs/terminus');
  expect(loadedPackages('@situs/event-bus/nest/health')).toContain('@nestjs/terminus');
});

it('the ESM entry of @situs/event-bus/nest gives the same classes as the CommonJS one', () => {
  const script = `
    import * as esm from '@situs/event-bus/nest';
    import { createRequire } from 'node:module';
    const cjs = createRequire(import.meta.url)('@situs/event-bus/nest');
    process.stdout.write(JSON.stringify({ same: esm.EventBusModule === cjs.EventBusModule && esm.OnBusEvent === cjs.OnBusEvent, names: Object.keys(esm).sort() }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: here, encoding: 'utf8' }));
  expect(out.same).toBe(true);
  expect(out.names).toEqual(expect.arrayContaining(['EventBusModule', 'EventBusService', 'RealtimeEventsService', 'OnBusEvent', 'ProjectEventType']));
});
