// Rolling restart seen from a browser (docs/cluster.md, "Rolling restart"): ImgateClient in a page,
// given the WebSocket URLs of two nodes of one Redis-mode cluster with history on, is logged in on
// node A; A gets SIGTERM. The page gets close 1001, reconnects to node B by itself, recovers the
// message sent while it was away (marked missed) and gets a live one after, each exactly once; B's
// /user/list shows the user exactly once, and never twice while this happens.
//
// Env (set by run.sh, which starts redis-server and both nodes with --history-size):
//   BROWSER_ROLL_A_WS, BROWSER_ROLL_B_WS      the nodes' WebSocket URLs
//   BROWSER_ROLL_A_HTTP, BROWSER_ROLL_B_HTTP  their HTTP bases
//   BROWSER_ROLL_A_PID                        node A's pid (this test sends it SIGTERM)
//   IMGATE_ARTIFACTS, CHROMIUM                as for chat.test.mjs
// Never downloads a browser. All waits are bounded; there are no fixed sleeps.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { executablePath, launchChromium } from './chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const nodeA = { ws: env.BROWSER_ROLL_A_WS, http: env.BROWSER_ROLL_A_HTTP, pid: Number(env.BROWSER_ROLL_A_PID) };
const nodeB = { ws: env.BROWSER_ROLL_B_WS, http: env.BROWSER_ROLL_B_HTTP };
const artifacts = resolve(env.IMGATE_ARTIFACTS || join(here, 'artifacts'));
const WAIT = 10000; // upper bound of every single wait
const OVERALL = 60000; // upper bound of the whole test

if (!nodeA.ws || !nodeA.http || !nodeA.pid || !nodeB.ws || !nodeB.http) {
  console.error('rolling.test.mjs: set BROWSER_ROLL_A_WS/_HTTP/_PID and BROWSER_ROLL_B_WS/_HTTP (see run.sh)');
  process.exit(2);
}
const watchdog = setTimeout(() => {
  console.error(`rolling.test.mjs: not done after ${OVERALL / 1000} s, giving up`);
  process.exit(1);
}, OVERALL);
watchdog.unref();

const started = Date.now();
const suffix = String(started % 100000).padStart(5, '0');
const USER = `roll-${suffix}`;
const problems = [];
let step = 'start';

function log(text) {
  step = text;
  console.log(`- ${text}`);
}

/** Polls `probe` (async, returns a truthy value when done) every 20 ms for at most WAIT ms. */
async function eventually(what, probe) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20)); // polling interval, bounded by the deadline
  }
}

async function userList(http) {
  const res = await fetch(`${http}/user/list?appID=101`);
  const body = await res.json();
  assert.equal(body.code, 200, `/user/list: ${JSON.stringify(body)}`);
  return body.data.userList;
}

async function sendAll(http, message) {
  const body = new URLSearchParams({ appID: '101', userID: `backend-${suffix}`, msgID: `${message}-${suffix}`, message });
  const res = await fetch(`${http}/user/sendMessageAll`, { method: 'POST', body });
  const answer = await res.json();
  assert.equal(answer.code, 200, `sendMessageAll: ${JSON.stringify(answer)}`);
  assert.equal(typeof answer.data.offset, 'number', `history is on: ${JSON.stringify(answer)}`);
  return answer.data;
}

/** The page's event log (window.__roll.events), filtered by type. */
async function events(page, type) {
  return page.evaluate((t) => window.__roll.events.filter((e) => e.type === t), type);
}

async function waitEvents(page, type, count) {
  await page.waitForFunction(([t, n]) => window.__roll.events.filter((e) => e.type === t).length >= n,
    [type, count], { timeout: WAIT });
  return events(page, type);
}

async function main(browser) {
  log('both nodes see Redis');
  for (const node of [nodeA, nodeB]) {
    await eventually(`redis up on ${node.http}`, async () => {
      const state = await (await fetch(`${node.http}/system/state`)).json();
      return state.data.imgate.cluster && state.data.imgate.cluster.redis === 'up';
    });
  }

  log(`a page on node B runs ImgateClient for ${USER} with urls [A, B]`);
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // The chat page of room 102 hosts the client (its own connection stays out of room 101).
  await page.goto(`${nodeB.http}/home/index?appID=102&name=host-${suffix}`, { waitUntil: 'domcontentloaded' });
  await page.locator('#status[data-state="online"]').waitFor();
  await page.evaluate(async ({ urls, userID }) => {
    const { ImgateClient } = await import('/web/imgate-client.js');
    const client = new ImgateClient({
      urls, appID: 101, userID, heartbeatMs: 0,
      reconnect: { minMs: 1000, maxMs: 2000 }, // first retry after 0.5-1 s
    });
    const events = [];
    const note = (type, pick) => client.on(type, (d) => events.push({ type, ...pick(d), state: client.state }));
    note('open', ({ url }) => ({ url }));
    note('login', ({ recovering }) => ({ recovering }));
    note('close', ({ code, willReconnect }) => ({ code, willReconnect }));
    note('reconnecting', ({ url, delayMs }) => ({ url, delayMs }));
    note('msg', ({ msg, missed, offset }) => ({ msg, missed, offset }));
    note('recovered', ({ recovered, missed }) => ({ recovered, missed }));
    note('duplicate', ({ offset }) => ({ offset }));
    note('gap', ({ missing }) => ({ missing }));
    window.__roll = { client, events };
    client.connect();
  }, { urls: [nodeA.ws, nodeB.ws], userID: USER });
  await waitEvents(page, 'login', 1);
  assert.deepEqual((await events(page, 'open')).map((e) => e.url), [nodeA.ws], 'the first connection goes to A');

  log('B lists the user (cluster-wide), a message reaches the page live');
  await eventually(`${USER} in B's /user/list`, async () => (await userList(nodeB.http)).includes(USER));
  const before = `before-${suffix}`;
  await sendAll(nodeB.http, before);
  await page.waitForFunction((m) => window.__roll.events.some((e) => e.type === 'msg' && e.msg === m), before);

  log('B\'s /user/list is watched: the user never listed twice');
  let polls = 0;
  const twice = [];
  let watching = true;
  let watchError = null;
  const watcher = (async () => {
    while (watching) {
      const list = await userList(nodeB.http);
      polls += 1;
      if (list.filter((u) => u === USER).length > 1) twice.push(list);
      await new Promise((r) => setTimeout(r, 20)); // polling interval
    }
  })().catch((error) => {
    watchError = error;
  });

  log('node A gets SIGTERM: the page is closed with 1001 and will reconnect');
  process.kill(nodeA.pid, 'SIGTERM');
  const [closed] = await waitEvents(page, 'close', 1);
  assert.equal(closed.code, 1001, `close code: ${JSON.stringify(closed)}`);
  assert.equal(closed.willReconnect, true);

  log('a message sent while the page is away, through B');
  const during = `during-${suffix}`;
  const sentDuring = await sendAll(nodeB.http, during);
  const state = await page.evaluate(() => window.__roll.client.state);
  assert.equal(state, 'reconnecting', 'sent before the reconnect (the first retry waits at least 0.5 s)');
  const [retry] = await events(page, 'reconnecting');
  assert.equal(retry.url, nodeB.ws, 'the reconnect goes to the next URL, B');
  await assert.rejects(fetch(`${nodeA.http}/healthz`), 'node A is gone');

  log('the page is back on B, recovers the missed message (marked missed) exactly once');
  const logins = await waitEvents(page, 'login', 2);
  assert.equal(logins[1].recovering, true, 'the second login carries data.recover');
  assert.deepEqual((await events(page, 'open')).map((e) => e.url), [nodeA.ws, nodeB.ws]);
  const [recovered] = await waitEvents(page, 'recovered', 1);
  assert.deepEqual({ recovered: recovered.recovered, missed: recovered.missed }, { recovered: true, missed: 1 });

  log('a live message after the reconnect, once, not missed');
  const after = `after-${suffix}`;
  await sendAll(nodeB.http, after);
  await page.waitForFunction((m) => window.__roll.events.some((e) => e.type === 'msg' && e.msg === m), after);
  const msgs = await events(page, 'msg');
  assert.deepEqual(msgs.map(({ msg, missed, offset }) => ({ msg, missed, offset })), [
    { msg: before, missed: false, offset: sentDuring.offset - 1 },
    { msg: during, missed: true, offset: sentDuring.offset },
    { msg: after, missed: false, offset: sentDuring.offset + 1 },
  ], 'each message exactly once, in order, with consecutive offsets');
  assert.deepEqual([...await events(page, 'duplicate'), ...await events(page, 'gap')], [], 'no duplicate, no gap');

  log('B lists the user exactly once; it was never listed twice');
  await eventually(`B's /user/list to be exactly [${USER}]`, async () => {
    const list = await userList(nodeB.http);
    return list.length === 1 && list[0] === USER;
  });
  watching = false;
  await watcher;
  if (watchError) throw watchError;
  assert.ok(polls > 0, 'the list was polled');
  assert.deepEqual(twice, [], 'lists with the user twice');
  console.log(`  ${polls} polls of /user/list during the restart`);

  await page.evaluate(() => window.__roll.client.close());
  log('no console errors, no page errors');
  assert.deepEqual(problems, []);
}

let browser;
let failed = false;
try {
  log(`launch ${executablePath}`);
  browser = await launchChromium();
  await main(browser);
} catch (error) {
  failed = true;
  console.error(`\nFAILED at step "${step}":\n${error.stack || error}`);
  if (problems.length) console.error(`console/page errors:\n  ${problems.join('\n  ')}`);
} finally {
  if (failed && browser) {
    for (const context of browser.contexts()) {
      for (const p of context.pages()) {
        try {
          await mkdir(artifacts, { recursive: true });
          await p.screenshot({ path: join(artifacts, 'ROLL-failure.png'), fullPage: true, timeout: 5000 });
        } catch {
          // a screenshot is a courtesy
        }
      }
    }
  }
  if (browser) await browser.close().catch(() => {});
}
console.log(`rolling.test.mjs: ${failed ? 'FAIL' : 'PASS'} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
