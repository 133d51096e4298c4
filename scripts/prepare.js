// `prepare` runs on `npm install`/`npm ci` in a clone: it builds for development (a debug addon
// and the TypeScript). What ships is packed by `npm run release:pack` (scripts/pack.js), which adds
// the per-platform binary packages; a plain `npm pack`/`npm publish` here would ship neither.
const { execSync } = require('node:child_process');

if (['pack', 'publish'].includes(process.env.npm_command)) {
  console.error('Use `npm run release:pack` (scripts/pack.js): it builds the release binary and packs both packages.');
  process.exit(1);
}
const run = (cmd) => execSync(cmd, { stdio: 'inherit' });
run('npm run build:native');
run('npm run build:ts');
