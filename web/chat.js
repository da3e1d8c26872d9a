// imgate chat page (served as /web/chat.js, loaded by /home/index).
//
// What it does, like gowebsocket's page: picks a display name, logs in to the room over WebSocket,
// sends a heartbeat every 30 s, keeps the online list (the WebSocket `users` command, which needs
// no API key, then enter/exit pushes),
// shows messages, and sends through POST /user/sendMessageAll.
// Beyond it: no external resources, user text only ever set with textContent, automatic reconnect
// with back-off and re-login (shown in #status), a layout that works on a phone.
//
// Secure mode, when the page has a login token (JWT) — `token=<jwt>` in the query or in the
// fragment (`#token=`, where the token field puts it: a fragment is never sent to a server): the
// userID is the token's `sub` (read without checking the signature; the gateway checks it), login
// sends the token, and messages go out with the WebSocket `publish` command instead of
// POST /user/sendMessageAll (which may need an API key the page does not have).
//
// History (a gateway started with --history-size): the client recovers what was sent while the
// connection was down (and a first login gets the user's offline messages); the page marks those
// messages "sent while you were disconnected" and says so when the recovery was incomplete. The
// answers of its own sends name their place in the room stream, handed to the client so that its
// own messages (never pushed back to it) do not count as gaps.
//
// Query parameters: appID (room, used when the server did not inject one; when the server put the
// page in another room, because this one is not configured, the page says so and corrects the URL),
// name (display name), token (login token; the fragment's wins).

import { ImgateClient, makeSeq } from './imgate-client.js';

const MAX_USER_ID_BYTES = 19; // the server refuses userIDs of 20 bytes or more
const MAX_MESSAGES = 500; // older lines are dropped from the page
const DEFAULT_WS_PORT = 8089;

// A mix of Chinese and Latin names: scientists, engineers and writers.
const NAMES = [
  '祖冲之', '沈括', '郭守敬', '徐光启', '李时珍', '宋应星', '詹天佑', '华罗庚', '钱学森', '茅以升',
  '竺可桢', '吴健雄', '屠呦呦', '袁隆平', '陈景润', '林徽因', '冰心', '鲁迅', '老舍', '萧红',
  'Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Katherine', 'Radia',
  'Niklaus', 'Leslie', 'Frances', 'Hedy', 'Dennis', 'Ken', 'Sophie', 'Emmy', 'Marie', 'Rosalind',
  'Tim', 'Vint', 'Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton',
];

const $ = (selector) => document.querySelector(selector);

// ---- configuration ------------------------------------------------------------------------

function readConfig() {
  let raw = {};
  try {
    raw = JSON.parse($('#imgate-config')?.textContent || '{}');
  } catch {
    raw = {};
  }
  // A placeholder the server did not replace counts as empty.
  const value = (v) => {
    const s = v == null ? '' : String(v).trim();
    return s.startsWith('{{') ? '' : s;
  };
  const params = new URLSearchParams(location.search);
  let appID = Number(value(raw.appID));
  if (!Number.isInteger(appID) || appID <= 0) appID = Number(params.get('appID'));
  if (!Number.isInteger(appID) || appID <= 0) appID = 101;
  return {
    appID,
    askedAppID: params.get('appID'), // the room in the URL, which the server may have refused
    wsUrl: resolveWsUrl(value(raw.wsUrl), location),
    httpBase: resolveHttpBase(value(raw.httpBase), location),
    name: params.get('name'),
    token: (new URLSearchParams(location.hash.slice(1)).get('token') || params.get('token') || '').trim(),
  };
}

/** Accepts "ws(s)://…", "http(s)://…", upstream's "host:port[/path]", ":port[/path]" or "". */
function resolveWsUrl(raw, loc) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  let v = raw;
  if (!v) return `${scheme}//${loc.hostname}:${DEFAULT_WS_PORT}/acc`;
  if (/^wss?:\/\//i.test(v)) return v;
  let url;
  if (/^https?:\/\//i.test(v)) {
    url = new URL(v);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  } else {
    if (v.startsWith(':')) v = loc.hostname + v;
    else if (v.startsWith('/')) v = loc.host + v;
    url = new URL(`${scheme}//${v}`);
  }
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/acc';
  return url.href;
}

/** "" = same origin; accepts "http(s)://host:port" or upstream's "host:port". */
function resolveHttpBase(raw, loc) {
  if (!raw) return '';
  const base = /^https?:\/\//i.test(raw) ? raw : `${loc.protocol}//${raw}`;
  return base.replace(/\/+$/, '');
}

/** Cuts a name to at most `max` bytes of UTF-8 without splitting a character. */
function truncateUtf8(text, max) {
  const encoder = new TextEncoder();
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = encoder.encode(ch).length;
    if (bytes + n > max) break;
    out += ch;
    bytes += n;
  }
  return out;
}

function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/** The claims of a JWT: its middle part, base64url JSON. The signature is the gateway's business. */
function decodeJwtClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('a JWT has three parts separated by dots');
  const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
  let claims;
  try {
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
  } catch {
    throw new Error('its payload is not base64url-encoded JSON');
  }
  if (!claims || typeof claims !== 'object') throw new Error('its payload is not a JSON object');
  return claims;
}

/**
 * Who this page logs in as: { userID, token, tokenError }. With a token, its `sub`; tokenError
 * says why a token cannot be used (the page then does not connect).
 */
function readIdentity({ name, token }) {
  if (!token) return { userID: pickName(name), token: '', tokenError: '' };
  try {
    const { sub } = decodeJwtClaims(token);
    if (typeof sub !== 'string' || sub === '') throw new Error('it has no "sub" (user) claim');
    if (utf8Length(sub) > MAX_USER_ID_BYTES) throw new Error(`its "sub" is over ${MAX_USER_ID_BYTES} bytes`);
    return { userID: sub, token, tokenError: '' };
  } catch (error) {
    return { userID: '', token, tokenError: `This token cannot be used: ${error.message}.` };
  }
}

function pickName(requested) {
  const name = truncateUtf8((requested || '').trim(), MAX_USER_ID_BYTES);
  if (name) return name;
  const random = new Uint32Array(1);
  crypto.getRandomValues(random);
  return NAMES[random[0] % NAMES.length];
}

// ---- page state -----------------------------------------------------------------------------

const config = readConfig();
const identity = readIdentity(config);
const me = identity.userID;
const secure = identity.token !== '';
const client = new ImgateClient({
  url: config.wsUrl,
  appID: config.appID,
  userID: me,
  serviceToken: identity.token,
  httpBase: config.httpBase,
});

const els = {
  name: $('#name'),
  token: $('#token'),
  nameForm: $('#name-form'),
  status: $('#status'),
  roomLabel: $('#room-label'),
  online: $('#online-list'),
  onlineCount: $('#online-count'),
  messages: $('#messages'),
  sendForm: $('#send-form'),
  message: $('#message'),
  send: $('#send'),
};

// Users seen in enter/exit pushes while a `users` request is in flight, so that the list
// (computed by the server at some instant during the request) cannot undo them.
let listTracking = null; // { entered: Set, gone: Set } or null
let listGeneration = 0;
let wasOnline = false;
let sending = false;

// ---- rendering (textContent only) -------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}

function clock() {
  const d = new Date();
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

function appendLine(li) {
  const list = els.messages;
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  list.append(li);
  while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
  if (nearBottom || li.dataset.kind === 'mine') list.scrollTop = list.scrollHeight;
}

/**
 * kind: 'msg' (from someone), 'mine' (sent by this page). `missed`: sent while this page was not
 * connected (recovered after a reconnect, or stored for you while you were offline).
 */
function addMessage(kind, from, text, { missed = false } = {}) {
  const li = el('li', kind === 'mine' ? 'msg mine' : 'msg');
  li.dataset.kind = kind;
  li.dataset.from = from;
  if (from === me) li.classList.add('self');
  const head = el('span', 'meta');
  head.append(el('span', 'from', from), el('time', null, clock()));
  if (missed) {
    li.classList.add('missed');
    li.dataset.missed = 'true';
    head.append(el('span', 'missed-label', 'sent while you were disconnected'));
  }
  li.append(head, el('span', 'text', text));
  appendLine(li);
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** kind: 'enter' | 'exit' | 'system' | 'warning' | 'error'; `who` is set as data-from when given. */
function addNotice(kind, text, who) {
  const li = el('li', kind === 'error' || kind === 'warning' ? `system ${kind}` : 'system', text);
  li.dataset.kind = kind;
  if (who != null) li.dataset.from = who;
  li.append(el('time', null, clock()));
  appendLine(li);
  return li;
}

function setStatus(state, text) {
  els.status.dataset.state = state;
  els.status.textContent = text;
  els.send.disabled = state !== 'online' || sending;
}

function onlineItems() {
  return [...els.online.children];
}

function findUser(userID) {
  return onlineItems().find((li) => li.dataset.user === userID);
}

function updateOnlineCount() {
  els.onlineCount.textContent = String(els.online.children.length);
}

function addUser(userID) {
  if (typeof userID !== 'string' || userID === '' || findUser(userID)) return;
  const li = el('li');
  li.dataset.user = userID;
  li.append(el('span', 'name', userID));
  if (userID === me) {
    li.classList.add('self');
    li.append(el('span', 'tag', ' (you)'));
  }
  // Keep yourself first, the others sorted by name.
  const before = onlineItems().find(
    (other) => other.dataset.user !== me && (userID === me || other.dataset.user.localeCompare(userID) > 0),
  );
  els.online.insertBefore(li, before || null);
  updateOnlineCount();
}

function removeUser(userID) {
  const li = findUser(userID);
  if (li) li.remove();
  updateOnlineCount();
}

// ---- HTTP API ---------------------------------------------------------------------------

async function apiCall(path, params, method) {
  const query = new URLSearchParams(params);
  const url = `${config.httpBase}${path}`;
  const res =
    method === 'POST'
      ? await fetch(url, { method: 'POST', body: query }) // application/x-www-form-urlencoded
      : await fetch(`${url}?${query}`);
  if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status}`), { status: res.status });
  const body = await res.json();
  if (!body || body.code !== 200) {
    throw new Error(`${body ? body.code : '?'} ${body ? body.msg : 'no body'}`);
  }
  return body.data;
}

async function refreshOnlineList() {
  const generation = ++listGeneration;
  const tracking = { entered: new Set(), gone: new Set() };
  listTracking = tracking;
  try {
    const { response } = await client.users();
    if (generation !== listGeneration) return; // a newer refresh is under way
    if (response.code !== 200) throw new Error(`${response.code} ${response.codeMsg}`);
    const data = response.data;
    const users = new Set(Array.isArray(data && data.userList) ? data.userList : []);
    for (const u of tracking.gone) users.delete(u);
    for (const u of tracking.entered) users.add(u);
    users.add(me);
    for (const li of onlineItems()) {
      if (!users.has(li.dataset.user)) li.remove();
    }
    for (const u of users) addUser(u);
    updateOnlineCount();
    if (data.truncated) {
      addNotice('system', `${data.userCount} users are online: the list shows ${data.userList.length} of them and who joins from now on.`);
    }
  } catch (error) {
    if (generation !== listGeneration) return;
    addUser(me);
    addNotice('error', `Could not load the online list: ${error.message}`);
  } finally {
    if (generation === listGeneration) listTracking = null;
  }
}

/** Sends over the WebSocket (`publish`); resolves with the response's data, throws unless 200. */
async function publish(text) {
  const { response } = await client.publish(text, makeSeq());
  if (!response || response.code !== 200) {
    throw new Error(`${response ? response.code : '?'} ${response ? response.codeMsg : 'no response'}`);
  }
  return response.data;
}

async function sendMessage(text) {
  sending = true;
  els.send.disabled = true;
  try {
    const data = secure
      ? await publish(text)
      : await apiCall(
        '/user/sendMessageAll',
        { appID: config.appID, userID: me, msgID: makeSeq(), message: text },
        'POST',
      );
    if (data && data.sendResults === false) throw new Error(data.sendResultsErr || 'not delivered');
    // History on: the answer has the push's {epoch, offset}, a room offset this page never gets
    // pushed (publish answers are noted by the client itself).
    if (!secure && data && data.epoch) client.notePosition('room', data);
    addMessage('mine', me, text);
    if (els.message.value === text) els.message.value = '';
  } catch (error) {
    addNotice('error', `Message not sent: ${error.message}`);
  } finally {
    sending = false;
    els.send.disabled = client.state !== 'online';
    els.message.focus();
  }
}

// ---- wiring -------------------------------------------------------------------------------

/**
 * Reloads the page with another token (in the fragment, never sent to a server), or without one
 * (back to the default mode, under the name in the name field).
 */
function rejoinWithToken(token) {
  const url = new URL(location.href);
  url.searchParams.delete('token');
  url.searchParams.set('appID', String(config.appID));
  url.hash = token ? `token=${encodeURIComponent(token)}` : '';
  const name = truncateUtf8(els.name.value.trim(), MAX_USER_ID_BYTES);
  if (!token && name) url.searchParams.set('name', name);
  // A change of the fragment alone does not load the page again: replace the URL, then reload.
  history.replaceState(null, '', url.href);
  location.reload();
}

function describeExp(exp) {
  if (typeof exp !== 'number') return '';
  const d = new Date(exp * 1000);
  return ` (valid until ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')})`;
}

function init() {
  document.title = `imgate chat — room ${config.appID}`;
  els.roomLabel.textContent = `room ${config.appID}`;
  els.name.value = me;
  els.token.value = identity.token;
  if (secure) {
    // The name is the token's: another name needs another token.
    els.name.readOnly = true;
    els.name.title = 'Your userID, from the token (sub); paste another token to change it';
  }
  for (const a of document.querySelectorAll('.rooms a[data-app-id]')) {
    if (Number(a.dataset.appId) === config.appID) a.setAttribute('aria-current', 'page');
  }
  if (config.askedAppID !== null && config.askedAppID !== String(config.appID)) {
    // The server serves its first room for an appID it does not have: say so, and make the URL
    // name the room the page is in.
    addNotice('warning', `Room ${config.askedAppID} is not configured on this gateway: you are in room ${config.appID}.`);
    const url = new URL(location.href);
    url.searchParams.set('appID', String(config.appID));
    history.replaceState(null, '', url.href);
  }

  els.nameForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = els.token.value.trim();
    if (token !== identity.token) {
      rejoinWithToken(token);
      return;
    }
    if (secure) return;
    const wanted = truncateUtf8(els.name.value.trim(), MAX_USER_ID_BYTES);
    if (!wanted || wanted === me) return;
    const url = new URL(location.href);
    url.searchParams.set('appID', String(config.appID));
    url.searchParams.set('name', wanted);
    location.assign(url.href);
  });

  els.sendForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = els.message.value;
    if (text.trim() === '' || sending || client.state !== 'online') return;
    sendMessage(text);
  });

  client.on('state', ({ state }) => {
    if (state === 'connecting') setStatus('connecting', 'Connecting…');
    else if (state === 'open') setStatus('connecting', 'Logging in…');
    else if (state === 'closed' && els.status.dataset.state !== 'error') setStatus('offline', 'Offline');
  });

  client.on('login', ({ exp, offline }) => {
    setStatus('online', `Online as ${me}`);
    const how = secure ? ` with a token${describeExp(exp)}` : '';
    addNotice('system', wasOnline ? 'Reconnected.' : `Logged in as ${me}${how}.`);
    // The messages themselves follow (history on), marked as missed.
    if (offline > 0) addNotice('system', `${plural(offline, 'message was', 'messages were')} sent to you while you were away:`);
    wasOnline = true;
    refreshOnlineList();
  });

  // After a reconnect (history on): what came back, and whether that was everything.
  client.on('recovered', ({ recovered, missed }) => {
    if (recovered && missed > 0) {
      addNotice('system', `${plural(missed, 'message', 'messages')} sent while you were disconnected, shown above.`);
    }
  });
  client.on('recoveryIncomplete', ({ reason, missed }) => {
    const why = reason === 'epoch'
      ? 'the server lost its history of that time (restarted, or forgot the room)'
      : 'the oldest of them were no longer kept';
    const got = missed > 0 ? ` (${plural(missed, 'message', 'messages')} recovered)` : '';
    const li = addNotice('warning', `Some messages sent while you were disconnected may be missing: ${why}${got}.`);
    li.dataset.notice = 'recovery-incomplete';
  });

  // The page has one token and cannot fetch another: the reconnect that follows is refused.
  client.on('tokenExpired', () => addNotice('error', 'The token expired: paste a new one to continue.'));

  client.on('reconnecting', ({ attempt, delayMs }) => {
    setStatus('reconnecting', `Reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt})…`);
  });

  client.on('close', ({ willReconnect }) => {
    if (els.status.dataset.state === 'online') {
      addNotice('system', willReconnect ? 'Connection lost; reconnecting…' : 'Disconnected.');
    }
    if (!willReconnect && els.status.dataset.state !== 'error') setStatus('offline', 'Offline');
  });

  client.on('error', ({ error, code, codeMsg }) => {
    if (typeof code === 'number') {
      // The server refused login or heartbeat; with a token, data.error says why.
      const reason = error && error.reason ? ` (${error.reason})` : '';
      const text = `Refused by the server: ${code} ${codeMsg || ''}`.trim() + reason;
      addNotice('error', text);
      if (client.state !== 'online') setStatus('error', text);
      if (code === 1003 && client.state !== 'online') {
        addNotice('error', secure ? 'Check the token, or paste another one.' : 'This gateway may need a login token.');
      }
    } else if (error && error.code === 'bad-frame') {
      addNotice('error', 'The server sent something that is not JSON.');
    }
  });

  client.on('msg', ({ from, msg, missed }) => addMessage('msg', String(from ?? ''), String(msg ?? ''), { missed }));

  client.on('enter', ({ from }) => {
    const who = String(from ?? '');
    if (listTracking) {
      listTracking.entered.add(who);
      listTracking.gone.delete(who);
    }
    addUser(who);
    addNotice('enter', `${who} joined — 欢迎加入~`, who);
  });

  client.on('exit', ({ from }) => {
    const who = String(from ?? '');
    if (listTracking) {
      listTracking.gone.add(who);
      listTracking.entered.delete(who);
    }
    removeUser(who);
    addNotice('exit', `${who} left — 悄悄的离开了~`, who);
  });

  // Come back at once when the network returns instead of waiting for the back-off.
  window.addEventListener('online', () => {
    if (client.state === 'reconnecting') client.connect();
  });
  // Leave cleanly when the page goes away; rejoin if it comes back from the back/forward cache.
  window.addEventListener('pagehide', () => client.close(1000, 'page closed'));
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && !identity.tokenError) client.connect();
  });

  if (identity.tokenError) {
    setStatus('error', identity.tokenError);
    addNotice('error', `${identity.tokenError} Paste another token, or clear the field to chat without one.`);
    return;
  }
  setStatus('connecting', 'Connecting…');
  client.connect();
}

init();
