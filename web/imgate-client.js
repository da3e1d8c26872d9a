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
 * Secure mode (imgate started with --auth-hmac-secret / --auth-public-key): login carries a JWT as
 * `serviceToken` whose `sub` is the userID; the login response has data.exp (unix seconds); the
 * `refresh` command replaces the token of a logged-in connection; a connection whose token
 * expired is closed by the server with code 4001. `publish` (every mode) sends a message to the
 * connection's own room, like POST /user/sendMessageAll from the logged-in user; `users` (every
 * mode) lists who is online in that room, like GET /user/list, without the API key.
 *
 * History (imgate started with --history-size N; docs/history.md): every `msg` push carries
 * data.stream ('room' | 'user'), data.epoch and data.offset (consecutive per stream and epoch).
 * The client keeps the last position {epoch, offset} of both streams of its appID/userID — from
 * the login reply's data.room / data.user, from each push, and from `publish` answers (and
 * notePosition() for your own sends by HTTP) — and on every later login with the same appID and
 * userID (after a reconnect, or close() then connect()) sends data.recover: {room, user} with
 * them. The gateway then pushes what was sent meanwhile right after the login reply; those
 * pushes, and a first login's offline messages (data.offline), come as 'msg' events with
 * `missed: true`. A `ping` sent after the login reply marks the end of that catch-up: then
 * 'recovered' is emitted (after a login with recover), and 'recoveryIncomplete' when the reply
 * said recovered: false. A push whose offset was already passed is dropped ('duplicate'); a jump
 * over offsets neither received nor your own emits 'gap'. With history off the login reply has
 * no positions, nothing of this happens, and no login ever carries recover.
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
 * @example secure mode, tokens from your login service (asked again before every login and refresh)
 *   const client = new ImgateClient({
 *     url, appID: 101, userID: 'alice',
 *     getToken: async ({ appID, userID, reason }) => (await fetch(`/token?app=${appID}`)).text(),
 *   });
 *   client.on('refresh', ({ exp }) => console.log('token valid until', new Date(exp * 1000)));
 *   client.connect();
 *   await client.publish('hello, room');   // {seq, cmd: 'publish', response: {code: 200, ...}}
 *
 * Constructor options:
 *   url               WebSocket URL, e.g. "ws://host:8089/acc" (this or `urls` is required)
 *   urls              several WebSocket URLs of one cluster's nodes, e.g. ["ws://a:8089/acc",
 *                     "ws://b:8089/acc"]: the first connection goes to the first (to `url` when
 *                     that is given too), every reconnect to the next one, round robin. A node
 *                     that shuts down closes its clients with 1001: they come back on another
 *                     node (docs/cluster.md, "Rolling restart").
 *   appID             room / application id, a number (required; 101..104 by default)
 *   userID            user id, 1..19 bytes of UTF-8 (required)
 *   serviceToken      sent with login (ignored by servers without authentication), default ""
 *   getToken          async ({ appID, userID, reason }) => string, reason 'login' | 'refresh'; when
 *                     set, awaited before every login (each (re)connect) and every refresh, and its
 *                     result is sent instead of serviceToken. A rejection or a non-string / empty
 *                     result counts like a failed connection (error code 'token', then back-off).
 *                     Also enables automatic refresh (see refresh()).
 *   heartbeatMs       interval of the `heartbeat` request after login, default 30000; 0 disables
 *   requestTimeoutMs  how long request() waits for its response, default 10000
 *   reconnect         { minMs = 500, maxMs = 30000 } exponential back-off with jitter, or `false`
 *                     to never reconnect
 *   autoLogin         log in after every (re)connect, default true
 *   recover           send data.recover with the known positions on every login but the first
 *                     (history on), default true; false = never (a reconnect then gets no replay)
 *   httpBase          base of the HTTP API for history(), e.g. "http://host:8080"; default ""
 *                     (this page's origin; outside a browser give an absolute base)
 *   apiKey            sent by history() as X-API-Key (gateways with --api-key), default none
 *   WebSocket         WebSocket constructor to use, default globalThis.WebSocket
 *
 * Methods:
 *   connect()             opens the socket (and keeps it open: reconnects after any loss)
 *   close(code?, reason?) closes the socket and stops reconnecting; pending requests are rejected
 *   login()               Promise<envelope>; sends `login` (done automatically after each connect);
 *                         rejects with ImgateError (`.code`, `.codeMsg`) when the code is not 200.
 *                         A refusal for a bad userID/appID/token (1001, 1002, 1003) stops the client;
 *                         with getToken, a 1003 is first retried once with a fresh token.
 *                         When the response carries data.exp and getToken is set, a refresh is
 *                         scheduled at 80 % of the remaining lifetime or 30 s before exp,
 *                         whichever is earlier (80 % when less than 30 s are left), at least 1 s.
 *   refresh(serviceToken?) Promise<envelope>; sends `refresh` with the given token, else one from
 *                         getToken({reason: 'refresh'}), else serviceToken. Rejects with
 *                         ImgateError unless code 200; a 1003 with getToken is retried once with a
 *                         fresh token. A given token also becomes serviceToken (used by the next
 *                         login) when getToken is not set. The automatic refresh reports failures
 *                         as 'error' events and lets the server close the connection at expiry
 *                         (4001), after which the client logs in again with a fresh token.
 *   publish(message, msgID?) Promise<envelope>; sends `publish`: the message goes to every other user
 *                         of this connection's room as a `msg` push from userID (not back to you).
 *                         Resolved whatever the code, like request(): 200 sent (data {} for a
 *                         duplicate msgID, nothing pushed), 1000 not logged in, 1001 bad message.
 *                         History on: a 200 answer's data {epoch, offset} is noted (notePosition).
 *   users()               Promise<envelope>; sends `users`: who is online in this connection's room
 *                         (every node). Resolved whatever the code: 200 with data {userCount,
 *                         userList (at most 1000, the first in byte order), truncated?: true},
 *                         1000 not logged in, 1004 unknown (the gateway lost Redis).
 *   notePosition(stream, {epoch, offset})  notes a push of 'room' | 'user' this client will not
 *                         receive: its own message, e.g. from the answer of POST
 *                         /user/sendMessageAll (data.epoch, data.offset), so that it does not
 *                         count as a gap. Returns true when taken (history on, same epoch, not
 *                         passed yet). Never for pushes that do reach you (they would be dropped).
 *   history({userID?, since?, epoch?, limit?})  Promise<data>; GET <httpBase>/user/history: the
 *                         kept pushes of the room (no userID) or of userID's stream after `since`,
 *                         `{epoch, offset, complete, messages: [{offset, seq, msg, from, type}]}`.
 *                         Rejects with ImgateError: the answer's code (1009 history off, 1001 bad
 *                         number, 1003 API key needed) or 'http' (network error, not JSON).
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
 *   url        the WebSocket URL in use (or of the next attempt while reconnecting)
 *   urls       every URL the client may use, in the order it tries them
 *   state      'idle' | 'connecting' | 'open' | 'online' | 'reconnecting' | 'closed'
 *              ('open' = socket open, not yet logged in; 'online' = logged in)
 *   loggedIn   true between a successful login and the next close
 *   attempt    consecutive failed connection attempts (0 after a successful login)
 *   tokenExp   the current token's exp (unix seconds) from the last login / refresh, or null
 *   positions  { room, user }: the last known {epoch, offset} of each stream, or null (history off,
 *              no login yet); epoch "" = the stream held nothing at login
 *   gaps       offsets counted as missing in 'gap' events so far
 *
 * Events (detail):
 *   'open'          { url }                                  socket opened (url: the one in use)
 *   'login'         { appID, userID, response, exp, recovering, offline }
 *                                                            login answered 200 (exp: data.exp or
 *                                                            null; recovering: data.recover was
 *                                                            sent; offline: data.offline or 0, that
 *                                                            many offline messages follow)
 *   'refresh'       { exp }                                  refresh answered 200 (the new exp)
 *   'tokenExpired'  { code, reason }                         the server closed with 4001 (token
 *                                                            expired); a reconnect follows, with a
 *                                                            token from getToken (without getToken
 *                                                            the old token is refused: 1003, stop)
 *   'msg'           { from, msg, type, target, seq, stream, epoch, offset, missed }
 *                                                            a message (HTTP API or publish);
 *                                                            stream/epoch/offset with history on,
 *                                                            else undefined; missed: true when it
 *                                                            was sent while this client was not
 *                                                            connected (recovery, offline message)
 *   'enter'         { from, msg, type, target, seq, ... }    another user of the room logged in
 *   'exit'          { from, msg, type, target, seq, ... }    a user of the room went away
 *   'push'          { cmd, seq, response, duplicate }        any push (also the three above, and
 *                                                            duplicates, which emit no 'msg')
 *   'recovered'     { recovered, room, user, missed }        after a login with data.recover, once
 *                                                            its catch-up pushes are in: the reply's
 *                                                            `recovered`, the positions now, and
 *                                                            how many 'msg' events were missed ones
 *   'recoveryIncomplete' { recovered: false, room, user, missed, reason, streams }
 *                                                            right after such a 'recovered': some
 *                                                            pushes of the time away are lost;
 *                                                            reason 'epoch' (the history of a
 *                                                            stream in `streams` was lost: restart,
 *                                                            or forgotten) or 'history' (the oldest
 *                                                            were no longer kept; those still kept
 *                                                            came). history() cannot bring back more.
 *   'gap'           { stream, epoch, after, offset, missing, total }
 *                                                            a live push skipped `missing` offsets
 *                                                            after `after` (neither received nor
 *                                                            noted as your own); total = gaps
 *   'duplicate'     { stream, epoch, offset, seq }           a push already passed: dropped
 *   'close'         { code, reason, wasClean, willReconnect }
 *   'reconnecting'  { attempt, delayMs, url }                a reconnect is scheduled, to `url`
 *   'state'         { state, previous }                      state changed
 *   'error'         { error, code?, codeMsg?, raw? }         socket error, refused login / refresh,
 *                                                            failed heartbeat or getToken, or a
 *                                                            frame that is not JSON. error.reason is
 *                                                            the server's data.error if any (e.g.
 *                                                            "bad signature")
 *
 * License: MIT. Part of imgate.
 */

/** Error type for rejected requests and refused logins. */
export class ImgateError extends Error {
  /**
   * @param {string} message
   * @param {string|number} code  protocol code (e.g. 1002) or 'timeout' | 'closed' | 'not-connected'
   *                               | 'token' (getToken failed)
   * @param {string} [codeMsg]
   * @param {any} [data]  the response's data; its `error` string becomes `.reason`
   */
  constructor(message, code, codeMsg = '', data = null) {
    super(message);
    this.name = 'ImgateError';
    this.code = code;
    this.codeMsg = codeMsg;
    this.data = data;
    this.reason = data && typeof data.error === 'string' ? data.error : '';
  }
}

/** An ImgateError for a refused `cmd`, e.g. "login refused: 1003 未授权 (bad signature)". */
function refusal(cmd, response) {
  const { code, codeMsg, data } = response || {};
  const error = new ImgateError(`${cmd} refused: ${code} ${codeMsg}`, code, codeMsg, data);
  if (error.reason) error.message += ` (${error.reason})`;
  return error;
}

/** Login codes after which retrying with the same parameters cannot succeed. */
const FATAL_LOGIN_CODES = new Set([1001, 1002, 1003]);
const PUSH_COMMANDS = new Set(['msg', 'enter', 'exit']);
/** Close code of the server for a logged-in connection whose token expired. */
const TOKEN_EXPIRED_CLOSE = 4001;
const REFRESH_BEFORE_EXP_MS = 30000;
const REFRESH_AT_FRACTION = 0.8;
const MIN_REFRESH_DELAY_MS = 1000; // a token that is (nearly) expired is not refreshed in a tight loop
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout fires at once beyond this (~24.8 days)

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

/**
 * How long to wait before refreshing a token that has `remainingMs` left: 80 % of it or 30 s
 * before exp, whichever is earlier; 80 % when less than 30 s are left (30 s before exp would be in
 * the past); never less than 1 s.
 */
export function refreshDelayMs(remainingMs) {
  const atFraction = remainingMs * REFRESH_AT_FRACTION;
  const beforeExp = remainingMs - REFRESH_BEFORE_EXP_MS;
  const delay = beforeExp > 0 ? Math.min(atFraction, beforeExp) : atFraction;
  return Math.max(MIN_REFRESH_DELAY_MS, Math.round(delay));
}

const STREAMS = ['room', 'user'];
const MAX_OWN_OFFSETS = 1024; // own offsets kept above a stream's position (a hole that never fills)
const NO_MARK = Object.freeze({ missed: false, duplicate: false });

/** `{epoch, offset}` when `p` holds a well-formed stream position (a string epoch), else null. */
function readPosition(p) {
  if (!p || typeof p !== 'object' || typeof p.epoch !== 'string') return null;
  const offset = Number(p.offset);
  if (!Number.isSafeInteger(offset) || offset < 0) return null;
  return { epoch: p.epoch, offset };
}

/**
 * What the client knows of one stream (history on). Every offset of `epoch` up to `offset` was
 * received, was one of this client's own pushes (the server never pushes those back), or was
 * already reported as a gap; `own` holds own offsets above `offset`, noted before the pushes
 * below them arrived. `top` is the position of the last login reply while the pushes up to it
 * (the catch-up: recovery or offline messages) may still arrive. Epoch '' is the server's "this
 * stream held nothing" (at login): whatever epoch comes next starts at offset 1.
 */
class StreamPosition {
  constructor(epoch, offset) {
    this.epoch = epoch;
    this.offset = offset;
    this.own = new Set();
    this.top = null;
  }

  /** Moves to `offset` of `epoch` (forward only within one epoch). */
  reset(epoch, offset) {
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.offset = offset;
      this.own.clear();
    } else {
      this.offset = Math.max(this.offset, offset);
    }
    this.absorb();
  }

  /** Forgets own offsets at or below `offset`, and advances over those that follow it. */
  absorb() {
    for (const o of this.own) if (o <= this.offset) this.own.delete(o);
    while (this.own.delete(this.offset + 1)) this.offset += 1;
  }

  /** How many offsets between `offset` and `next` (both excluded) are neither received nor own. */
  missingBefore(next) {
    let own = 0;
    for (const o of this.own) if (o < next) own += 1;
    return next - this.offset - 1 - own;
  }

  /** The catch-up is over: every push up to `top` has been delivered (own ones never are). */
  endCatchUp() {
    if (this.top && this.top.epoch === this.epoch) this.offset = Math.max(this.offset, this.top.offset);
    this.top = null;
    this.absorb();
  }
}

export class ImgateClient extends EventTarget {
  /**
   * @param {object} options see the header comment
   */
  constructor({
    url,
    urls,
    appID,
    userID,
    serviceToken = '',
    getToken = null,
    heartbeatMs = 30000,
    requestTimeoutMs = 10000,
    reconnect = {},
    autoLogin = true,
    recover = true,
    httpBase = '',
    apiKey = '',
    WebSocket: WebSocketImpl = globalThis.WebSocket,
  } = {}) {
    super();
    const extra = urls == null ? [] : typeof urls === 'string' ? [urls] : Array.from(urls, String);
    const all = [...(url ? [String(url)] : []), ...extra];
    const list = all.filter((u, i) => u && all.indexOf(u) === i);
    if (list.length === 0) throw new TypeError('ImgateClient: url (or urls) is required');
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError('ImgateClient: no WebSocket implementation (pass options.WebSocket)');
    }
    this.urls = Object.freeze(list);
    this._urlIndex = 0;
    this.url = list[0];
    this.appID = Number(appID);
    this.userID = String(userID ?? '');
    this.serviceToken = String(serviceToken);
    if (getToken != null && typeof getToken !== 'function') {
      throw new TypeError('ImgateClient: getToken must be a function returning (a Promise of) a token');
    }
    this.getToken = getToken;
    this.heartbeatMs = Number(heartbeatMs);
    this.requestTimeoutMs = Number(requestTimeoutMs);
    this.reconnect =
      reconnect === false
        ? false
        : { minMs: reconnect.minMs ?? 500, maxMs: reconnect.maxMs ?? 30000 };
    this.autoLogin = autoLogin;
    this.recover = recover !== false;
    this.httpBase = String(httpBase ?? '').replace(/\/+$/, '');
    this.apiKey = String(apiKey ?? '');
    this._WebSocket = WebSocketImpl;
    this._ws = null;
    this._state = 'idle';
    this._loggedIn = false;
    this._attempt = 0;
    this._stopped = true;
    this._pending = new Map(); // seq -> { resolve, reject, timer, cmd, onResponse }
    this._lastSeqs = new Set(); // recent seqs, to never reuse one
    this._heartbeatTimer = null;
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._refreshDue = 0; // Date.now() value at which the scheduled refresh is due
    this._tokenExp = null;
    this._listeners = new Map(); // type -> Map(fn -> wrapper)
    // History (servers started with --history-size): the last position of each stream of
    // _streamsOf (the appID/userID they belong to), see StreamPosition.
    this._streams = { room: null, user: null };
    this._streamsOf = '';
    this._catchUp = null; // {asked, missed, offline} from a login reply until its barrier
    this._gaps = 0;
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

  get tokenExp() {
    return this._tokenExp;
  }

  /**
   * The last known position of each stream of appID/userID (history on): `{room, user}`, each
   * `{epoch, offset}` or null (nothing known: history off, or no login yet).
   */
  get positions() {
    this._ownStreams();
    const copy = (p) => (p ? { epoch: p.epoch, offset: p.offset } : null);
    return { room: copy(this._streams.room), user: copy(this._streams.user) };
  }

  /** Offsets counted as missing in 'gap' events since the client was made. */
  get gaps() {
    return this._gaps;
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
    this._cancelRefresh();
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

  /**
   * Sends `login` (with a token from getToken when set); resolves with the response envelope,
   * rejects unless code 200.
   */
  async login() {
    const ws = this._ws;
    const serviceToken = await this._token('login');
    if (this._ws !== ws) throw new ImgateError('login aborted: connection closed', 'closed');
    const data = { serviceToken, appID: this.appID, userID: this.userID };
    const recover = this._recoverRequest();
    if (recover) data.recover = recover;
    // A successful reply is taken as it is read, before any later frame: with history on, the
    // catch-up pushes are the very next frames (and some WebSocket implementations dispatch
    // several frames before a promise settles), so 'login' always comes before them.
    const res = await this._request('login', data, (response) => {
      if (response && response.code === 200) this._loggedInWith(ws, response, recover);
    });
    if (!res.response || res.response.code !== 200) throw refusal('login', res.response);
    return res;
  }

  /** A login answered 200: online, timers armed, positions taken, 'login' emitted. */
  _loggedInWith(ws, response, recover) {
    const catchUp = this._onLoginPositions(response.data, recover);
    this._loggedIn = true;
    this._attempt = 0;
    this._setState('online');
    this._startHeartbeat();
    this._scheduleRefresh(response.data && response.data.exp);
    this._emit('login', {
      appID: this.appID,
      userID: this.userID,
      response,
      exp: this._tokenExp,
      recovering: Boolean(recover),
      offline: catchUp ? catchUp.offline : 0,
    });
    if (catchUp) this._awaitCatchUp(ws, catchUp);
  }

  /**
   * Sends `refresh` with `serviceToken`, else a token from getToken({reason: 'refresh'}), else
   * this.serviceToken. Resolves with the response envelope, rejects unless code 200; a 1003 is
   * retried once with a fresh token from getToken.
   */
  async refresh(serviceToken) {
    const ws = this._ws;
    const given = serviceToken !== undefined && serviceToken !== null;
    for (let retry = false; ; retry = true) {
      const token = given ? String(serviceToken) : await this._token('refresh');
      if (this._ws !== ws) throw new ImgateError('refresh aborted: connection closed', 'closed');
      const res = await this.request('refresh', { serviceToken: token });
      const response = res.response || {};
      if (response.code === 200) {
        if (given && !this.getToken) this.serviceToken = token;
        this._scheduleRefresh(response.data && response.data.exp);
        this._emit('refresh', { exp: this._tokenExp });
        return res;
      }
      if (response.code !== 1003 || given || !this.getToken || retry) throw refusal('refresh', response);
    }
  }

  /**
   * Sends `publish`: `message` goes to the other users of this connection's room as a `msg` push
   * from userID. Resolves with the response envelope whatever its code (see request()).
   */
  publish(message, msgID) {
    const data = { message };
    if (msgID !== undefined && msgID !== null && msgID !== '') data.msgID = String(msgID);
    return this.request('publish', data).then((res) => {
      // History on: the answer names the push's place in the room stream, which never comes back.
      if (res.response && res.response.code === 200) this.notePosition('room', res.response.data);
      return res;
    });
  }

  /**
   * Sends `users`: who is online in this connection's room. Resolves with the response envelope
   * whatever its code (see request()); 200's data is {userCount, userList, truncated?}.
   */
  users() {
    return this.request('users', {});
  }

  /**
   * Notes that `position` ({epoch, offset}) of `stream` ('room' | 'user') is a push this client
   * will not receive: its own message, from the answer of `POST /user/sendMessageAll` (or of
   * `publish`, noted automatically). The position then advances over it instead of counting a
   * gap. Not for pushes that do reach this client (they would be dropped as duplicates if noted
   * first). Returns true when the position was taken (history on, same epoch, not already passed).
   */
  notePosition(stream, position) {
    const s = STREAMS.includes(stream) ? this._streams[stream] : null;
    const p = readPosition(position);
    if (!s || !p || p.epoch === '') return false;
    if (s.epoch === '') s.reset(p.epoch, 0); // the stream was empty at login: this epoch began after
    if (p.epoch !== s.epoch || p.offset <= s.offset) return false;
    s.own.add(p.offset);
    if (s.own.size > MAX_OWN_OFFSETS) s.own.delete(Math.min(...s.own));
    s.absorb();
    return true;
  }

  /**
   * GET <httpBase>/user/history: the kept pushes of the room (without userID) or of a user's
   * stream, after offset `since` (default 0: all kept), at most `limit` (server default 100, at
   * most 1000); `epoch` makes the server check it (no messages, complete false, if it is not the
   * stream's). Sends `X-API-Key` when the apiKey option is set. Resolves with the answer's data
   * `{epoch, offset, complete, messages: [{offset, seq, msg, from, type}]}`; rejects with
   * ImgateError: the answer's code (1009 history off, 1001 bad number, 1003 API key needed), or
   * 'http' (network error, not JSON).
   */
  async history({ userID, since, epoch, limit } = {}) {
    const query = new URLSearchParams({ appID: String(this.appID) });
    if (userID !== undefined && userID !== null && userID !== '') query.set('userID', String(userID));
    if (since !== undefined && since !== null) query.set('since', String(since));
    if (epoch) query.set('epoch', String(epoch));
    if (limit !== undefined && limit !== null) query.set('limit', String(limit));
    const headers = this.apiKey ? { 'X-API-Key': this.apiKey } : {};
    let res;
    let body = null;
    try {
      res = await fetch(`${this.httpBase}/user/history?${query}`, { headers });
      body = await res.json();
    } catch (error) {
      if (!res || res.ok) throw new ImgateError(`history failed: ${error && error.message}`, 'http');
    }
    if (!body || typeof body !== 'object' || body.code !== 200) {
      const code = body && typeof body.code === 'number' ? body.code : 'http';
      const what = body ? `${body.code} ${body.msg || ''}`.trim() : `HTTP ${res.status}`;
      const error = new ImgateError(`history refused: ${what}`, code, body ? body.msg : '', body && body.data);
      if (error.reason) error.message += ` (${error.reason})`;
      throw error;
    }
    return body.data;
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
    return this._request(cmd, data, null);
  }

  /** request(), with `onResponse(response)` called as the response is read, before it resolves. */
  _request(cmd, data, onResponse) {
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
      this._pending.set(seq, { resolve, reject, timer, cmd, onResponse });
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

  // ---- history: stream positions, recovery, missed / duplicate / gap ----------------------

  /** Forgets the positions when appID or userID changed since they were taken. */
  _ownStreams() {
    const owner = `${this.appID}\n${this.userID}`;
    if (owner !== this._streamsOf) {
      this._streamsOf = owner;
      this._streams = { room: null, user: null };
    }
  }

  /** data.recover for the next login: the positions known, or null (first login, recover off). */
  _recoverRequest() {
    this._ownStreams();
    if (!this.recover) return null;
    const out = {};
    for (const name of STREAMS) {
      const s = this._streams[name];
      if (s) out[name] = { epoch: s.epoch, offset: s.offset };
    }
    return Object.keys(out).length > 0 ? out : null;
  }

  /**
   * Takes the positions of a login reply (data.room / data.user); they become each stream's
   * catch-up top. Returns the catch-up's state, or null when the reply has none (history off).
   */
  _onLoginPositions(data, recover) {
    if (!data || typeof data !== 'object') return null;
    const offline = Number.isSafeInteger(data.offline) && data.offline > 0 ? data.offline : 0;
    const epochChanged = [];
    let tracked = false;
    for (const name of STREAMS) {
      const p = readPosition(data[name]);
      if (!p) continue;
      tracked = true;
      const asked = recover && recover[name];
      // Do the pushes up to p follow the reply? A recovery in p's epoch (or from nothing, epoch
      // ''), or a first login's offline messages. Else nothing up to p comes: start at p.
      const replay = asked ? asked.epoch === p.epoch || asked.epoch === '' : name === 'user' && offline > 0;
      if (asked && !replay) epochChanged.push(name);
      const s = this._streams[name];
      if (s) s.reset(p.epoch, replay ? 0 : p.offset);
      else this._streams[name] = new StreamPosition(p.epoch, replay ? 0 : p.offset);
      this._streams[name].top = p;
    }
    if (!tracked) return null;
    this._catchUp = { asked: Boolean(recover), recovered: data.recovered === true, offline, missed: 0, epochChanged };
    return this._catchUp;
  }

  /**
   * The catch-up pushes are queued before the answer of any later request: a `ping` answered
   * marks their end. Then the positions move to the reply's and, after a recovery, 'recovered'
   * (and 'recoveryIncomplete') are emitted.
   */
  _awaitCatchUp(ws, catchUp) {
    const done = () => {
      if (this._ws !== ws || this._catchUp !== catchUp) return; // closed meanwhile
      this._catchUp = null;
      for (const name of STREAMS) if (this._streams[name]) this._streams[name].endCatchUp();
      if (!catchUp.asked) return;
      const { room, user } = this.positions;
      const detail = { recovered: catchUp.recovered, room, user, missed: catchUp.missed };
      this._emit('recovered', detail);
      if (!catchUp.recovered) {
        const changed = catchUp.epochChanged;
        this._emit('recoveryIncomplete', { ...detail, reason: changed.length > 0 ? 'epoch' : 'history', streams: changed });
      }
    };
    this.request('ping', {}).then(done, done);
  }

  /**
   * Places a msg push carrying stream/epoch/offset in its stream: `missed` when it is part of the
   * catch-up after a login (offset up to the reply's), `duplicate` when its offset was passed
   * already (dropped); a jump over offsets that are neither received nor own emits 'gap'.
   */
  _track(data, seq) {
    const name = data.stream;
    const p = readPosition(data);
    if (!STREAMS.includes(name) || !p || p.epoch === '' || p.offset === 0) return NO_MARK;
    let s = this._streams[name];
    if (!s) s = this._streams[name] = new StreamPosition(p.epoch, p.offset - 1); // no login positions
    let missed = false;
    if (s.top) {
      if (s.top.epoch === p.epoch && p.offset <= s.top.offset) missed = true;
      else s.endCatchUp(); // a live push: the catch-up's pushes all came before it
    }
    if (s.epoch !== p.epoch) s.reset(p.epoch, 0); // a new epoch (stream created again) starts at 1
    if (p.offset <= s.offset) {
      this._emit('duplicate', { stream: name, epoch: p.epoch, offset: p.offset, seq });
      return { missed, duplicate: true };
    }
    if (!missed && p.offset > s.offset + 1) {
      // Not during a catch-up: the reply's `recovered` says whether it was complete.
      const missing = s.missingBefore(p.offset);
      if (missing > 0) {
        this._gaps += missing;
        this._emit('gap', { stream: name, epoch: p.epoch, after: s.offset, offset: p.offset, missing, total: this._gaps });
      }
    }
    s.offset = p.offset;
    s.absorb();
    if (missed && this._catchUp) this._catchUp.missed += 1;
    return { missed, duplicate: false };
  }

  /** The token to send: getToken's answer when set, else the static serviceToken. */
  async _token(reason) {
    if (!this.getToken) return this.serviceToken;
    let token;
    try {
      token = await this.getToken({ appID: this.appID, userID: this.userID, reason });
    } catch (error) {
      throw new ImgateError(`getToken failed (${reason}): ${error && error.message}`, 'token');
    }
    if (typeof token !== 'string' || token === '') {
      throw new ImgateError(`getToken returned no token (${reason})`, 'token');
    }
    return token;
  }

  /** Remembers exp and, with getToken, arms the automatic refresh for it. */
  _scheduleRefresh(exp) {
    this._cancelRefresh();
    this._tokenExp = typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
    if (this._tokenExp === null || !this.getToken) return;
    this._refreshDue = Date.now() + refreshDelayMs(this._tokenExp * 1000 - Date.now());
    this._armRefreshTimer();
  }

  _armRefreshTimer() {
    const delay = Math.min(Math.max(0, this._refreshDue - Date.now()), MAX_TIMER_MS);
    this._refreshTimer = setTimeout(() => {
      this._refreshTimer = null;
      if (Date.now() < this._refreshDue) this._armRefreshTimer(); // a far exp: waited MAX_TIMER_MS
      else this._autoRefresh();
    }, delay);
  }

  _cancelRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  async _autoRefresh() {
    const ws = this._ws;
    if (!ws || !this._loggedIn) return;
    try {
      await this.refresh();
    } catch (error) {
      if (this._ws !== ws || this._stopped || error.code === 'closed' || error.code === 'not-connected') return;
      // Not retried further: the server closes the connection at expiry (4001) and the client
      // then logs in again with a token from getToken.
      this._emit('error', { error, code: error.code, codeMsg: error.codeMsg });
    }
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
    ws.onclose = (event) => {
      if (this._ws === ws && event.code === TOKEN_EXPIRED_CLOSE) {
        this._emit('tokenExpired', { code: event.code, reason: event.reason });
      }
      this._onClosed(ws, event);
    };
  }

  async _autoLogin() {
    const ws = this._ws;
    for (let retry = false; ; retry = true) {
      try {
        await this.login();
        return;
      } catch (error) {
        if (this._stopped || this._ws !== ws || error.code === 'closed' || error.code === 'not-connected') return;
        // A token refused (expired meanwhile, revoked key, ...): a fresh one may do, once.
        if (error.code === 1003 && this.getToken && !retry) continue;
        this._emit('error', { error, code: error.code, codeMsg: error.codeMsg });
        if (FATAL_LOGIN_CODES.has(error.code)) {
          this.close(1000, 'login refused');
        } else {
          // Transient failure (timeout, server error, getToken): drop the socket, try again later.
          ws.close(4000, 'login failed');
          this._onClosed(ws, { code: 4000, reason: 'login failed', wasClean: false });
        }
        return;
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
      if (pending.onResponse) pending.onResponse(message.response);
      pending.resolve(message);
      return;
    }
    if (typeof cmd === 'string' && PUSH_COMMANDS.has(cmd)) {
      const data = (message.response && message.response.data) || {};
      const mark = cmd === 'msg' ? this._track(data, seq) : NO_MARK;
      this._emit('push', { cmd, seq, response: message.response, duplicate: mark.duplicate });
      if (mark.duplicate) return;
      this._emit(cmd, {
        from: data.from,
        msg: data.msg,
        type: data.type,
        target: data.target,
        seq,
        stream: data.stream,
        epoch: data.epoch,
        offset: data.offset,
        missed: mark.missed,
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
    this._cancelRefresh();
    this._tokenExp = null;
    // A catch-up cut short: the next login recovers from what did arrive.
    this._catchUp = null;
    for (const name of STREAMS) if (this._streams[name]) this._streams[name].top = null;
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
    // Several nodes: each attempt goes to the next one (a node that closed with 1001 is
    // going away; one that refused the connection is down).
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    this.url = this.urls[this._urlIndex];
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs, url: this.url });
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
          throw refusal('heartbeat', res.response);
        }
      } catch (error) {
        if (this._ws !== ws || !ws || this._stopped) return;
        this._emit('error', { error, code: error.code, codeMsg: error.codeMsg });
        // An unanswered or refused heartbeat means the session is gone: start over. (4002, as
        // 4001 is the server's "token expired".)
        ws.close(4002, 'heartbeat failed');
        this._onClosed(ws, { code: 4002, reason: 'heartbeat failed', wasClean: false });
      }
    }, this.heartbeatMs);
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }
}

export default ImgateClient;
