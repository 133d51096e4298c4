// `prepare` runs on `npm install`/`npm ci` in a clone (build for development: a debug addon) and on
// `npm pack`/`npm publish` (build what ships: a release addon).
const { execSync } = require('node:child_process');

const shipping = ['pack', 'publish'].includes(process.env.npm_command);
const run = (cmd) => execSync(cmd, { stdio: 'inherit' });
run(shipping ? 'npm run build:native:release' : 'npm run build:native');
run('npm run build:ts');
