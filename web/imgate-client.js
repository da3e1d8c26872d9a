/**
 * imgate-client.js — a small WebSocket client for imgate and link1st/gowebsocket.
 *
 * One ES module, no dependencies, no build step: copy it into your app and
 * `import { ImgateClient } from './imgate-client.js'`. Works in browsers and in
 * Node >= 22 (Node 20: run with --experimental-websocket, or set the `WebSocket` option to the `ws`
 * package's class).
 *
 * Wire format (see the gowebsocket protocol):
 *   request   {"seq":"<id>","cmd":"<cmd>","data":{...}}
 *   response  {"seq":"<id>","cmd":"<cmd>","response":{"code":200,"codeMsg":"Success","data":...}}
 *   push      {"seq":"<msgID>","cmd":"msg|enter|exit","response":{"code":200,"codeMsg":"Ok",
 *              "data":{"target":"","type":"text","msg":"<text>","from":"<userID>"}}}
 *
 * @example
 *   const client = new ImgateClient({ url: 'ws://127.0.0.1:8089/acc', appID: 101, userID: 'alice' });
 *   client.on('login', () => console.log('logged in'));
 *   client.on('msg', ({ from, msg }) => console.log(`${from}: ${msg}`));
 *   client.on('enter', ({ from }) => console.log(`${from} joined`));
 *   client.on('exit', ({ from }) => console.log(`${from} left`));
 *   client.on('reconnecting', ({ attempt, delayMs }) => console.log(`retry #${attempt} in ${delayMs} ms`));
 *   client.connect();
 *   const res = await client.request('ping', {});   // res.response.data === 'pong'
 *   client.close();                                   // no more reconnects
 *
 * Constructor options:
 *   url               WebSocket URL, e.g. "ws://host:8089/acc" (required)
 *   appID             room / application id, a number (required; 101..104 by default)
 *   userID            user id, 1..19 bytes of UTF-8 (required)
 *   serviceToken      sent with login (ignored by servers without authentication), default ""
 *   heartbeatMs       interval of the `heartbeat` request after login, default 30000; 0 disables
 *   requestTimeoutMs  how long request() waits for its response, default 10000
 *   reconnect         { minMs = 500, maxMs = 30000 } exponential back-off with jitter, or `false`
 *                     to never reconnect
 *   autoLogin         log in after every (re)connect, default true
 *   WebSocket         WebSocket constructor to use, default globalThis.WebSocket
 *
 * Methods:
 *   connect()             opens the socket (and keeps it open: reconnects after any loss)
 *   close(code?, reason?) closes the socket and stops reconnecting; pending requests are rejected
 *   login()               Promise<envelope>; sends `login` (done automatically after each connect);
 *                         rejects with ImgateError (`.code`, `.codeMsg`) when the code is not 200.
 *                         A refusal for a bad userID/appID/token (1001, 1002, 1003) stops the client.
 *   heartbeat()           Promise<envelope>; sends `heartbeat` (done automatically every heartbeatMs)
 *   request(cmd, data)    Promise<envelope> resolved with the response whose `seq` matches, whatever
 *                         its code (check `envelope.response.code`); rejected with ImgateError on
 *                         timeout (`.code === 'timeout'`), on close (`'closed'`) or when not
 *                         connected (`'not-connected'`)
 *   send(cmd, data)       fire and forget; returns the seq used
 *   on(type, fn)          listens to an event, fn receives the event's detail; returns an unsubscribe
 *                         function. addEventListener works too (the client is an EventTarget; the
 *                         payload is event.detail).
 *   off(type, fn)         removes a listener added with on()
 *   newSeq()              a fresh request id "<unix-ms>-<6 random digits>", unique per client
 *
 * Properties (read only):
 *   state      'idle' | 'connecting' | 'open' | 'online' | 'reconnecting' | 'closed'
 *              ('open' = socket open, not yet logged in; 'online' = logged in)
 *   loggedIn   true between a successful login and the next close
 *   attempt    consecutive failed connection attempts (0 after a successful login)
 *
 * Events (detail):
 *   'open'          { url }                                  socket opened
 *   'login'         { appID, userID, response }              login answered 200
 *   'msg'           { from, msg, type, target, seq }         message pushed by the HTTP API
 *   'enter'         { from, msg, type, target, seq }         another user of the room logged in
 *   'exit'          { from, msg, type, target, seq }         a user of the room went away
 *   'push'          { cmd, seq, response }                   any push (also the three above)
 *   'close'         { code, reason, wasClean, willReconnect }
 *   'reconnecting'  { attempt, delayMs }                     a reconnect is scheduled
 *   'state'         { state, previous }                      state changed
 *   'error'         { error, code?, codeMsg?, raw? }         socket error, refused login, failed
 *                                                            heartbeat, or a frame that is not JSON
 *
 * License: MIT. Part of imgate.
 */

/** Error type for rejected requests and refused logins. */
export class ImgateError extends Error {
  /**
   * @param {string} message
   * @param {string|number} code  protocol code (e.g. 1002) or 'timeout' | 'closed' | 'not-connected'
   * @param {string} [codeMsg]
   */
  constructor(message, code, codeMsg = '') {
    super(message);
    this.name = 'ImgateError';
    this.code = code;
    this.codeMsg = codeMsg;
  }
}

/** Login codes after which retrying with the same parameters cannot succeed. */
const FATAL_LOGIN_CODES = new Set([1001, 1002, 1003]);
const PUSH_COMMANDS = new Set(['msg', 'enter', 'exit']);

function randomDigits6() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const buf = new Uint32Array(1);
    c.getRandomValues(buf);
    return 100000 + (buf[0] % 900000);
  }
  return 100000 + Math.floor(Math.random() * 900000);
}

/** A request id like upstream's page: "<unix-ms>-<6 random digits>". */
export function makeSeq() {
  return `${Date.now()}-${randomDigits6()}`;
}

export class ImgateClient extends EventTarget {
  /**
   * @param {object} options see the header comment
   */
  constructor({
    url,
    appID,
    userID,
    serviceToken = '',
    heartbeatMs = 30000,
    requestTimeoutMs = 10000,
    reconnect = {},
    autoLogin = true,
    WebSocket: WebSocketImpl = globalThis.WebSocket,
  } = {}) {
    super();
    if (!url) throw new TypeError('ImgateClient: url is required');
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError('ImgateClient: no WebSocket implementation (pass options.WebSocket)');
    }
    this.url = String(url);
    this.appID = Number(appID);
    this.userID = String(userID ?? '');
    this.serviceToken = String(serviceToken);
    this.heartbeatMs = Number(heartbeatMs);
    this.requestTimeoutMs = Number(requestTimeoutMs);
    this.reconnect =
      reconnect === false
        ? false
        : { minMs: reconnect.minMs ?? 500, maxMs: reconnect.maxMs ?? 30000 };
    this.autoLogin = autoLogin;
    this._WebSocket = WebSocketImpl;
    this._ws = null;
    this._state = 'idle';
    this._loggedIn = false;
    this._attempt = 0;
    this._stopped = true;
    this._pending = new Map(); // seq -> { resolve, reject, timer, cmd }
    this._lastSeqs = new Set(); // recent seqs, to never reuse one
    this._heartbeatTimer = null;
    this._reconnectTimer = null;
    this._listeners = new Map(); // type -> Map(fn -> wrapper)
  }

  get state() {
    return this._state;
  }

  get loggedIn() {
    return this._loggedIn;
  }

  get attempt() {
    return this._attempt;
  }

  /** Opens the connection; after a loss the client reconnects until close() is called. */
  connect() {
    this._stopped = false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._ws) return;
    this._open();
  }

  /** Closes the connection for good (no reconnect). */
  close(code = 1000, reason = 'client closed') {
    this._stopped = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const ws = this._ws;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
      // Settle now; the socket's own close event is ignored once detached.
      this._onClosed(ws, { code, reason, wasClean: true });
    } else {
      this._setState('closed');
    }
  }

  /** Sends `login`; resolves with the response envelope, rejects unless code 200. */
  async login() {
    const data = { serviceToken: this.serviceToken, appID: this.appID, userID: this.userID };
    const res = await this.request('login', data);
    const { code, codeMsg } = res.response || {};
    if (code !== 200) {
      throw new ImgateError(`login refused: ${code} ${codeMsg}`, code, codeMsg);
    }
    this._loggedIn = true;
    this._attempt = 0;
    this._setState('online');
    this._startHeartbeat();
    this._emit('login', { appID: this.appID, userID: this.userID, response: res.response });
    return res;
  }

  /** Sends `heartbeat`; resolves with the response envelope. */
  heartbeat() {
    return this.request('heartbeat', { userID: this.userID });
  }

  /**
   * Sends a request and waits for the response with the same seq.
   * @param {string} cmd
   * @param {object} [data]
   * @returns {Promise<{seq: string, cmd: string, response: {code: number, codeMsg: string, data: any}}>}
   */
  request(cmd, data = {}) {
    return new Promise((resolve, reject) => {
      const ws = this._ws;
      if (!ws || ws.readyState !== 1 /* OPEN */) {
        reject(new ImgateError(`cannot send ${cmd}: not connected`, 'not-connected'));
        return;
      }
      const seq = this.newSeq();
      const timer = setTimeout(() => {
        if (this._pending.delete(seq)) {
          reject(new ImgateError(`${cmd} timed out after ${this.requestTimeoutMs} ms`, 'timeout'));
        }
      }, this.requestTimeoutMs);
      this._pending.set(seq, { resolve, reject, timer, cmd });
      try {
        ws.send(JSON.stringify({ seq, cmd, data }));
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(seq);
        reject(new ImgateError(`cannot send ${cmd}: ${error.message}`, 'not-connected'));
      }
    });
  }

  /** Sends a request without waiting for its response; returns its seq. */
  send(cmd, data = {}) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) throw new ImgateError(`cannot send ${cmd}: not connected`, 'not-connected');
    const seq = this.newSeq();
    ws.send(JSON.stringify({ seq, cmd, data }));
    return seq;
  }

  /** A request id "<unix-ms>-<6 random digits>" not used recently by this client. */
  newSeq() {
    let seq = makeSeq();
    while (this._pending.has(seq) || this._lastSeqs.has(seq)) seq = makeSeq();
    this._lastSeqs.add(seq);
    if (this._lastSeqs.size > 1024) {
      this._lastSeqs.delete(this._lastSeqs.values().next().value);
    }
    return seq;
  }

  /** Adds a listener called with the event's detail; returns a function removing it. */
  on(type, fn) {
    let byFn = this._listeners.get(type);
    if (!byFn) this._listeners.set(type, (byFn = new Map()));
    if (!byFn.has(fn)) {
      const wrapper = (event) => fn(event.detail, event);
      byFn.set(fn, wrapper);
      this.addEventListener(type, wrapper);
    }
    return () => this.off(type, fn);
  }

  /** Removes a listener added with on(). */
  off(type, fn) {
    const byFn = this._listeners.get(type);
    const wrapper = byFn && byFn.get(fn);
    if (wrapper) {
      byFn.delete(fn);
      this.removeEventListener(type, wrapper);
    }
  }

  // ---- internals ------------------------------------------------------------------------

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (state === this._state) return;
    const previous = this._state;
    this._state = state;
    this._emit('state', { state, previous });
  }

  _open() {
    this._setState(this._attempt > 0 ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (error) {
      this._emit('error', { error });
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._setState('open');
      this._emit('open', { url: this.url });
      if (this.autoLogin) this._autoLogin();
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      this._onFrame(event.data);
    };
    ws.onerror = () => {
      if (this._ws !== ws) return;
      this._emit('error', { error: new ImgateError(`WebSocket error on ${this.url}`, 'socket') });
      // An error ends the socket (browsers follow it with close 1006; some implementations, such
      // as Node 20's, never fire close after a failed connect), so settle it now.
      if (ws.readyState === 1 /* OPEN */) {
        try {
          ws.close();
        } catch {
          // already closing
        }
      }
      this._onClosed(ws, { code: 1006, reason: '', wasClean: false });
    };
    ws.onclose = (event) => this._onClosed(ws, event);
  }

  async _autoLogin() {
    try {
      await this.login();
    } catch (error) {
      if (this._stopped || error.code === 'closed' || error.code === 'not-connected') return;
      this._emit('error', { error, code: error.code, codeMsg: error.codeMsg });
      if (FATAL_LOGIN_CODES.has(error.code)) {
        this.close(1000, 'login refused');
      } else if (this._ws) {
        // Transient failure (timeout, server error): drop the socket and try again later.
        this._ws.close(4000, 'login failed');
        this._onClosed(this._ws, { code: 4000, reason: 'login failed', wasClean: false });
      }
    }
  }

  _onFrame(raw) {
    if (typeof raw !== 'string') return; // the protocol uses text frames only
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      message = null;
    }
    if (!message || typeof message !== 'object' || Array.isArray(message)) {
      this._emit('error', { error: new ImgateError('frame is not a JSON object', 'bad-frame'), raw });
      return;
    }
    const { seq, cmd } = message;
    const pending = typeof seq === 'string' ? this._pending.get(seq) : undefined;
    // A response echoes our seq and cmd (a push carries a message id as seq: never confused,
    // even if a message id happens to equal a pending seq, unless the request was for that cmd).
    if (pending && (cmd === pending.cmd || !PUSH_COMMANDS.has(cmd))) {
      this._pending.delete(seq);
      clearTimeout(pending.timer);
      pending.resolve(message);
      return;
    }
    if (typeof cmd === 'string' && PUSH_COMMANDS.has(cmd)) {
      const data = (message.response && message.response.data) || {};
      this._emit('push', { cmd, seq, response: message.response });
      this._emit(cmd, {
        from: data.from,
        msg: data.msg,
        type: data.type,
        target: data.target,
        seq,
      });
    } else if (typeof cmd === 'string') {
      this._emit('push', { cmd, seq, response: message.response });
    }
  }

  _onClosed(ws, event) {
    if (this._ws !== ws) return; // already handled
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    this._loggedIn = false;
    this._stopHeartbeat();
    for (const [seq, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new ImgateError(`${p.cmd} aborted: connection closed`, 'closed'));
      this._pending.delete(seq);
    }
    const willReconnect = !this._stopped && this.reconnect !== false;
    this._emit('close', {
      code: event.code,
      reason: event.reason,
      wasClean: event.wasClean,
      willReconnect,
    });
    if (willReconnect) {
      this._scheduleReconnect();
    } else {
      this._setState('closed');
    }
  }

  _scheduleReconnect() {
    if (this._stopped || this.reconnect === false) {
      this._setState('closed');
      return;
    }
    this._attempt += 1;
    const { minMs, maxMs } = this.reconnect;
    // Exponential back-off, capped, with "equal jitter": a random delay in [cap/2, cap].
    const cap = Math.min(maxMs, minMs * 2 ** Math.min(this._attempt - 1, 30));
    const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs });
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._stopped && !this._ws) this._open();
    }, delayMs);
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    if (!(this.heartbeatMs > 0)) return;
    this._heartbeatTimer = setInterval(async () => {
      const ws = this._ws;
      try {
        const res = await this.heartbeat();
        const code = res.response && res.response.code;
        if (code !== 200) {
          throw new ImgateError(`heartbeat refused: ${code}`, code, res.response.codeMsg);
        }
      } catch (error) {
        if (this._ws !== ws || !ws || this._stopped) return;
        this._emit('error', { error, code: error.code, codeMsg: error.codeMsg });
        // An unanswered or refused heartbeat means the session is gone: start over.
        ws.close(4001, 'heartbeat failed');
        this._onClosed(ws, { code: 4001, reason: 'heartbeat failed', wasClean: false });
      }
    }, this.heartbeatMs);
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }
}

export default ImgateClient;
