// The demo's page in headless Chromium (Debian's, driven by playwright-core): create a project
// through the page's form, see it in the live tail and the webhook table, toggle the plugin, and
// take a screenshot.
// UPDATE_DEMO_SCREENSHOT=1 writes it to docs/demo.png (the one the README shows); otherwise it goes
// to a temporary file, so a test run leaves the tree clean.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { bootDemo, DEMO_DIR, type BootedDemo } from './boot-demo';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { buildPage } = require(path.join(DEMO_DIR, 'build-page.js')) as { buildPage: () => Promise<void> };

jest.setTimeout(90_000);

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = process.env.UPDATE_DEMO_SCREENSHOT
  ? path.join(__dirname, '..', '..', 'docs', 'demo.png')
  : path.join(os.tmpdir(), `situs-demo-${process.pid}.png`);

let booted: BootedDemo | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  await booted?.stop();
});

test('the page shows a project created through its form in the live tail, with its webhook delivered', async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium\` (.ci/run does)`);
  }
  await buildPage();
  booted = await bootDemo();
  const { demo } = booted;

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(`${demo.url}/`);
  await page.waitForSelector('#connection[data-state="open"]');

  for (const name of ['Apollo', 'Gemini', 'Artemis']) {
    await page.fill('#project-name', name);
    await page.click('#create-project button[type="submit"]');
    await page.locator('#tail li[data-type="project.created"]', { hasText: name }).waitFor();
  }
  // Move one project on through the page's controls: a status change and a rename.
  const gemini = page.locator('#projects li', { hasText: 'Gemini' });
  await gemini.locator('select').selectOption('live');
  await page.locator('#tail li[data-type="project.status_changed"]').waitFor();
  await page.locator('#projects li', { hasText: 'Artemis' }).getByRole('button', { name: 'Delete' }).click();
  await page.locator('#tail li[data-type="project.deleted"]', { hasText: 'Artemis' }).waitFor();
  await page.locator('#projects li', { hasText: 'Artemis' }).waitFor({ state: 'detached' });

  // The type filter narrows the tail in the page.
  await page.selectOption('#type-filter', 'project.created');
  await page.locator('#tail li[data-type="project.deleted"]').waitFor({ state: 'detached' });
  expect(await page.locator('#tail li').count()).toBe(3);
  await page.selectOption('#type-filter', '**');

  // The plugin is uninstalled and reinstalled from the page; each step shows up in the tail.
  await page.locator('#plugin-state[data-installed="yes"]').waitFor();
  await page.click('#toggle-plugin');
  await page.locator('#tail li[data-type="plugin.uninstalled"]').waitFor();
  await page.locator('#plugin-state[data-installed="no"]').waitFor();
  await page.click('#toggle-plugin');
  await page.locator('#tail li[data-type="plugin.installed"]').waitFor();
  await page.locator('#plugin-state[data-installed="yes"]').waitFor();

  // Every project event reaches the demo's receiver: the table shows them delivered, the counters count them.
  await page.locator('#deliveries tbody tr .badge-delivered').nth(5).waitFor();
  await page.locator('#webhooks .counter-value', { hasText: /^[1-9]\d*$/ }).waitFor();
  expect(Number(await page.textContent('#published .counter-value'))).toBeGreaterThanOrEqual(6);
  expect(Number(await page.textContent('#sse .counter-value'))).toBeGreaterThanOrEqual(1);
  expect(errors).toEqual([]);

  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
  if (!process.env.UPDATE_DEMO_SCREENSHOT) fs.rmSync(SCREENSHOT);
});
