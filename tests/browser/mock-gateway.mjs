#!/usr/bin/env node
// A tiny stand-in for imgate, for developing and checking the chat page (web/) without the C++
// server: `./run.sh --mock`. It speaks the same wire contract, in its simplest form:
//   HTTP: GET /home/index?appID=N (web/index.html with the config injected), GET /web/<file>,
//         /user/list, /user/sendMessageAll
//   WebSocket: /acc with login, heartbeat, ping, publish, refresh; pushes enter, exit, msg.
// Flags (like imgate's): --bind ADDR --http-port N --ws-port N --ready-file FILE --web-root DIR
//   --api-key KEY (repeatable: /user/* then need "Authorization: Bearer KEY" or "X-API-Key: KEY")
//   --auth-hmac-secret S | --auth-hmac-secret-file F (secure mode: login needs an HS256/384/512 JWT
//   whose sub is the userID; login answers data.exp; refresh; close 4001 at exp + leeway)
//   --auth-leeway SECONDS (default 30) --max-failed-logins N (default 5; then close 1008)
// Other flags (--log-level, --config, ...) are ignored.
// Zero dependencies; not a WebSocket implementation for anything else (no fragmentation, no
// extensions, small frames).

import { createHash, createHmac, randomInt, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
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
const APP_IDS = new Set([101, 102, 103, 104]);
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

// ---- presence ---------------------------------------------------------------------------

const connections = new Set(); // { socket, appID, userID }

function usersOf(appID) {
  const users = new Set();
  for (const c of connections) if (c.userID && c.appID === appID) users.add(c.userID);
  return [...users];
}

function push(appID, except, cmd, seq, data) {
  const frame = JSON.stringify({ seq, cmd, response: { code: 200, codeMsg: 'Ok', data } });
  for (const c of connections) {
    if (c.userID && c.appID === appID && c.userID !== except) sendText(c.socket, frame);
  }
}

function pushData(from, msg) {
  return { target: '', type: 'text', msg, from };
}

// Message ids already sent (HTTP and publish), so a duplicate is answered without pushing.
const seenMsgIDs = new Set();

/** Pushes a `msg` unless msgID was seen; returns false for a duplicate. */
function sendToRoom(appID, from, msgID, message) {
  if (seenMsgIDs.has(msgID)) return false;
  seenMsgIDs.add(msgID);
  if (seenMsgIDs.size > 10000) seenMsgIDs.delete(seenMsgIDs.values().next().value);
  push(appID, from, 'msg', msgID, pushData(from, message));
  return true;
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
      if (!APP_IDS.has(data.appID)) return reply(1003);
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
      reply(200, exp === null ? null : { exp });
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
      return reply(200, sendToRoom(conn.appID, conn.userID, msgID, message) ? { sendResults: true } : {});
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
      const sent = sendToRoom(appID, userID, msgID, message);
      return sendJson(res, 200, 'Success', sent ? { sendResults: true } : {});
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
const mode = `${authSecret ? 'tokens (HS256/384/512)' : 'no tokens'}, ${apiKeys.length ? 'API key' : 'no API key'}`;
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
