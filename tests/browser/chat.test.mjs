// End-to-end test of the chat page served by imgate, in Debian's chromium through playwright-core.
//
//   IMGATE_HTTP=http://127.0.0.1:PORT node tests/browser/chat.test.mjs
//
// Env: IMGATE_HTTP (required) base URL of the server's HTTP port;
//      IMGATE_ARTIFACTS (default tests/browser/artifacts) where screenshots go;
//      CHROMIUM (default /usr/bin/chromium).
// Never downloads a browser. All waits are bounded; there are no fixed sleeps.
// Usually started by run.sh, which starts imgate first.

import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const base = (process.env.IMGATE_HTTP || '').replace(/\/+$/, '');
const artifacts = resolve(process.env.IMGATE_ARTIFACTS || join(here, 'artifacts'));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 15000; // upper bound of every single wait
const OVERALL = 120000; // upper bound of the whole test

if (!base) {
  console.error('chat.test.mjs: set IMGATE_HTTP to the server\'s HTTP base URL, e.g. http://127.0.0.1:8080');
  process.exit(2);
}

const watchdog = setTimeout(() => {
  console.error(`chat.test.mjs: not done after ${OVERALL / 1000} s, giving up`);
  process.exit(1);
}, OVERALL);
watchdog.unref();

const suffix = String(Date.now() % 100000).padStart(5, '0');
const NAME_A = `alice-${suffix}`; // 11 bytes
const NAME_B = '<b>bold</b>'; // must show as literal text
const NAME_C = `手机-${suffix}`; // phone-width page, 12 bytes

const pages = new Map(); // label -> page (open ones)
const problems = []; // console errors and page errors
let step = 'start';

function log(text) {
  step = text;
  console.log(`- ${text}`);
}

function roomUrl(appID, name) {
  return `${base}/home/index?appID=${appID}&name=${encodeURIComponent(name)}`;
}

/** CSS attribute selector value, quoted. */
function attr(value) {
  return JSON.stringify(value);
}

async function openPage(browser, label, appID, name, viewport) {
  const context = await browser.newContext({ viewport: viewport || { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${label} console: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${label} page error: ${error.message}`));
  pages.set(label, page);
  const response = await page.goto(roomUrl(appID, name), { waitUntil: 'domcontentloaded' });
  assert.equal(response.status(), 200, `${label}: GET /home/index status`);
  await page.locator('#status[data-state="online"]').waitFor({ timeout: WAIT });
  assert.equal(await page.inputValue('#name'), name, `${label}: #name shows the forced name`);
  return page;
}

async function screenshot(label, page, tag) {
  if (!page || page.isClosed()) return;
  try {
    await mkdir(artifacts, { recursive: true });
    const file = join(artifacts, `${label}-${tag}.png`);
    await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
    console.log(`  screenshot ${file}`);
  } catch (error) {
    console.log(`  screenshot of ${label} failed: ${error.message}`);
  }
}

async function main(browser) {
  // Screenshots of an earlier run would be confusing next to this run's.
  for (const label of ['A', 'B', 'C']) {
    for (const tag of ['end', 'failure', 'phone', 'before-exit']) {
      await rm(join(artifacts, `${label}-${tag}.png`), { force: true });
    }
  }
  log(`page A (${NAME_A}) logs in to room 101`);
  const a = await openPage(browser, 'A', 101, NAME_A);
  await a.locator(`#online-list li[data-user=${attr(NAME_A)}]`).waitFor();
  assert.equal(await a.title(), 'imgate chat — room 101');
  const links = await a.locator('.rooms a').evaluateAll((els) => els.map((e) => e.getAttribute('href')));
  assert.deepEqual(links, [101, 102, 103, 104].map((n) => `/home/index?appID=${n}`), 'room links');

  log(`page B (${NAME_B}) logs in to room 101`);
  const b = await openPage(browser, 'B', 101, NAME_B);

  log('A sees B enter (online list and a line in the messages)');
  await a.locator(`#online-list li[data-user=${attr(NAME_B)}]`).waitFor();
  await a.locator(`#messages li[data-kind="enter"][data-from=${attr(NAME_B)}]`).waitFor();

  log('B sees A in its online list (from GET /user/list)');
  await b.locator(`#online-list li[data-user=${attr(NAME_A)}]`).waitFor();
  await b.locator(`#online-list li[data-user=${attr(NAME_B)}]`).waitFor();

  log('the <b> name is shown as text, never as markup');
  for (const [label, page] of [['A', a], ['B', b]]) {
    const listText = await page.locator('#online-list').textContent();
    assert.ok(listText.includes(NAME_B), `${label}: online list text contains ${NAME_B}: ${listText}`);
    assert.equal(await page.locator('#online-list b').count(), 0, `${label}: no <b> element in the online list`);
    assert.equal(await page.locator('#messages b').count(), 0, `${label}: no <b> element in the messages`);
  }
  assert.equal(
    await a.locator(`#online-list li[data-user=${attr(NAME_B)}]`).textContent(),
    NAME_B,
    'A: the list item of B is exactly its name',
  );

  log('a message from B reaches A, markup in it stays text');
  const fromB = `hi from bold <i>x</i> & 你好 ${suffix}`;
  await b.fill('#message', fromB);
  await b.click('#send');
  await b.locator('#messages li[data-kind="mine"]', { hasText: fromB }).waitFor();
  assert.equal(await b.inputValue('#message'), '', 'B: input cleared after sending');
  const atA = a.locator(`#messages li[data-kind="msg"][data-from=${attr(NAME_B)}]`, { hasText: fromB });
  await atA.waitFor();
  assert.equal(await atA.locator('.text').textContent(), fromB);
  assert.equal(await a.locator('#messages i, #messages b').count(), 0, 'A: no markup from messages');

  log('a message from A reaches B (sent with the Enter key)');
  const fromA = `hello from A ${suffix}`;
  await a.fill('#message', fromA);
  await a.press('#message', 'Enter');
  await b.locator(`#messages li[data-kind="msg"][data-from=${attr(NAME_A)}]`, { hasText: fromA }).waitFor();
  await a.locator('#messages li[data-kind="mine"]', { hasText: fromA }).waitFor();

  log(`page C (${NAME_C}) at phone width in room 102 is isolated from room 101`);
  const c = await openPage(browser, 'C', 102, NAME_C, { width: 375, height: 667 });
  await c.locator(`#online-list li[data-user=${attr(NAME_C)}]`).waitFor();
  assert.equal(await c.locator(`#online-list li[data-user=${attr(NAME_A)}]`).count(), 0, 'C: A is in another room');
  const overflow = await c.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `C: no horizontal scrolling at phone width (overflow ${overflow}px)`);
  for (const sel of ['#online-list', '#messages', '#message', '#send', '#status']) {
    const box = await c.locator(sel).boundingBox();
    assert.ok(box && box.width > 0 && box.x >= 0 && box.x + box.width <= 375 + 0.5, `C: ${sel} fits the width`);
  }
  await screenshot('C', c, 'phone');

  log('B leaves: A sees it go (online list and an exit line)');
  await screenshot('B', b, 'before-exit');
  pages.delete('B');
  await b.context().close();
  await a.locator(`#online-list li[data-user=${attr(NAME_B)}]`).waitFor({ state: 'detached' });
  await a.locator(`#messages li[data-kind="exit"][data-from=${attr(NAME_B)}]`).waitFor();
  await a.locator(`#online-list li[data-user=${attr(NAME_A)}]`).waitFor();
  assert.equal(await a.locator('#status').getAttribute('data-state'), 'online');

  log('no console errors, no page errors');
  assert.deepEqual(problems, []);
}

let browser;
let failed = false;
try {
  log(`launch ${executablePath}`);
  browser = await chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  await main(browser);
} catch (error) {
  failed = true;
  console.error(`\nFAILED at step "${step}":\n${error.stack || error}`);
  if (problems.length) console.error(`console/page errors:\n  ${problems.join('\n  ')}`);
} finally {
  for (const [label, page] of pages) await screenshot(label, page, failed ? 'failure' : 'end');
  if (browser) await browser.close().catch(() => {});
}
console.log(failed ? 'chat.test.mjs: FAIL' : 'chat.test.mjs: PASS');
process.exit(failed ? 1 : 0);
