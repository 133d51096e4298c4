// The package as users get it: packs the tarballs (`npm pack`: the main package and the
// linux-x64-gnu binary package), checks the binary (glibc ≤ 2.17, stripped), installs both into a
// fresh scratch app with no Rust and no C compiler on the PATH, and runs one contract
// (./app/contract.cjs) under node --test, jest, vitest and mocha, each from CommonJS and from ESM,
// and the Nest module's tests in a NestJS 12 (ESM-only) app (../nest12/app).
// Part of `npm test`; prints one line per run and `contract: N passed, N failed` last.
//
// Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), as the
// rest of `npm test` does, and what scripts/build-release.js needs (zig, cargo-zigbuild).
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { postgresSchema } = require('../postgres-schema');

const root = path.resolve(__dirname, '..', '..');
const template = path.join(__dirname, 'app');
// The Nest module's tests in an ESM-only NestJS 12 app (the jest suites cover Nest 11 in the repo).
const nest12Template = path.join(__dirname, '..', 'nest12', 'app');
const MAX_GLIBC = [2, 17];

const RUNS = [
  { runner: 'node:test', format: 'cjs', cmd: ['node', '--test', 'test/node.test.cjs'] },
  { runner: 'node:test', format: 'esm', cmd: ['node', '--test', 'test/node.test.mjs'] },
  { runner: 'jest', format: 'cjs', cmd: ['node', 'node_modules/jest/bin/jest.js', 'test/jest.test.cjs'] },
  {
    runner: 'jest',
    format: 'esm',
    cmd: ['node', '--experimental-vm-modules', 'node_modules/jest/bin/jest.js', 'test/jest.test.mjs'],
  },
  { runner: 'vitest', format: 'cjs', cmd: ['node', 'node_modules/vitest/vitest.mjs', 'run', '--testTimeout=60000', 'test/vitest-require.test.mjs'] },
  { runner: 'vitest', format: 'esm', cmd: ['node', 'node_modules/vitest/vitest.mjs', 'run', '--testTimeout=60000', 'test/vitest.test.mjs'] },
  { runner: 'mocha', format: 'cjs', cmd: ['node', 'node_modules/mocha/bin/mocha.js', '--timeout', '60000', 'test/mocha.spec.cjs'] },
  { runner: 'mocha', format: 'esm', cmd: ['node', 'node_modules/mocha/bin/mocha.js', '--timeout', '60000', 'test/mocha.spec.mjs'] },
];

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...options });
  if (r.error) throw r.error;
  return r;
}

function must(cmd, args, options = {}) {
  const r = run(cmd, args, { stdio: 'inherit', ...options });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

/** The tarballs users install: scripts/pack.js builds what ships and packs it. */
function pack(dest) {
  const r = run(process.execPath, [path.join(root, 'scripts', 'pack.js'), dest], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`scripts/pack.js exited with ${r.status ?? r.signal}`);
  return r.stdout.trim().split('\n').filter((line) => line.endsWith('.tgz'));
}

/** The binary must load on glibc 2.17 and be stripped (checked with binutils, as a user would). */
function checkBinary(file) {
  const symbols = run('objdump', ['-T', file]);
  if (symbols.status !== 0) throw new Error(`objdump -T failed: ${symbols.stderr}`);
  const versions = [...symbols.stdout.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2])]);
  if (versions.length === 0) throw new Error('objdump -T shows no GLIBC_ symbol versions: not a glibc build?');
  const highest = versions.reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a));
  const ok = highest[0] < MAX_GLIBC[0] || (highest[0] === MAX_GLIBC[0] && highest[1] <= MAX_GLIBC[1]);
  if (!ok) throw new Error(`the binary needs GLIBC_${highest.join('.')}, above ${MAX_GLIBC.join('.')}`);
  const sections = run('objdump', ['-h', file]).stdout;
  if (/\s\.symtab\s/.test(sections) || /\s\.debug_info\s/.test(sections)) throw new Error('the binary is not stripped');
  const mb = (fs.statSync(file).size / 1e6).toFixed(1);
  console.log(`contract: binary needs at most GLIBC_${highest.join('.')}, stripped, ${mb} MB`);
}

/** A bin folder holding node and npm only, so the scratch app has no Rust and no C compiler. */
function bareBin(dir) {
  fs.mkdirSync(dir);
  const nodeBin = path.dirname(process.execPath);
  for (const tool of ['node', 'npm', 'npx']) fs.symlinkSync(fs.realpathSync(path.join(nodeBin, tool)), path.join(dir, tool));
  fs.symlinkSync('/bin/sh', path.join(dir, 'sh'));
  for (const tool of ['cargo', 'rustc', 'cc', 'gcc', 'clang', 'zig', 'make']) {
    if (run('/bin/sh', ['-c', `command -v ${tool}`], { env: { PATH: dir } }).status === 0) {
      throw new Error(`${tool} is on the scratch app's PATH`);
    }
  }
  return dir;
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-contract-'));
  const pg = await postgresSchema('eb_contract');
  try {
    const tarballs = pack(path.join(work, 'pack'));
    const binaryTarball = tarballs.find((t) => path.basename(t).includes('linux-x64-gnu'));
    if (!binaryTarball || tarballs.length !== 2) throw new Error(`expected two tarballs, got ${tarballs.join(', ')}`);
    const unpacked = path.join(work, 'unpacked');
    fs.mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', binaryTarball, '-C', unpacked]);
    checkBinary(path.join(unpacked, 'package', 'event-bus.linux-x64-gnu.node'));

    const env = { ...process.env, PATH: bareBin(path.join(work, 'bin')), CONTRACT_POSTGRES_URL: pg.url };
    delete env.npm_config_prefix;
    /** A copy of a template app with its locked dependencies, then the tarballs, as a user adds one. */
    const scratchApp = (from, name) => {
      const dir = path.join(work, name);
      fs.cpSync(from, dir, { recursive: true, filter: (src) => !src.includes('node_modules') && !src.includes('/build') });
      must('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, env });
      must('npm', ['install', '--no-save', '--no-audit', '--no-fund', ...tarballs], { cwd: dir, env });
      return dir;
    };
    const app = scratchApp(template, 'app');
    const nest12 = scratchApp(nest12Template, 'nest12');
    // Compiled as a Nest 12 user compiles (tsc, nodenext, strict, the package's typings checked).
    must('node', ['node_modules/typescript/bin/tsc', '-p', '.'], { cwd: nest12, env });
    const runs = [
      ...RUNS.map((r) => ({ ...r, cwd: app })),
      { runner: 'NestJS 12 + node:test', format: 'esm', cmd: ['node', '--test', 'build/'], cwd: nest12 },
    ];

    let passed = 0;
    let failed = 0;
    for (const { runner, format, cmd, cwd } of runs) {
      const r = run(cmd[0], cmd.slice(1), { cwd, env, stdio: 'inherit', timeout: 10 * 60_000 });
      const ok = r.status === 0;
      console.log(`contract: ${runner} (${format}) ${ok ? 'passed' : `FAILED (${r.status ?? r.signal})`}`);
      if (ok) passed++;
      else failed++;
    }
    console.log(`contract: ${passed} passed, ${failed} failed`);
    if (failed > 0) process.exitCode = 1;
  } finally {
    await pg.drop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
