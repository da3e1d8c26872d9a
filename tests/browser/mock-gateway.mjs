#!/usr/bin/env node
// A tiny stand-in for imgate, for developing and checking the chat page (web/) without the C++
// server: `./run.sh --mock`. It speaks the same wire contract, in its simplest form:
//   HTTP: GET / (302 to /home/index, query kept), GET /home/index?appID=N (web/index.html with the
//         config injected; an unknown appID gets room 101), GET /web/<file>,
//         /user/list, /user/sendMessageAll, /user/sendMessage, /user/history
//   WebSocket: /acc with login, heartbeat, ping, publish, refresh, users; pushes enter, exit, msg.
// Flags (like imgate's): --bind ADDR --http-port N --ws-port N --ready-file FILE --web-root DIR
//   --api-key KEY (repeatable: /user/* then need "Authorization: Bearer KEY" or "X-API-Key: KEY")
//   --auth-hmac-secret S | --auth-hmac-secret-file F (secure mode: login needs an HS256/384/512 JWT
//   whose sub is the userID; login answers data.exp; refresh; close 4001 at exp + leeway)
//   --auth-leeway SECONDS (default 30) --max-failed-logins N (default 5; then close 1008)
//   --history-size N (docs/history.md, simplest form: room and user streams with epochs and
//   offsets, the last N pushes of each, login positions, recover, offline messages, /user/history;
//   no TTL, no memory cap)
// Other flags (--log-level, --config, ...) are ignored.
// Zero dependencies; not a WebSocket implementation for anything else (no fragmentation, no
// extensions, small frames).

import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';

const args = process.argv.slice(2);
// A repeated flag: the last one wins, as in imgate (run.sh's start_server gives --http-port 0,
// the secure server then its own port).
const flag = (name, fallback) => {
  const i = args.lastIndexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const bind = flag('bind', '127.0.0.1');
const webRoot = resolve(flag('web-root', 'web'));
const readyFile = flag('ready-file', '');
const apiKeys = args.flatMap((a, i) => (a === '--api-key' && i + 1 < args.length ? [args[i + 1]] : []));
const authSecret = flag('auth-hmac-secret-file', '')
  ? readFileSync(flag('auth-hmac-secret-file', '')).toString('utf8').replace(/\r?\n$/, '')
  : flag('auth-hmac-secret', '');
const leewaySeconds = Number(flag('auth-leeway', '30'));
const maxFailedLogins = Number(flag('max-failed-logins', '5'));
const historySize = Number(flag('history-size', '0'));
const APP_IDS = new Set([101, 102, 103, 104]);
const MAX_USERS_LISTED = 1000; // the users command's cap (kMaxUsersListed)
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

// ---- presence ---------------------------------------------------------------------------

const connections = new Set(); // { socket, appID, userID }

function usersOf(appID) {
  const users = new Set();
  for (const c of connections) if (c.userID && c.appID === appID) users.add(c.userID);
  return [...users];
}

function pushFrame(cmd, seq, data) {
  return JSON.stringify({ seq, cmd, response: { code: 200, codeMsg: 'Ok', data } });
}

function push(appID, except, cmd, seq, data) {
  const frame = pushFrame(cmd, seq, data);
  for (const c of connections) {
    if (c.userID && c.appID === appID && c.userID !== except) sendText(c.socket, frame);
  }
}

function pushData(from, msg) {
  return { target: '', type: 'text', msg, from };
}

// ---- history (--history-size N) -----------------------------------------------------------

const epochBase = randomBytes(4).toString('hex');
let epochCount = 0;
const streams = new Map(); // "<appID>" (room) | "<appID>/<userID>" -> { epoch, top, entries }
const leftAt = new Map(); // user stream key -> its top when the user's last connection went

const streamKey = (appID, userID) => (userID ? `${appID}/${userID}` : String(appID));

function position(key) {
  const s = streams.get(key);
  return s ? { epoch: s.epoch, offset: s.top } : { epoch: '', offset: 0 };
}

/** Stores a msg push of stream `key`; returns its data with stream, epoch and offset. */
function keep(key, seq, data, except) {
  let s = streams.get(key);
  if (!s) streams.set(key, (s = { epoch: `${epochBase}-${++epochCount}`, top: 0, entries: [] }));
  const stamped = { ...data, stream: key.includes('/') ? 'user' : 'room', epoch: s.epoch, offset: ++s.top };
  s.entries.push({ offset: s.top, seq, data: stamped, except });
  if (s.entries.length > historySize) s.entries.shift();
  return stamped;
}

/** The kept pushes of `key` after `since` ({epoch, offset}), and whether that is all of them. */
function readStream(key, since, userID) {
  const s = streams.get(key);
  const fromNothing = since.epoch === '' && since.offset === 0;
  if (!s) return { entries: [], complete: fromNothing };
  if (!fromNothing && since.epoch !== s.epoch) return { entries: [], complete: false };
  const after = fromNothing ? 0 : since.offset;
  const first = s.entries.length ? s.entries[0].offset : s.top + 1;
  const entries = s.entries.filter((e) => e.offset > after && (!userID || e.except !== userID));
  return { entries, complete: first <= after + 1 };
}

/** Login with history on: the reply's data, and the pushes to send right after it. */
function catchUp(conn, recover, first) {
  const roomKey = streamKey(conn.appID);
  const userKey = streamKey(conn.appID, conn.userID);
  const data = {};
  const pushes = [];
  let complete = true;
  const positionOf = (p) => ({ epoch: typeof p.epoch === 'string' ? p.epoch : '', offset: Number(p.offset) || 0 });
  if (recover && recover.room) {
    const read = readStream(roomKey, positionOf(recover.room), conn.userID);
    pushes.push(...read.entries);
    complete &&= read.complete;
  }
  if (recover && recover.user) {
    const read = readStream(userKey, positionOf(recover.user), '');
    pushes.push(...read.entries);
    complete &&= read.complete;
  } else if (!recover && first) {
    const s = streams.get(userKey);
    const since = s && leftAt.has(userKey) ? { epoch: s.epoch, offset: leftAt.get(userKey) } : { epoch: '', offset: 0 };
    const read = readStream(userKey, since, '');
    pushes.push(...read.entries);
    if (read.entries.length) data.offline = read.entries.length;
  }
  if (recover) data.recovered = complete;
  data.room = position(roomKey);
  data.user = position(userKey);
  return { data, pushes: pushes.map((e) => pushFrame('msg', e.seq, e.data)) };
}

// Message ids already sent (HTTP and publish), so a duplicate is answered without pushing.
const seenMsgIDs = new Set();

/**
 * Pushes a `msg` unless msgID was seen; returns the answer's data: {sendResults: true} (with the
 * push's epoch and offset when history is on), {} for a duplicate.
 */
function sendToRoom(appID, from, msgID, message) {
  if (seenMsgIDs.has(msgID)) return {};
  seenMsgIDs.add(msgID);
  if (seenMsgIDs.size > 10000) seenMsgIDs.delete(seenMsgIDs.values().next().value);
  let data = pushData(from, message);
  if (historySize > 0) data = keep(streamKey(appID), msgID, data, from);
  push(appID, from, 'msg', msgID, data);
  return historySize > 0 ? { sendResults: true, epoch: data.epoch, offset: data.offset } : { sendResults: true };
}

/** POST /user/sendMessage: a `msg` to every connection of (appID, userID), kept when history is on. */
function sendToUser(appID, userID, msgID, message) {
  let data = pushData(userID, message);
  if (historySize > 0) data = keep(streamKey(appID, userID), msgID, data, '');
  const frame = pushFrame('msg', msgID, data);
  let sent = false;
  for (const c of connections) {
    if (c.appID === appID && c.userID === userID) {
      sendText(c.socket, frame);
      sent = true;
    }
  }
  if (historySize === 0) return { sendResults: sent };
  return { sendResults: sent, ...(sent ? {} : { stored: true }), epoch: data.epoch, offset: data.offset };
}

// ---- tokens (secure mode) -----------------------------------------------------------------

const HMAC_ALGS = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };

function base64urlJson(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/** Checks a login/refresh token; returns { claims } or { error: '<reason>' } (like the server's). */
function verifyToken(token, userID, appID) {
  if (typeof token !== 'string' || token === '') return { error: 'token required' };
  const parts = token.split('.');
  if (parts.length !== 3) return { error: 'malformed token' };
  let header;
  let claims;
  try {
    header = base64urlJson(parts[0]);
    claims = base64urlJson(parts[1]);
  } catch {
    return { error: 'malformed token' };
  }
  const digest = header && HMAC_ALGS[header.alg];
  if (!digest) return { error: `unsupported alg ${header && header.alg}` };
  const expected = createHmac(digest, authSecret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { error: 'bad signature' };
  const now = Date.now() / 1000;
  if (typeof claims.sub !== 'string' || typeof claims.exp !== 'number') return { error: 'sub and exp required' };
  if (now > claims.exp + leewaySeconds) return { error: 'token expired' };
  if (typeof claims.nbf === 'number' && now + leewaySeconds < claims.nbf) return { error: 'token not yet valid' };
  if (claims.sub !== userID) return { error: 'sub does not match userID' };
  if (Array.isArray(claims.appIDs) && !claims.appIDs.includes(appID)) return { error: 'appID not granted by the token' };
  return { claims };
}

/** Closes the connection with code 4001 at exp + leeway (re-armed by refresh). */
function armExpiry(conn, exp) {
  clearTimeout(conn.expiryTimer);
  const delay = Math.max(0, (exp + leewaySeconds) * 1000 - Date.now());
  conn.expiryTimer = setTimeout(() => closeWith(conn, 4001, 'token expired'), delay);
}

/** Counts a refused login/refresh; the last allowed one closes with 1008. */
function failedLogin(conn) {
  conn.failedLogins += 1;
  if (conn.failedLogins >= maxFailedLogins) setImmediate(() => closeWith(conn, 1008, 'too many failed logins'));
}

// ---- WebSocket --------------------------------------------------------------------------

function sendFrame(socket, opcode, payload) {
  if (socket.destroyed) return;
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  socket.write(Buffer.concat([header, payload]));
}

function sendText(socket, text) {
  sendFrame(socket, 1, Buffer.from(text, 'utf8'));
}

function closeWith(conn, code, reason) {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  sendFrame(conn.socket, 8, payload);
  conn.socket.end();
  dropConnection(conn);
}

const MESSAGES = {
  200: 'Success', 1000: '用户未登录', 1001: '参数不合法', 1002: '非法的用户ID', 1003: '未授权', 1009: '操作失败',
  1010: '路由不存在',
};

function handleRequest(conn, text) {
  let req;
  try {
    req = JSON.parse(text);
  } catch {
    req = null;
  }
  const reply = (code, data = null) =>
    sendText(conn.socket, JSON.stringify({
      seq: req && typeof req.seq === 'string' ? req.seq : '',
      cmd: req && typeof req.cmd === 'string' ? req.cmd : '',
      response: { code, codeMsg: MESSAGES[code], data },
    }));
  if (!req || typeof req !== 'object' || typeof req.seq !== 'string' || typeof req.cmd !== 'string') {
    reply(1001);
    return;
  }
  const data = req.data;
  switch (req.cmd) {
    case 'login': {
      if (conn.userID) return reply(1009);
      const userID = data && typeof data.userID === 'string' ? data.userID : '';
      if (!userID || Buffer.byteLength(userID) >= 20) return reply(1002);
      if (!APP_IDS.has(data.appID)) {
        if (!authSecret) return reply(1003); // data null, as upstream
        failedLogin(conn);
        return reply(1003, { error: 'appID is not configured' });
      }
      let exp = null;
      if (authSecret) {
        const checked = verifyToken(data.serviceToken, userID, data.appID);
        if (checked.error) {
          failedLogin(conn);
          return reply(1003, { error: checked.error });
        }
        exp = checked.claims.exp;
        armExpiry(conn, exp);
      }
      const first = !usersOf(data.appID).includes(userID);
      conn.userID = userID;
      conn.appID = data.appID;
      if (historySize > 0) {
        const recover = data.recover && typeof data.recover === 'object' ? data.recover : null;
        const { data: positions, pushes } = catchUp(conn, recover, first);
        reply(200, exp === null ? positions : { exp, ...positions });
        for (const frame of pushes) sendText(conn.socket, frame);
      } else {
        reply(200, exp === null ? null : { exp });
      }
      if (first) push(conn.appID, userID, 'enter', String(randomInt(1e9)), pushData(userID, '哈喽~'));
      return undefined;
    }
    case 'refresh': {
      if (!authSecret) return reply(1010);
      if (!conn.userID) return reply(1000);
      const checked = verifyToken(data && data.serviceToken, conn.userID, conn.appID);
      if (checked.error) {
        failedLogin(conn);
        return reply(1003, { error: checked.error });
      }
      armExpiry(conn, checked.claims.exp);
      return reply(200, { exp: checked.claims.exp });
    }
    case 'publish': {
      if (!conn.userID) return reply(1000);
      const message = data && data.message;
      if (typeof message !== 'string' || message === '') return reply(1001);
      const msgID = data.msgID ? String(data.msgID) : `${Date.now()}-${randomInt(100000, 1000000)}`;
      return reply(200, sendToRoom(conn.appID, conn.userID, msgID, message));
    }
    case 'users': {
      if (data !== undefined && data !== null && (typeof data !== 'object' || Array.isArray(data))) return reply(1001);
      const app = data ? data.appID : undefined;
      if (app !== undefined && app !== null && !(Number.isInteger(app) && app >= 0)) return reply(1001);
      if (!conn.userID) return reply(1000);
      if (app !== undefined && app !== null && app !== 0 && app !== conn.appID) {
        return reply(1003, { error: "only the connection's own room" });
      }
      const users = usersOf(conn.appID).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))); // byte order
      const listed = users.slice(0, MAX_USERS_LISTED);
      return reply(200, { userCount: users.length, userList: listed, ...(listed.length < users.length ? { truncated: true } : {}) });
    }
    case 'heartbeat':
      return reply(conn.userID ? 200 : 1000);
    case 'ping':
      return reply(200, 'pong');
    default:
      return reply(1010);
  }
}

function dropConnection(conn) {
  if (!connections.delete(conn)) return;
  clearTimeout(conn.expiryTimer);
  if (conn.userID && !usersOf(conn.appID).includes(conn.userID)) {
    if (historySize > 0) leftAt.set(streamKey(conn.appID, conn.userID), position(streamKey(conn.appID, conn.userID)).offset);
    push(conn.appID, conn.userID, 'exit', String(randomInt(1e9)), pushData(conn.userID, '用户已经离开~'));
  }
}

function onUpgrade(req, socket) {
  const key = req.headers['sec-websocket-key'];
  if (new URL(req.url, 'http://x').pathname !== '/acc' || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(key + GUID).digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  socket.setNoDelay(true);
  const conn = { socket, appID: 0, userID: '', failedLogins: 0, expiryTimer: null };
  connections.add(conn);
  let buffer = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      const opcode = buffer[0] & 0x0f;
      const masked = (buffer[1] & 0x80) !== 0;
      let len = buffer[1] & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (buffer.length < 4) return;
        len = buffer.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (buffer.length < 10) return;
        len = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      const maskOffset = offset;
      if (masked) offset += 4;
      if (buffer.length < offset + len) return;
      const payload = Buffer.from(buffer.subarray(offset, offset + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buffer[maskOffset + (i % 4)];
      buffer = buffer.subarray(offset + len);
      if (opcode === 1) handleRequest(conn, payload.toString('utf8'));
      else if (opcode === 9) sendFrame(socket, 10, payload);
      else if (opcode === 8) {
        sendFrame(socket, 8, payload.subarray(0, 2));
        socket.end();
        dropConnection(conn);
        return;
      }
    }
  });
  socket.on('close', () => dropConnection(conn));
  socket.on('error', () => dropConnection(conn));
}

// ---- HTTP -------------------------------------------------------------------------------

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

const jsonString = (s) =>
  JSON.stringify(String(s)).slice(1, -1).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');

let wsPort = 0;

function send(res, status, type, body, extra = {}) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

function sendJson(res, code, msg, data) {
  send(res, 200, 'application/json; charset=utf-8', JSON.stringify({ code, msg, data }), {
    'Access-Control-Allow-Origin': '*',
  });
}

async function readParams(req, url) {
  const params = new URLSearchParams(url.search);
  if (req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    for (const [k, v] of new URLSearchParams(body)) params.set(k, v);
  }
  return params;
}

/** With --api-key: the request's Bearer / X-API-Key is one of the keys. */
function hasApiKey(req) {
  if (apiKeys.length === 0) return true;
  const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization || '');
  const key = bearer ? bearer[1] : req.headers['x-api-key'] || '';
  return apiKeys.includes(key);
}

async function onHttp(req, res) {
  const url = new URL(req.url, 'http://x');
  const path = url.pathname;
  if (path.startsWith('/user/') && !hasApiKey(req)) {
    const body = JSON.stringify({ code: 1003, msg: '未授权', data: { error: 'API key required' } });
    return send(res, 401, 'application/json; charset=utf-8', body, {
      'WWW-Authenticate': 'Bearer',
      Connection: 'close',
    });
  }
  try {
    if (path === '/' && req.method === 'GET') {
      res.writeHead(302, { Location: `/home/index${url.search}`, 'Content-Type': 'text/plain; charset=utf-8' });
      return res.end('see /home/index\n');
    }
    if (path === '/home/index') {
      let appID = Number(url.searchParams.get('appID'));
      if (!APP_IDS.has(appID)) appID = 101;
      const html = (await readFile(join(webRoot, 'index.html'), 'utf8'))
        .replace('{{WS_URL}}', jsonString(`:${wsPort}/acc`))
        .replace('{{APP_ID}}', jsonString(appID))
        .replace('{{HTTP_BASE}}', '');
      return send(res, 200, 'text/html; charset=utf-8', html);
    }
    if (path.startsWith('/web/')) {
      const file = normalize(join(webRoot, decodeURIComponent(path.slice(5))));
      if (!file.startsWith(webRoot + sep) || !TYPES[extname(file)]) throw Object.assign(new Error(), { code: 'ENOENT' });
      return send(res, 200, TYPES[extname(file)], await readFile(file));
    }
    if (path === '/user/list') {
      const params = await readParams(req, url);
      const users = usersOf(Number(params.get('appID')));
      return sendJson(res, 200, 'Success', { userCount: users.length, userList: users });
    }
    if (path === '/user/sendMessageAll') {
      const params = await readParams(req, url);
      const appID = Number(params.get('appID'));
      const userID = params.get('userID') || '';
      const msgID = params.get('msgID') || '';
      const message = params.get('message') || '';
      if (!userID || !msgID) return sendJson(res, 1001, '参数不合法', {});
      return sendJson(res, 200, 'Success', sendToRoom(appID, userID, msgID, message));
    }
    if (path === '/user/sendMessage') {
      const params = await readParams(req, url);
      const userID = params.get('userID') || '';
      const msgID = params.get('msgID') || '';
      if (!userID || !msgID) return sendJson(res, 1001, '参数不合法', {});
      return sendJson(res, 200, 'Success', sendToUser(Number(params.get('appID')), userID, msgID, params.get('message') || ''));
    }
    if (path === '/user/history') {
      if (historySize === 0) return sendJson(res, 1009, '操作失败', { error: 'history is off (--history-size 0)' });
      const params = await readParams(req, url);
      for (const name of ['since', 'limit']) {
        const v = params.get(name);
        if (v !== null && !/^\d+$/.test(v)) return sendJson(res, 1001, '参数不合法', { error: `${name} must be an integer` });
      }
      const key = streamKey(Number(params.get('appID')), params.get('userID') || '');
      const s = streams.get(key);
      const epoch = params.get('epoch') || (s ? s.epoch : '');
      const since = Number(params.get('since') || 0);
      const all = since === 0 && !params.get('epoch'); // all that is kept: complete by definition
      const read = readStream(key, all ? { epoch: '', offset: 0 } : { epoch, offset: since }, '');
      if (all) read.complete = true;
      const limit = Math.min(Number(params.get('limit') || 100), 1000);
      const messages = read.entries.slice(0, limit).map((e) => ({
        offset: e.offset, seq: e.seq, msg: e.data.msg, from: e.data.from, type: e.data.type,
      }));
      return sendJson(res, 200, 'Success', { ...position(key), complete: read.complete, messages });
    }
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
  }
  return send(res, 404, 'text/plain; charset=utf-8', '404 page not found');
}

// ---- start --------------------------------------------------------------------------------

function listen(server, port) {
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, bind, () => ok(server.address().port));
  });
}

const wsServer = createServer((req, res) => send(res, 400, 'text/plain', 'Bad Request'));
wsServer.on('upgrade', onUpgrade);
const httpServer = createServer((req, res) => {
  onHttp(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) send(res, 500, 'text/plain', 'error');
  });
});
wsPort = await listen(wsServer, Number(flag('ws-port', '8089')));
const httpPort = await listen(httpServer, Number(flag('http-port', '8080')));
const mode = `${authSecret ? 'tokens (HS256/384/512)' : 'no tokens'}, ${apiKeys.length ? 'API key' : 'no API key'}` +
  `, ${historySize > 0 ? `history ${historySize}` : 'no history'}`;
console.log(`mock gateway: websocket ${bind}:${wsPort}/acc, http ${bind}:${httpPort}, web root ${webRoot}, ${mode}`);
if (readyFile) {
  await writeFile(`${readyFile}.tmp`, `${JSON.stringify({ ws: wsPort, http: httpPort, pid: process.pid })}\n`);
  await rename(`${readyFile}.tmp`, readyFile);
}
const stop = () => {
  for (const c of connections) c.socket.destroy();
  wsServer.close();
  httpServer.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
