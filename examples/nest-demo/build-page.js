// Bundles the demo's page (src/page, React + @situs/event-bus/react) into public/app.js with
// esbuild. `npm run demo` runs it; the demo's tests call buildPage() themselves.
const path = require('node:path');
const { build } = require('esbuild');

async function buildPage() {
  await build({
    entryPoints: [path.join(__dirname, 'src', 'page', 'main.tsx')],
    outfile: path.join(__dirname, 'public', 'app.js'),
    bundle: true,
    minify: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
}

module.exports = { buildPage };

if (require.main === module) {
  buildPage().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
