// End-to-end test of the chat page served by imgate, in Debian's chromium through playwright-core.
//
//   IMGATE_HTTP=http://127.0.0.1:PORT node tests/browser/chat.test.mjs
//
// Env: IMGATE_HTTP (required) base URL of the server's HTTP port;
//      IMGATE_ARTIFACTS (default tests/browser/artifacts) where screenshots go;
//      CHROMIUM (default /usr/bin/chromium).
// Secure mode (run when IMGATE_SECURE_HTTP is set; run.sh starts a second server for it with
// --auth-hmac-secret, --api-key and --auth-leeway):
//      IMGATE_SECURE_HTTP / IMGATE_SECURE_WS  that server's HTTP base and WebSocket URL
//      BROWSER_AUTH_SECRET   its HMAC secret; BROWSER_API_KEY  its API key
//      IMGATE_TOKEN_A / IMGATE_TOKEN_B  valid HS256 tokens of two users (minted by run.sh)
//      IMGATE_TOKEN_BAD     a token signed with another secret
//      IMGATE_MINT_TOKEN    scripts/mint-token (the test mints short-lived tokens with it)
//      BROWSER_ALLOWED_ORIGIN  (optional) the server's --allowed-origins, the pages' origin: then
//                           upgrades from another origin must be refused (403)
// History (run when IMGATE_HISTORY_HTTP is set; run.sh starts a third server for it with
// --history-size 100): IMGATE_HISTORY_HTTP  that server's HTTP base.
// Never downloads a browser. All waits are bounded; there are no fixed sleeps.
// Usually started by run.sh, which starts imgate first.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { executablePath, launchChromium } from './chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const base = (process.env.IMGATE_HTTP || '').replace(/\/+$/, '');
const artifacts = resolve(process.env.IMGATE_ARTIFACTS || join(here, 'artifacts'));
const WAIT = 15000; // upper bound of every single wait
const OVERALL = 120000; // upper bound of the whole test

if (!base) {
  console.error('chat.test.mjs: set IMGATE_HTTP to the server\'s HTTP base URL, e.g. http://127.0.0.1:8080');
  process.exit(2);
}

const env = process.env;
const secure = env.IMGATE_SECURE_HTTP
  ? {
    http: env.IMGATE_SECURE_HTTP.replace(/\/+$/, ''),
    ws: env.IMGATE_SECURE_WS,
    secret: env.BROWSER_AUTH_SECRET,
    apiKey: env.BROWSER_API_KEY,
    tokenA: env.IMGATE_TOKEN_A,
    tokenB: env.IMGATE_TOKEN_B,
    tokenBad: env.IMGATE_TOKEN_BAD,
    mint: env.IMGATE_MINT_TOKEN || join(here, '../../scripts/mint-token'),
  }
  : null;
const secureOrigin = secure && env.BROWSER_ALLOWED_ORIGIN ? env.BROWSER_ALLOWED_ORIGIN : null;
if (secure) {
  for (const [k, v] of Object.entries(secure)) {
    if (!v) {
      console.error(`chat.test.mjs: IMGATE_SECURE_HTTP is set but ${k} is not (see the header comment)`);
      process.exit(2);
    }
  }
}

const historyBase = (env.IMGATE_HISTORY_HTTP || '').replace(/\/+$/, '');

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

/**
 * A page in a context of its own, console errors and page errors collected, at `url`;
 * `setup(page)` runs before it navigates.
 */
async function newPage(browser, label, url, viewport, setup) {
  const context = await browser.newContext({ viewport: viewport || { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${label} console: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${label} page error: ${error.message}`));
  pages.set(label, page);
  if (setup) await setup(page); // addInitScript is a round trip to the browser: done before goto
  const response = await page.goto(url, { waitUntil: 'domcontentloaded' });
  assert.equal(response.status(), 200, `${label}: GET /home/index status`);
  return page;
}

async function openPage(browser, label, appID, name, viewport) {
  const page = await newPage(browser, label, roomUrl(appID, name), viewport);
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
  for (const label of ['A', 'B', 'C', 'R', 'U', 'SA', 'SB', 'SC', 'SD', 'H1', 'H2', 'HO']) {
    for (const tag of ['end', 'failure', 'phone', 'before-exit', 'refused', 'recovered']) {
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

  log('B sees A in its online list (from the users command)');
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

  log('/?appID=102 redirects to the page of room 102');
  const r = await newPage(browser, 'R', `${base}/?appID=102&name=root-${suffix}`);
  assert.equal(new URL(r.url()).pathname, '/home/index', 'R: redirected to /home/index');
  await r.locator('#status[data-state="online"]').waitFor();
  assert.equal(await r.locator('#room-label').textContent(), 'room 102');
  assert.equal(await r.locator('#messages li[data-kind="warning"]').count(), 0, 'R: no warning for a configured room');
  pages.delete('R');
  await r.context().close();

  log('?appID=999 (not configured): the page says it is in room 101 and its URL says so too');
  const u = await newPage(browser, 'U', roomUrl(999, `lost-${suffix}`));
  await u.locator('#messages li[data-kind="warning"]', { hasText: 'Room 999 is not configured' }).waitFor();
  assert.equal(await u.locator('#room-label').textContent(), 'room 101');
  assert.equal(new URL(u.url()).searchParams.get('appID'), '101', 'U: the URL names room 101');
  await u.locator('#status[data-state="online"]').waitFor();
  await a.locator(`#online-list li[data-user=${attr(`lost-${suffix}`)}]`).waitFor();
  pages.delete('U');
  await u.context().close();

  log('no console errors, no page errors');
  assert.deepEqual(problems, []);
}

// ---- secure mode ---------------------------------------------------------------------------

const mintToken = promisify(execFile);

/** The claims of a JWT (no verification). */
function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** A token from scripts/mint-token; `forged` signs it with a random secret instead of the server's. */
async function mint(sub, ttl, forged = false) {
  const secret = forged ? randomBytes(16).toString('hex') : secure.secret;
  const { stdout } = await mintToken(secure.mint, ['--secret', secret, '--sub', sub, '--ttl', String(ttl)]);
  return stdout.trim();
}

function secureUrl(query) {
  return `${secure.http}/home/index?${new URLSearchParams(query)}`;
}

/** Opens a page with a token and checks it logs in as the token's sub. */
async function openSecurePage(browser, label, token) {
  const { sub } = claimsOf(token);
  const page = await newPage(browser, label, secureUrl({ appID: 101, token }));
  await page.locator('#status[data-state="online"]').waitFor();
  assert.equal(await page.inputValue('#name'), sub, `${label}: #name is the token's sub`);
  assert.equal(await page.locator('#name').evaluate((e) => e.readOnly), true, `${label}: #name is read-only`);
  assert.equal(await page.locator('#status').textContent(), `Online as ${sub}`, `${label}: status`);
  await page.locator(`#online-list li.self[data-user=${attr(sub)}]`).waitFor();
  await page.locator('#messages li[data-kind="system"]', { hasText: `Logged in as ${sub} with a token` }).waitFor();
  return page;
}

/** Waits for the page to refuse to log in; returns the status text. */
async function expectRefused(page, label, pattern) {
  await page.locator('#status[data-state="error"]').waitFor();
  const status = await page.locator('#status').textContent();
  assert.match(status, pattern, `${label}: #status says why`);
  assert.equal(await page.locator('#send').isDisabled(), true, `${label}: #send is disabled`);
  await page.locator('#messages li[data-kind="error"]').first().waitFor();
  return status;
}

async function sendAndReceive(from, fromSub, to, text, { enter = false } = {}) {
  await from.fill('#message', text);
  if (enter) await from.press('#message', 'Enter');
  else await from.click('#send');
  await from.locator('#messages li[data-kind="mine"]', { hasText: text }).waitFor();
  assert.equal(await from.inputValue('#message'), '', 'input cleared after sending');
  const received = to.locator(`#messages li[data-kind="msg"][data-from=${attr(fromSub)}]`, { hasText: text });
  await received.waitFor();
  assert.equal(await received.locator('.text').textContent(), text);
}

/**
 * ImgateClient in the page, against the secure server: getToken (a refused first login retried
 * with a fresh token), automatic refresh, a failed refresh, close 4001 at expiry, and a new login
 * with a fresh token. Tokens live 3 s (the server runs with --auth-leeway 1).
 */
async function checkClientTokenFlow(page) {
  const sub = `flow-${suffix}`;
  await page.exposeFunction('mintTestToken', (forged) => mint(sub, 3, forged));
  return page.evaluate(async ({ url, sub, waitMs }) => {
    const { ImgateClient, refreshDelayMs } = await import('/web/imgate-client.js');
    const log = [];
    let logins = 0;
    let refreshes = 0;
    const client = new ImgateClient({
      url,
      appID: 102,
      userID: sub,
      heartbeatMs: 0,
      reconnect: { minMs: 100, maxMs: 1000 },
      getToken: async ({ reason, userID, appID }) => {
        log.push(`getToken:${reason}:${userID}:${appID}`);
        if (reason === 'login') return window.mintTestToken(++logins === 1); // the first one is forged
        if (++refreshes > 1) throw new Error('token service down');
        return window.mintTestToken(false);
      },
    });
    const exps = [];
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out; log: ${log.join(', ')}`)), waitMs);
      client.on('login', ({ exp }) => {
        log.push('login');
        exps.push(exp);
        if (logins === 3) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    client.on('refresh', ({ exp }) => {
      log.push('refresh');
      exps.push(exp);
    });
    client.on('error', ({ code }) => log.push(`error:${code}`));
    client.on('tokenExpired', () => log.push('tokenExpired'));
    client.on('close', ({ code }) => log.push(`close:${code}`));
    client.connect();
    try {
      await done;
      const published = await client.publish('nobody else is in room 102');
      return {
        log: [...log], // a copy: close() below logs its own close event
        exps,
        publishCode: published.response.code,
        delays: [3600e3, 100e3, 20e3, 0, -5e3].map(refreshDelayMs),
      };
    } finally {
      client.close();
      if (client.state !== 'closed') throw new Error(`state after close(): ${client.state}`);
    }
  }, { url: secure.ws, sub, waitMs: 30000 });
}

/** The HTTP status of a WebSocket upgrade of `url` sent with `Origin: origin` (101: upgraded). */
function upgradeStatus(url, origin) {
  return new Promise((resolvePromise, reject) => {
    const target = new URL(url);
    const req = request({
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        Origin: origin,
      },
    });
    req.setTimeout(WAIT, () => req.destroy(new Error(`no answer to an upgrade from ${origin}`)));
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolvePromise(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      resolvePromise(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

async function secureMain(browser) {
  const subA = claimsOf(secure.tokenA).sub;
  const subB = claimsOf(secure.tokenB).sub;

  if (secureOrigin) {
    log(`secure server: WebSocket upgrades only from ${secureOrigin}, the origin of its pages`);
    assert.equal(new URL(secure.http).origin, secureOrigin, 'the secure pages come from the allowed origin');
    const port = new URL(secure.http).port;
    for (const other of ['http://evil.example', `http://localhost:${port}`, `https://127.0.0.1:${port}`, 'null']) {
      assert.equal(await upgradeStatus(secure.ws, other), 403, `an upgrade with Origin: ${other}`);
    }
    assert.equal(await upgradeStatus(secure.ws, secureOrigin), 101, `an upgrade with Origin: ${secureOrigin}`);
  } else {
    log('secure server: no origin check to verify (BROWSER_ALLOWED_ORIGIN not set)');
  }

  log('secure server: /user/* needs the API key (so the page lists and publishes over the WebSocket)');
  const withoutKey = await fetch(`${secure.http}/user/list?appID=101`);
  assert.equal(withoutKey.status, 401, 'GET /user/list without a key');
  const withKey = await fetch(`${secure.http}/user/list?appID=101`, {
    headers: { Authorization: `Bearer ${secure.apiKey}` },
  });
  assert.equal(withKey.status, 200, 'GET /user/list with the key');

  log(`page SA logs in with a token for ${subA}`);
  const sa = await openSecurePage(browser, 'SA', secure.tokenA);
  log(`page SB logs in with a token for ${subB}`);
  const sb = await openSecurePage(browser, 'SB', secure.tokenB);

  log('SA sees SB enter; SB, who came later, lists SA (users command, no API key)');
  await sa.locator(`#online-list li[data-user=${attr(subB)}]`).waitFor();
  await sa.locator(`#messages li[data-kind="enter"][data-from=${attr(subB)}]`).waitFor();
  await sb.locator(`#online-list li[data-user=${attr(subA)}]`).waitFor();
  await sb.locator(`#online-list li.self[data-user=${attr(subB)}]`).waitFor();
  assert.equal(await sb.locator('#online-count').textContent(), '2', 'SB: two users online');
  for (const page of [sa, sb]) {
    assert.equal(await page.locator('#messages li[data-kind="error"]').count(), 0, 'no error line (online list loaded)');
  }

  log('a message from SB reaches SA (publish)');
  await sendAndReceive(sb, subB, sa, `secure hello <i>x</i> & 你好 ${suffix}`);
  log('a message from SA reaches SB (publish, Enter key)');
  await sendAndReceive(sa, subA, sb, `secure reply ${suffix}`, { enter: true });

  log('page SC without a token is refused (1003)');
  const sc = await newPage(browser, 'SC', secureUrl({ appID: 101 }));
  await expectRefused(sc, 'SC', /Refused by the server: 1003/);

  log('SC pastes a token signed with another secret: refused (1003), stays on the page');
  await sc.waitForLoadState('load'); // so that the next load event is the reload's
  await sc.fill('#token', secure.tokenBad);
  await Promise.all([sc.waitForEvent('load'), sc.click('#rename')]);
  assert.match(sc.url(), /#token=/, 'SC: the token went into the fragment');
  await expectRefused(sc, 'SC', /Refused by the server: 1003/);
  assert.equal(await sc.inputValue('#name'), claimsOf(secure.tokenBad).sub, 'SC: #name is the bad token\'s sub');
  assert.equal(await sc.inputValue('#token'), secure.tokenBad, 'SC: #token shows the token in use');
  await screenshot('SC', sc, 'refused');

  log('page SD with a malformed token says so and does not connect');
  const sockets = [];
  const sd = await newPage(browser, 'SD', secureUrl({ appID: 101, token: 'not-a-jwt' }), null, (page) => {
    page.on('websocket', (ws) => sockets.push(ws.url()));
  });
  await expectRefused(sd, 'SD', /This token cannot be used: a JWT has three parts/);
  assert.deepEqual(sockets, [], 'SD: no WebSocket opened');

  log('ImgateClient: getToken retry, refresh, failed refresh, 4001 at expiry, fresh login');
  const flow = await checkClientTokenFlow(sc);
  console.log(`  ${flow.log.join(' → ')}`);
  const [getLogin, , , getRefresh] = flow.log;
  assert.match(getLogin, /^getToken:login:flow-\d+:102$/);
  assert.match(getRefresh, /^getToken:refresh:/);
  assert.deepEqual(
    flow.log.map((e) => e.replace(/^(getToken:\w+):.*$/, '$1')),
    [
      'getToken:login', 'getToken:login', 'login', // a forged token, refused (1003), retried once
      'getToken:refresh', 'refresh', // at 80 % of the lifetime
      'getToken:refresh', 'error:token', // the token service fails: no refresh
      'tokenExpired', 'close:4001', // the server closes at exp + leeway
      'getToken:login', 'login', // and the client is back with a fresh token
    ],
  );
  assert.ok(flow.exps[1] > flow.exps[0], `refresh moved exp forward: ${flow.exps}`);
  assert.equal(flow.publishCode, 200, 'publish after the new login');
  assert.deepEqual(flow.delays, [2880e3, 70e3, 16e3, 1000, 1000], 'refreshDelayMs');

  log('SA and SB are still online');
  for (const page of [sa, sb]) assert.equal(await page.locator('#status').getAttribute('data-state'), 'online');

  log('no console errors (the page never calls /user/*), no page errors');
  assert.deepEqual(problems, []);
}

// ---- history: recovery after a reconnect, offline messages ------------------------------------

/**
 * Runs in the page before its scripts: a switch for its network. `__imgateNet.down()` closes the
 * page's WebSockets and makes new ones fail at once (as a refused connection does, without a
 * console error); `up()` lets them through again and tells the page it is back online.
 */
function installNetworkSwitch() {
  const Native = window.WebSocket;
  const open = new Set();
  let down = false;
  class SwitchedWebSocket extends Native {
    constructor(url, protocols) {
      if (down) {
        const refused = { url: String(url), readyState: 0, onopen: null, onmessage: null, onerror: null, onclose: null };
        refused.send = () => {
          throw new DOMException('not open', 'InvalidStateError');
        };
        refused.close = () => {};
        setTimeout(() => {
          refused.readyState = 3;
          if (refused.onclose) refused.onclose({ code: 1006, reason: '', wasClean: false });
        }, 0);
        return refused;
      }
      super(url, protocols);
      open.add(this);
      this.addEventListener('close', () => open.delete(this));
    }
  }
  window.WebSocket = SwitchedWebSocket;
  window.__imgateNet = {
    down() {
      down = true;
      for (const ws of open) ws.close(1000, 'network down (test)');
    },
    up() {
      down = false;
      window.dispatchEvent(new Event('online'));
    },
  };
}

async function postForm(path, fields) {
  const res = await fetch(`${historyBase}${path}`, { method: 'POST', body: new URLSearchParams(fields) });
  assert.equal(res.status, 200, `POST ${path}`);
  const body = await res.json();
  assert.equal(body.code, 200, `POST ${path}: ${JSON.stringify(body)}`);
  return body.data;
}

function historyUrl(name) {
  return `${historyBase}/home/index?appID=101&name=${encodeURIComponent(name)}`;
}

/** The `msg` lines of `page` whose text is exactly `text`. */
function messageLines(page, text) {
  return page.locator('#messages li[data-kind="msg"]').filter({ has: page.locator('.text', { hasText: text }) });
}

async function historyMain(browser) {
  const nameH1 = `h1-${suffix}`;
  const nameH2 = `h2-${suffix}`;
  const nameOff = `off-${suffix}`;
  const earlierProblems = problems.length; // those of the scenarios before (checked there)

  log('history server: pages H1 and H2 in room 101');
  const h1 = await newPage(browser, 'H1', historyUrl(nameH1));
  await h1.locator('#status[data-state="online"]').waitFor();
  const logins = []; // data of every login H2 sends
  const h2 = await newPage(browser, 'H2', historyUrl(nameH2), null, async (page) => {
    await page.addInitScript(installNetworkSwitch);
    page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => {
      const frame = JSON.parse(payload);
      if (frame.cmd === 'login') logins.push(frame.data);
    }));
  });
  await h2.locator('#status[data-state="online"]').waitFor();
  await h1.locator(`#online-list li[data-user=${attr(nameH2)}]`).waitFor();
  assert.equal(logins.length, 1, 'H2: one login');
  assert.equal(logins[0].recover, undefined, 'H2: the first login asks for no recovery');

  log('a message from H1 reaches H2 live, not marked as missed');
  const before = `before the loss ${suffix}`;
  await sendAndReceive(h1, nameH1, h2, before);
  assert.equal(await messageLines(h2, before).getAttribute('data-missed'), null, 'H2: a live message is not missed');

  log('H2 loses its connection; H1 sees it leave');
  await h2.evaluate(() => window.__imgateNet.down());
  await h2.locator('#status[data-state="reconnecting"]').waitFor();
  await h1.locator(`#online-list li[data-user=${attr(nameH2)}]`).waitFor({ state: 'detached' });

  log('meanwhile H1 sends a message, and another comes through POST /user/sendMessageAll');
  const away1 = `while you were away ${suffix}`;
  const away2 = `also while away ${suffix}`;
  await h1.fill('#message', away1);
  await h1.click('#send');
  await h1.locator('#messages li[data-kind="mine"]', { hasText: away1 }).waitFor();
  const sent = await postForm('/user/sendMessageAll', {
    appID: '101', userID: `tester-${suffix}`, msgID: `${Date.now()}-${suffix}`, message: away2,
  });
  assert.equal(typeof sent.offset, 'number', `sendMessageAll answers the push's offset: ${JSON.stringify(sent)}`);

  log('H2 comes back: both messages show once, marked "sent while you were disconnected"');
  await h2.evaluate(() => window.__imgateNet.up());
  await h2.locator('#status[data-state="online"]').waitFor();
  for (const text of [away1, away2]) {
    const line = messageLines(h2, text);
    await line.waitFor();
    assert.equal(await line.getAttribute('data-missed'), 'true', `H2: "${text}" is marked as missed`);
    assert.equal(await line.locator('.missed-label').textContent(), 'sent while you were disconnected');
  }
  await h2.locator('#messages li[data-kind="system"]', { hasText: '2 messages sent while you were disconnected' }).waitFor();
  assert.equal(logins.length, 2, 'H2: one more login');
  const { recover } = logins[1];
  assert.ok(recover && recover.room && recover.room.epoch === sent.epoch, `H2 recovers the room stream: ${JSON.stringify(recover)}`);
  assert.equal(recover.room.offset, sent.offset - 2, 'H2 recovers from the last push it got');

  log('a live message after the recovery is not marked; nothing came twice');
  const after = `after the recovery ${suffix}`;
  await sendAndReceive(h1, nameH1, h2, after);
  assert.equal(await messageLines(h2, after).getAttribute('data-missed'), null, 'H2: a live message is not missed');
  for (const text of [before, away1, away2, after]) {
    assert.equal(await messageLines(h2, text).count(), 1, `H2: "${text}" shown exactly once`);
  }
  assert.equal(await h2.locator('#messages li.warning').count(), 0, 'H2: the recovery was complete');
  await screenshot('H2', h2, 'recovered');

  log('H2 away again while more messages are sent than the server keeps (100): a notice says so');
  await h2.evaluate(() => window.__imgateNet.down());
  await h2.locator('#status[data-state="reconnecting"]').waitFor();
  await h1.locator(`#online-list li[data-user=${attr(nameH2)}]`).waitFor({ state: 'detached' });
  const burst = Array.from({ length: 101 }, (_, i) => `burst ${i + 1} ${suffix}`);
  for (const [i, text] of burst.entries()) {
    await postForm('/user/sendMessageAll', {
      appID: '101', userID: `tester-${suffix}`, msgID: `${Date.now()}-b${i}-${suffix}`, message: text,
    });
  }
  await h2.evaluate(() => window.__imgateNet.up());
  await h2.locator('#messages li.warning[data-notice="recovery-incomplete"]').waitFor();
  assert.equal(await messageLines(h2, burst[0]).count(), 0, 'H2: the push no longer kept is not shown');
  assert.equal(await messageLines(h2, burst[100]).getAttribute('data-missed'), 'true', 'H2: the kept ones are');
  assert.equal(await h2.locator('#messages li[data-missed="true"]', { hasText: 'burst ' }).count(), 100, 'H2: 100 kept');

  log('a message to a user who is not connected is stored; their page shows it marked as missed');
  const stored = `for you while you were offline ${suffix}`;
  const kept = await postForm('/user/sendMessage', {
    appID: '101', userID: nameOff, msgID: `${Date.now()}-o${suffix}`, message: stored,
  });
  assert.equal(kept.stored, true, `sendMessage to nobody stores it: ${JSON.stringify(kept)}`);
  const ho = await newPage(browser, 'HO', historyUrl(nameOff));
  await ho.locator('#status[data-state="online"]').waitFor();
  const offlineLine = messageLines(ho, stored);
  await offlineLine.waitFor();
  assert.equal(await offlineLine.getAttribute('data-missed'), 'true', 'HO: the stored message is marked as missed');
  await ho.locator('#messages li[data-kind="system"]', { hasText: '1 message was sent to you while you were away' }).waitFor();
  assert.equal(await offlineLine.count(), 1, 'HO: the stored message shown once');

  log('ImgateClient.history() in a page reads the kept messages of the room and of a user');
  const history = await h1.evaluate(async (user) => {
    const { ImgateClient } = await import('/web/imgate-client.js');
    const client = new ImgateClient({ url: 'ws://127.0.0.1:9/acc', appID: 101, userID: 'reader' });
    const room = await client.history({ since: 0 });
    const cut = await client.history({ since: 1, epoch: room.epoch });
    const last = await client.history({ since: room.offset - 1, epoch: room.epoch });
    const mailbox = await client.history({ userID: user });
    const refused = await client.history({ since: 'x' }).then(() => null, (e) => e.code);
    return { room, cut, last, mailbox, refused };
  }, nameOff);
  assert.deepEqual(history.room.messages.map((m) => m.msg), burst.slice(1), 'history: the 100 kept room messages');
  assert.equal(history.room.complete, true, 'history since 0: all that is kept, complete by definition');
  assert.equal(history.cut.complete, false, 'history since offset 1: the pushes after it were dropped');
  assert.equal(history.cut.messages.length, 100);
  assert.equal(history.room.offset, history.room.messages.at(-1).offset, 'history: the last message is at the top');
  assert.deepEqual(history.last.messages.map((m) => m.msg), [burst[100]], 'history after offset top - 1');
  assert.equal(history.last.complete, true);
  assert.deepEqual(history.mailbox.messages.map((m) => m.msg), [stored], 'history of the offline user\'s stream');
  assert.equal(history.refused, 1001, 'history({since: "x"}) rejects with 1001');

  log('no console errors, no page errors');
  assert.deepEqual(problems.slice(earlierProblems), []);
}

let browser;
let failed = false;
try {
  log(`launch ${executablePath}`);
  browser = await launchChromium();
  await main(browser);
  if (secure) await secureMain(browser);
  else console.log('- secure mode skipped (IMGATE_SECURE_HTTP not set)');
  if (historyBase) await historyMain(browser);
  else console.log('- history skipped (IMGATE_HISTORY_HTTP not set)');
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
