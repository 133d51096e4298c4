// The package as users get it: packs the tarballs (`npm pack`: the main package and the
// linux-x64-gnu binary package), checks the binary (glibc ≤ 2.17, stripped), installs both into a
// fresh scratch app with no Rust and no C compiler on the PATH, and runs one contract
// (./app/contract.cjs) under node --test, jest, vitest and mocha, each from CommonJS and from ESM,
// and the Nest module's tests in a NestJS 12 (ESM-only) app (../nest12/app): its own node:test
// test (compiled as a user compiles: nodenext, skipLibCheck off), and the repository's whole jest
// suite of the module, __test__/nest/** (every file there, found by walking the folder), compiled
// to ESM with tsc and run under vitest (see ../nest12/app/vitest.setup.js for what that maps).
// Part of `npm test`; prints one line per run and `contract: N passed, N failed` last.
//
// Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), as the
// rest of `npm test` does, and what scripts/build-release.js needs (zig, cargo-zigbuild).
//
// CONTRACT_TARBALLS=<dir> installs the two tarballs found in <dir> (e.g. from an earlier
// `npm run release:pack`, which writes .pack/) instead of packing: for iterating on the tests
// only. Without it (as `npm test` runs it) the tarballs are packed fresh.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { postgresSchema } = require('../postgres-schema');

const root = path.resolve(__dirname, '..', '..');
const template = path.join(__dirname, 'app');
// The Nest module's tests in an ESM-only NestJS 12 app (the jest suites cover Nest 11 in the repo).
const nest12Template = path.join(__dirname, '..', 'nest12', 'app');
// The jest suite of the Nest module (Nest 11 in the repository), also run in the Nest 12 app.
const testDir = path.join(root, '__test__');
const nestSuite = path.join(testDir, 'nest');
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

/** The tarballs of an earlier pack (CONTRACT_TARBALLS), for iterating on the tests. */
function prebuilt(given) {
  const dir = path.resolve(given); // npm installs them from the scratch apps' folders
  const found = fs.readdirSync(dir).filter((f) => f.endsWith('.tgz')).map((f) => path.join(dir, f));
  console.log(`contract: CONTRACT_TARBALLS is set, installing ${found.map((f) => path.basename(f)).join(', ')} (not packed fresh)`);
  return found;
}

/** Every file under `dir`, as paths relative to it. */
function walk(dir, rel = '') {
  return fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((d) => {
    const r = path.join(rel, d.name);
    return d.isDirectory() ? walk(dir, r) : [r];
  });
}

/**
 * Copies the Nest module's jest suite into the Nest 12 app as suite/__test__/: every file under
 * __test__/nest/ and the top-level helpers the specs may import (__test__/*.ts that are not specs;
 * a CommonJS .js helper becomes .cjs with an ESM re-export of its names, since the app is
 * "type": "module"). Returns the spec files, which vitest must all run.
 */
function copyNestSuite(app) {
  for (const old of ['suite', 'suite-build', 'suite-results.json']) fs.rmSync(path.join(app, old), { recursive: true, force: true });
  const dest = path.join(app, 'suite', '__test__');
  const files = walk(nestSuite);
  // A .js file means CommonJS in the repository and ESM in the app: name fixtures .mjs or .cjs.
  const ambiguous = files.filter((f) => f.endsWith('.js'));
  if (ambiguous.length > 0) throw new Error(`__test__/nest/ has .js files (${ambiguous.join(', ')}): name them .mjs or .cjs, so they mean the same under Nest 11 (CommonJS) and Nest 12 (ESM)`);
  fs.cpSync(nestSuite, path.join(dest, 'nest'), { recursive: true });
  for (const d of fs.readdirSync(testDir, { withFileTypes: true })) {
    if (!d.isFile() || /\.spec\.tsx?$/.test(d.name)) continue;
    const from = path.join(testDir, d.name);
    if (d.name.endsWith('.ts')) {
      fs.copyFileSync(from, path.join(dest, d.name));
    } else if (d.name.endsWith('.js')) {
      const base = d.name.slice(0, -'.js'.length);
      fs.copyFileSync(from, path.join(dest, `${base}.cjs`));
      const names = Object.keys(require(from)).filter((n) => n !== 'default' && n !== '__esModule');
      const shim = [
        `// Generated by __test__/contract/run.js: the ESM face of ./${base}.cjs (a copy of __test__/${d.name}).`,
        "import { createRequire } from 'node:module';",
        `const cjs = createRequire(import.meta.url)('./${base}.cjs');`,
        `export const { ${names.join(', ')} } = cjs;`,
        '',
      ].join('\n');
      fs.writeFileSync(path.join(dest, d.name), shim);
    }
  }
  const specs = files.filter((f) => /\.spec\.tsx?$/.test(f));
  if (specs.length === 0) throw new Error('no spec files under __test__/nest/');
  return specs;
}

/** After tsc (suite/ → suite-build/): the files tsc does not emit (fixtures, the .cjs helpers). */
function copySuiteAssets(app) {
  const from = path.join(app, 'suite');
  for (const rel of walk(from).filter((f) => !f.endsWith('.ts') && !f.endsWith('.tsx'))) {
    const to = path.join(app, 'suite-build', rel);
    if (fs.existsSync(to)) continue; // tsc's output (e.g. a shim it compiled) wins
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.copyFileSync(path.join(from, rel), to);
  }
}

/**
 * vitest's JSON report of the suite: passes only when every spec file ran, each with tests, and
 * no test was skipped or left todo (nothing may quietly not run under Nest 12).
 */
function checkSuiteReport(app, specs) {
  const file = path.join(app, 'suite-results.json');
  if (!fs.existsSync(file)) return { ok: false, summary: 'vitest wrote no report' };
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  const problems = [];
  const ran = new Map(report.testResults.map((r) => [path.relative(path.join(app, 'suite-build', '__test__', 'nest'), r.name), r]));
  for (const spec of specs) {
    const compiled = spec.replace(/\.tsx?$/, '.js');
    const r = ran.get(compiled);
    if (!r) problems.push(`${spec} did not run`);
    else if (r.assertionResults.length === 0) problems.push(`${spec} ran no test`);
  }
  if (report.testResults.length !== specs.length) problems.push(`${report.testResults.length} files ran, ${specs.length} specs`);
  if (report.numPendingTests > 0) problems.push(`${report.numPendingTests} skipped`);
  if (report.numTodoTests > 0) problems.push(`${report.numTodoTests} todo`);
  if (report.numFailedTests > 0 || report.numFailedTestSuites > 0) problems.push(`${report.numFailedTests} tests and ${report.numFailedTestSuites} suites failed`);
  if (!report.success) problems.push('vitest reports failure');
  const counts = `${report.testResults.length} files, ${report.numPassedTests}/${report.numTotalTests} tests passed`;
  return { ok: problems.length === 0, summary: problems.length === 0 ? counts : `${counts}; ${problems.join('; ')}` };
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
    const tarballs = process.env.CONTRACT_TARBALLS ? prebuilt(process.env.CONTRACT_TARBALLS) : pack(path.join(work, 'pack'));
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
    // The repository's jest suite of the module, against Nest 12 and the installed tarball.
    let specs = [];
    const prepareSuite = () => {
      specs = copyNestSuite(nest12);
      must('node', ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.suite.json'], { cwd: nest12, env });
      copySuiteAssets(nest12);
    };
    const runs = [
      ...RUNS.map((r) => ({ ...r, cwd: app })),
      { runner: 'NestJS 12 + node:test', format: 'esm', cmd: ['node', '--test', 'build/'], cwd: nest12 },
      {
        runner: 'NestJS 12 + vitest, the __test__/nest suite',
        format: 'esm',
        cmd: ['node', 'node_modules/vitest/vitest.mjs', 'run'],
        cwd: nest12,
        prepare: prepareSuite,
        check: () => checkSuiteReport(nest12, specs),
      },
    ];

    let passed = 0;
    let failed = 0;
    for (const { runner, format, cmd, cwd, prepare, check } of runs) {
      try {
        prepare?.();
      } catch (err) {
        console.log(`contract: ${runner} (${format}) FAILED (before running: ${err.message})`);
        failed++;
        continue;
      }
      const r = run(cmd[0], cmd.slice(1), { cwd, env, stdio: 'inherit', timeout: 10 * 60_000 });
      const checked = check ? check() : { ok: true };
      const ok = r.status === 0 && checked.ok;
      const detail = checked.summary ? `: ${checked.summary}` : '';
      const why = r.status === 0 ? 'the report' : (r.status ?? r.signal);
      console.log(`contract: ${runner} (${format}) ${ok ? 'passed' : `FAILED (${why})`}${detail}`);
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

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

// For iterating on the Nest 12 suite in an app of one's own (see ../nest12/app/README.md).
module.exports = { copyNestSuite, copySuiteAssets, checkSuiteReport };
