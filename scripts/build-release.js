// Builds what ships: the addon in release mode, linked against glibc 2.17 with zig (so it loads on
// Debian 10+, Ubuntu 18.04+, RHEL/Amazon Linux 8 and 2), stripped, into the per-platform package
// npm/linux-x64-gnu/, and the loader (native/index.js, native/index.d.ts) into the main package.
//
// Needs cargo-zigbuild and zig (`cargo install cargo-zigbuild --locked --version 0.24.1` and
// `pip install ziglang==0.17.1`, which `.ci/run` installs); says so when either is missing.
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const TARGET = 'x86_64-unknown-linux-gnu.2.17';
const BINARY = 'event-bus.linux-x64-gnu.node';

function fail(message) {
  console.error(`build-release: ${message}`);
  process.exit(1);
}

const found = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

/** A PATH on which `zig` runs: the machine's, or the one the PyPI `ziglang` package carries. */
function pathWithZig() {
  if (found('zig', ['version'])) return process.env.PATH;
  const python = ['python3', 'python'].find((p) => found(p, ['-m', 'ziglang', 'version']));
  if (!python) fail('zig is not installed: run `pip install ziglang==0.17.1` (or put zig on PATH)');
  const shim = path.join(root, 'target', 'zig-shim');
  fs.mkdirSync(shim, { recursive: true });
  fs.writeFileSync(path.join(shim, 'zig'), `#!/bin/sh\nexec ${python} -m ziglang "$@"\n`, { mode: 0o755 });
  return `${shim}${path.delimiter}${process.env.PATH}`;
}

if (!found('cargo', ['zigbuild', '--help'])) {
  fail('cargo-zigbuild is not installed: run `cargo install cargo-zigbuild --locked --version 0.24.1`');
}
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'situs-release-'));
try {
  // The CLI's bin (its package exports no subpath for it).
  const napi = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json')), 'dist', 'cli.js');
  execFileSync(
    process.execPath,
    [
      napi,
      'build',
      '--platform',
      '--release',
      '--strip',
      '--features',
      'napi',
      '--cross-compile',
      '--target',
      TARGET,
      // Its own target dir, so the development and bench builds are not rebuilt each time.
      '--target-dir',
      path.join(root, 'target', 'ship'),
      '--output-dir',
      out,
      '--js',
      'index.js',
      '--dts',
      'index.d.ts',
    ],
    { cwd: root, stdio: 'inherit', env: { ...process.env, PATH: pathWithZig() } },
  );
  fs.copyFileSync(path.join(out, BINARY), path.join(root, 'npm', 'linux-x64-gnu', BINARY));
  fs.mkdirSync(path.join(root, 'native'), { recursive: true });
  for (const file of ['index.js', 'index.d.ts']) fs.copyFileSync(path.join(out, file), path.join(root, 'native', file));
} finally {
  fs.rmSync(out, { recursive: true, force: true });
}
