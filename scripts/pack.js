// Packs what ships, as napi-rs packages do: the main package, whose packed package.json names each
// per-platform binary package as an optional dependency (npm installs the one matching the user's
// os, cpu and libc), and the binary packages built here (linux-x64-gnu). The optional dependencies
// are added only to the packed copy: in the repository they would point at packages the registry
// does not have yet, and `npm ci` refuses a lock file without them.
//
// Usage: node scripts/pack.js [destination]   (default: ./.pack); prints the tarballs' paths.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dest = path.resolve(process.argv[2] ?? path.join(root, '.pack'));
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

execFileSync(process.execPath, [path.join(__dirname, 'build-release.js')], { cwd: root, stdio: 'inherit' });
execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'inherit' });

const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const platforms = fs.readdirSync(path.join(root, 'npm')).sort();
const stage = fs.mkdtempSync(path.join(root, 'target', 'pack-'));
try {
  for (const entry of ['README.md', 'index.d.ts', 'dist', 'native/index.js', 'native/index.d.ts']) {
    fs.cpSync(path.join(root, entry), path.join(stage, entry), { recursive: true });
  }
  const { scripts: _scripts, devDependencies: _dev, ...shipped } = manifest;
  shipped.optionalDependencies = {};
  for (const platform of platforms) {
    const sub = JSON.parse(fs.readFileSync(path.join(root, 'npm', platform, 'package.json'), 'utf8'));
    if (sub.version !== manifest.version) throw new Error(`npm/${platform} is at ${sub.version}, not ${manifest.version}`);
    shipped.optionalDependencies[sub.name] = sub.version;
  }
  fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(shipped, null, 2)}\n`);
  fs.mkdirSync(dest, { recursive: true });
  const packed = [run('npm', ['pack', '--ignore-scripts', '--pack-destination', dest], stage).trim().split('\n').pop()];
  // Only the platforms built on this machine have a binary to pack (see the README).
  const gnu = path.join(root, 'npm', 'linux-x64-gnu');
  packed.push(run('npm', ['pack', '--ignore-scripts', '--pack-destination', dest], gnu).trim().split('\n').pop());
  for (const file of packed) console.log(path.join(dest, file));
} finally {
  fs.rmSync(stage, { recursive: true, force: true });
}
