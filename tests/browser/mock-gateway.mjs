#!/usr/bin/env node
// A tiny stand-in for imgate, for developing and checking the chat page (web/) without the C++
// server: `./run.sh --mock`. It speaks the same wire contract, in its simplest form:
//   HTTP: GET /home/index?appID=N (web/index.html with the config injected), GET /web/<file>,
//         /user/list, /user/sendMessageAll
//   WebSocket: /acc with login, heartbeat, ping; pushes enter, exit, msg.
// Flags (like imgate's): --bind ADDR --http-port N --ws-port N --ready-file FILE --web-root DIR
// Zero dependencies; not a WebSocket implementation for anything else (no fragmentation, no
// extensions, small frames).

import { createHash, randomInt } from 'node:crypto';
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

const MESSAGES = {
  200: 'Success', 1000: '未登录', 1001: '参数不合法', 1002: '非法的用户ID', 1003: '未授权', 1009: '操作失败',
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
      const first = !usersOf(data.appID).includes(userID);
      conn.userID = userID;
      conn.appID = data.appID;
      reply(200);
      if (first) push(conn.appID, userID, 'enter', String(randomInt(1e9)), pushData(userID, '哈喽~'));
      return undefined;
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
  const conn = { socket, appID: 0, userID: '' };
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

async function onHttp(req, res) {
  const url = new URL(req.url, 'http://x');
  const path = url.pathname;
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
      push(appID, userID, 'msg', msgID, pushData(userID, message));
      return sendJson(res, 200, 'Success', { sendResults: true });
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
console.log(`mock gateway: websocket ${bind}:${wsPort}/acc, http ${bind}:${httpPort}, web root ${webRoot}`);
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
