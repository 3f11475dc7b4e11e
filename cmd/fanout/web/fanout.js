// fanout.js: browser client for Fanout's channels protocol (v1). No
// dependencies, no build step: an ES module served by `fanout` at /fanout.js.
//
//   import { Fanout } from '/fanout.js';
//   const fo = new Fanout();              // ws(s)://<this host>/ws, subprotocol "fanout"
//   fo.on('status', (s) => ...);          // {state, attempt, delay, code, reason}
//   fo.on('message', (m) => ...);         // {channel, offset, epoch, data, recovered}
//   fo.on('gap', (g) => ...);             // {channel, since, first, epoch, reason, reset, local}
//   fo.on('join', (j) => ...);            // {channel, member: {client, user, info}} (presence channels)
//   fo.on('leave', (l) => ...);           // {channel, member}
//   fo.subscribe('lobby');                // Promise<{channel, epoch, offset}>
//   fo.publish('lobby', {name: 'ann', text: 'hi'});   // Promise<{channel, offset}>
//   fo.connect();
//
// new Fanout(url?, options?)
//   url      WebSocket URL; default ws: or wss: to location.host + '/ws'.
//   options  baseDelay (ms, default 1000) and maxDelay (ms, default 30000): reconnect
//            backoff (see connect()); connectTimeout (ms, default 10000): give up on an
//            opening socket; requestTimeout (ms, default 10000): reject a
//            subscribe or publish with no reply; protocols (default ['fanout']);
//            WebSocket (constructor, default globalThis.WebSocket);
//            refreshToken (async () => a fresh JWT): called when the server says
//            the token is expiring; the new token is sent ({"op":"refresh"}) over
//            the open connection and replaces a "bearer.<jwt>" protocol entry
//            and a token= URL parameter for later reconnects.
//
// Methods
//   connect()      open the socket and keep it open: after any unwanted close it
//                  reconnects by itself with full-jitter exponential backoff:
//                  before attempt n (1, 2, ...) it waits a delay drawn uniformly
//                  from [0, min(maxDelay, baseDelay*2^(n-1))], so clients that
//                  lost the same server spread out instead of returning together.
//                  The attempt count resets once a socket opens. Two hints from
//                  the server take precedence, each capped at maxDelay: a close
//                  reason holding "retry-ms=N" (a draining server's 1012 Service
//                  Restart) makes the window [0, N]; a refused upgrade's
//                  Retry-After (seconds) is waited out first, then a random
//                  delay of up to a second (the server spread its answers over
//                  the seconds ahead, one second each; a growing window would
//                  undo that). Browsers hide a refused upgrade's headers; a WebSocket
//                  constructor that sets the socket's retryAfter property from
//                  them (as cmd/fanout's Node adapter over the ws package does)
//                  makes it count.
//                  A close with a code in 4500-4999 (the server's /api/disconnect
//                  default, 4500) is final: state 'closed', no reconnect.
//   disconnect()   close on purpose: state 'closed', no reconnect until connect().
//                  Subscriptions and their positions are kept for the next connect().
//   subscribe(channel, {since, epoch, token}?)   add a channel. It is (re)sent on every
//                  connect with the last offset and epoch seen, so the server
//                  replays what was missed. Passing both since and epoch resumes
//                  from a position saved earlier (see position()). token is a
//                  channel token (a JWT with the channel's "channel" claim and the
//                  user's "sub", required for -private-channels), or a function
//                  (channel) => token or a Promise of one, called before every
//                  (re)send, so a resume after a reconnect can use a fresh one.
//                  Resolves on the first "subscribed" reply; rejects on an "error"
//                  reply (the channel is then dropped), an invalid name or a timeout.
//                  An error whose reason holds "retry-ms=N" (a node replaying
//                  history for many subscribers at once) is not final: the
//                  subscribe is sent again after a random delay up to N.
//   unsubscribe(channel)   drop a channel (its position is forgotten). The server
//                  may drop one too (POST /api/unsubscribe): an 'unsubscribed' event.
//   publish(channel, data) send any JSON value. Resolves with the server's reply
//                  {channel, offset}; rejects when not connected, on an "error"
//                  reply, on a timeout, or when the socket closes before the reply
//                  (the message may or may not have been published then).
//   rpc(method, data)  ask the application's backend (-proxy-rpc-url); resolves
//                  with its answer's data, rejects on an "error" reply or a timeout.
//   presence(channel)  a presence channel's members on every node (-presence-channels):
//                  resolves with {members: [{client, user, info}], truncated}.
//   presenceStats(channel)  resolves with {clients, users}.
//   position(channel)  {offset, epoch} last seen, or undefined.
//   on(type, fn)   add a listener; returns a function that removes it.
//   status         the last status object.
//
// Events
//   status   {state: 'connecting'|'connected'|'reconnecting'|'closed', attempt,
//            delay (ms until the next attempt, when reconnecting), code, reason
//            (of the close that caused it), retryAfter (s, of a refused upgrade,
//            where the WebSocket shows it)}.
//   message  {channel, offset, epoch, data, recovered}. Delivered once per offset, in
//            order: a message whose offset is <= the last one seen on its channel is
//            dropped, and so is one that arrives before the channel's "subscribed"
//            reply on the current connection (it was published before the subscribe,
//            so the reply's offset or the replayed history covers it). recovered is
//            true for history replayed by a resubscribe. offset is undefined for a
//            message published straight into the broker (a plain Redis PUBLISH):
//            it has no place in the channel's order and cannot be recovered.
//   gap      {channel, since, first, epoch, reason, reset, local}. Messages after
//            `since` are lost: up to first-1 when the history no longer reaches back;
//            or, when reset is true, any of them, because the channel's history was
//            replaced (new epoch: server or broker restart, or expiry) and offsets
//            start again at first (in epoch). local is true when the client saw
//            offsets skip without a notice from the server.
//   subscribed  {channel, epoch, offset} on every (re)subscribe.
//   unsubscribed {channel} the server removed this client from the channel; it is
//            dropped as by unsubscribe().
//   expiring {in} seconds until the token expires (refreshToken, if given, runs).
//   refreshed {expires} the token or session now expires then (Unix seconds).
//   join, leave  {channel, member: {client, user, info}}: a member of a presence
//            channel this client subscribes to joined or left (on any node), in
//            order per member; not on quiet channels.
//   error    {op, channel, id, reason} from the server, or {reason} for a frame
//            this client could not use.
//
// Frames that are not JSON objects with a known "type" are ignored (a plain /ws
// connection is also in the server's chat room, whose raw messages it relays).

const channelName = /^[A-Za-z0-9_\-.:@/=]{1,128}$/;

export class Fanout {
  constructor(url, options = {}) {
    this.url = url ?? defaultURL();
    this.baseDelay = options.baseDelay ?? 1000;
    this.maxDelay = Math.max(this.baseDelay, options.maxDelay ?? 30000);
    this.connectTimeout = options.connectTimeout ?? 10000;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.protocols = options.protocols ?? ['fanout'];
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.refreshToken = options.refreshToken;
    this.status = { state: 'closed', attempt: 0 };
    this._listeners = new Map();
    this._channels = new Map(); // name -> {offset, epoch, recoverUpTo, live, ready, waiters}
    this._pending = new Map();  // request id -> {resolve, reject, timer, channel}
    this._nextID = 1;
    this._ws = null;
    this._wanted = false;       // connect() called and no disconnect() since
    this._attempt = 0;
    this._timer = null;
  }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type).delete(fn);
  }

  connect() {
    this._wanted = true;
    if (this._ws) return;
    clearTimeout(this._timer);
    this._open();
  }

  disconnect() {
    this._wanted = false;
    clearTimeout(this._timer);
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000, 'client disconnect');
    this._failPending(new Error('fanout: disconnected'));
    this._setStatus({ state: 'closed', attempt: 0, code: 1000, reason: 'client disconnect' });
  }

  subscribe(channel, { since, epoch, token } = {}) {
    if (!channelName.test(channel)) {
      return Promise.reject(new Error(`fanout: invalid channel name ${JSON.stringify(channel)}`));
    }
    let ch = this._channels.get(channel);
    if (!ch) {
      const resume = epoch !== undefined && since !== undefined;
      ch = { offset: resume ? since : 0, epoch: resume ? epoch : null, recoverUpTo: 0, live: false, ready: false, waiters: [], token };
      this._channels.set(channel, ch);
      if (this._isOpen()) this._sendSubscribe(channel, ch);
    }
    if (ch.ready) return Promise.resolve({ channel, epoch: ch.epoch, offset: ch.offset });
    return new Promise((resolve, reject) => ch.waiters.push({ resolve, reject }));
  }

  unsubscribe(channel) {
    const ch = this._channels.get(channel);
    if (!ch) return;
    this._channels.delete(channel);
    ch.waiters.forEach((w) => w.reject(new Error('fanout: unsubscribed')));
    if (this._isOpen()) this._send({ op: 'unsubscribe', channel, id: this._nextID++ });
  }

  publish(channel, data) {
    if (!this._isOpen()) return Promise.reject(new Error('fanout: not connected'));
    return this._request({ op: 'publish', channel, data });
  }

  rpc(method, data) {
    if (!this._isOpen()) return Promise.reject(new Error('fanout: not connected'));
    return this._request({ op: 'rpc', method, data });
  }

  presence(channel) {
    if (!this._isOpen()) return Promise.reject(new Error('fanout: not connected'));
    return this._request({ op: 'presence', channel });
  }

  presenceStats(channel) {
    if (!this._isOpen()) return Promise.reject(new Error('fanout: not connected'));
    return this._request({ op: 'presence_stats', channel });
  }

  position(channel) {
    const ch = this._channels.get(channel);
    return ch ? { offset: ch.offset, epoch: ch.epoch } : undefined;
  }

  // --- internals ---

  _emit(type, value) {
    for (const fn of this._listeners.get(type) ?? []) {
      try { fn(value); } catch (err) { setTimeout(() => { throw err; }); } // report, keep going
    }
  }

  _setStatus(s) {
    this.status = s;
    this._emit('status', s);
  }

  _isOpen() {
    return this._ws !== null && this._ws.readyState === 1;
  }

  _open() {
    this._setStatus({ state: this._attempt === 0 ? 'connecting' : 'reconnecting', attempt: this._attempt });
    let ws;
    try {
      ws = new this.WebSocket(this.url, this.protocols);
    } catch (err) { // bad URL: retrying cannot help
      this._wanted = false;
      this._setStatus({ state: 'closed', attempt: 0, reason: String(err) });
      return;
    }
    this._ws = ws;
    const openTimer = setTimeout(() => ws.close(), this.connectTimeout);
    ws.onopen = () => {
      clearTimeout(openTimer);
      if (ws !== this._ws) return;
      this._attempt = 0;
      this._setStatus({ state: 'connected', attempt: 0 });
      for (const [name, ch] of this._channels) this._sendSubscribe(name, ch);
    };
    ws.onmessage = (ev) => {
      if (ws === this._ws) this._receive(ev.data);
    };
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      if (ws !== this._ws) return; // replaced or closed by disconnect()
      this._ws = null;
      this._failPending(new Error(`fanout: connection closed (${ev.code})`));
      if (!this._wanted) return;
      if (ev.code >= 4500 && ev.code <= 4999) { // the server said do not come back
        this._wanted = false;
        this._setStatus({ state: 'closed', attempt: 0, code: ev.code, reason: ev.reason });
        return;
      }
      this._attempt++;
      const delay = this._backoff(ev.reason, ws.retryAfter);
      this._setStatus({ state: 'reconnecting', attempt: this._attempt, delay, code: ev.code, reason: ev.reason, retryAfter: ws.retryAfter });
      this._timer = setTimeout(() => this._open(), delay);
    };
  }

  // _backoff is the wait before the next attempt (see connect()): full
  // jitter, so siblings never share a schedule.
  _backoff(reason, retryAfter) {
    let window = Math.min(this.maxDelay, this.baseDelay * 2 ** (this._attempt - 1));
    const hint = retryHint(reason);
    if (hint !== undefined) window = Math.min(this.maxDelay, hint);
    const after = Number.parseInt(retryAfter, 10); // delta-seconds; a date is not worth the parse
    if (after > 0) { // the server has booked this client a second of its own: come back within it
      return Math.round(Math.min(this.maxDelay, after * 1000) + Math.random() * Math.min(window, 1000));
    }
    return Math.round(Math.random() * window);
  }

  _send(msg) {
    this._ws.send(JSON.stringify(msg));
  }

  _request(msg, channel) {
    const id = this._nextID++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        const err = new Error(`fanout: no reply to ${msg.op} within ${this.requestTimeout} ms`);
        err.timeout = true;
        reject(err);
      }, this.requestTimeout);
      this._pending.set(id, { resolve, reject, timer, channel });
      this._send({ ...msg, id });
    });
  }

  _failPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  async _sendSubscribe(channel, ch) {
    ch.live = false; // until this connection's "subscribed" reply
    const msg = { op: 'subscribe', channel };
    const ws = this._ws;
    const current = () => this._ws === ws && this._isOpen() && this._channels.get(channel) === ch;
    if (ch.token !== undefined) {
      try {
        msg.token = typeof ch.token === 'function' ? await ch.token(channel) : ch.token;
      } catch (err) {
        if (this._channels.get(channel) === ch) this._channels.delete(channel);
        this._emit('error', { op: 'subscribe', channel, reason: String(err.message ?? err) });
        ch.waiters.forEach((w) => w.reject(err));
        ch.waiters = [];
        return;
      }
      if (!current()) return; // the socket changed meanwhile: resent on reconnect
    }
    if (ch.epoch !== null) {
      msg.since = ch.offset;
      msg.epoch = ch.epoch;
    }
    this._request(msg, channel).catch((err) => {
      const hint = retryHint(err.serverError?.reason);
      if (hint !== undefined) { // the node is busy replaying history: ask again later
        const again = () => {
          if (current()) this._sendSubscribe(channel, ch);
        };
        setTimeout(again, Math.random() * Math.min(this.maxDelay, hint));
        return;
      }
      if (err.serverError) {
        if (this._channels.get(channel) === ch) this._channels.delete(channel);
      } else if (!err.timeout) {
        return; // the connection dropped: resent on reconnect
      }
      const waiters = ch.waiters;
      ch.waiters = [];
      waiters.forEach((w) => w.reject(err));
    });
  }

  _receive(raw) {
    if (typeof raw !== 'string') return;
    let m;
    try { m = JSON.parse(raw); } catch { return; }
    if (m === null || typeof m !== 'object' || typeof m.type !== 'string') return;
    const p = this._pending.get(m.id);
    switch (m.type) {
      case 'message': return this._message(m);
      case 'gap': return this._gap(m);
      case 'subscribed': {
        const ch = this._channels.get(m.channel);
        if (!ch || typeof m.epoch !== 'string' || !Number.isInteger(m.offset)) break;
        if (ch.epoch === null) {
          ch.offset = m.offset; // fresh: live messages follow the current offset
        } else if (m.epoch !== ch.epoch) {
          // A recovering subscribe met a new epoch: offsets restarted. The server's
          // gap notice follows; count again from zero.
          ch.offset = 0;
        }
        ch.epoch = m.epoch;
        ch.recoverUpTo = m.offset;
        ch.live = true;
        this._emit('subscribed', { channel: m.channel, epoch: m.epoch, offset: m.offset });
        if (!ch.ready) {
          ch.ready = true;
          ch.waiters.forEach((w) => w.resolve({ channel: m.channel, epoch: m.epoch, offset: m.offset }));
          ch.waiters = [];
        }
        break;
      }
      case 'error':
        if (!p) this._emit('error', m);
        break;
      case 'unsubscribed': { // without a request: the server dropped the channel
        const ch = this._channels.get(m.channel);
        if (p || !ch) break;
        this._channels.delete(m.channel);
        ch.waiters.forEach((w) => w.reject(new Error('fanout: unsubscribed by the server')));
        ch.waiters = [];
        this._emit('unsubscribed', { channel: m.channel });
        break;
      }
      case 'expiring':
        this._emit('expiring', { in: m.in });
        if (this.refreshToken) this._refresh();
        break;
      case 'refreshed':
        this._emit('refreshed', { expires: m.expires });
        break;
      case 'join':
      case 'leave':
        if (this._channels.has(m.channel)) this._emit(m.type, { channel: m.channel, member: m.member });
        break;
    }
    if (p && ['error', 'subscribed', 'published', 'unsubscribed', 'rpc', 'refreshed', 'presence', 'presence_stats'].includes(m.type)) {
      this._pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.type === 'error') {
        const err = new Error(`fanout: ${m.op ?? 'request'} ${m.channel ?? ''}: ${m.reason}`);
        err.serverError = m;
        this._emit('error', m);
        p.reject(err);
      } else {
        p.resolve(m.type === 'published' ? { channel: m.channel, offset: m.offset }
          : m.type === 'rpc' ? m.data
            : m.type === 'refreshed' ? { expires: m.expires }
              : m.type === 'presence' ? { members: m.members, truncated: m.truncated === true }
                : m.type === 'presence_stats' ? { clients: m.clients, users: m.users }
                  : { channel: m.channel, epoch: m.epoch, offset: m.offset });
      }
    }
  }

  // _refresh asks the application for a fresh token and sends it; the
  // next reconnect offers it too. A failure is reported as an error event:
  // the server closes the connection at exp and the reconnect uses
  // whatever token the options hold.
  async _refresh() {
    try {
      const token = await this.refreshToken();
      this.protocols = this.protocols.map((p) => (p.startsWith('bearer.') ? 'bearer.' + token : p));
      const u = new URL(this.url);
      if (u.searchParams.has('token')) {
        u.searchParams.set('token', token);
        this.url = u.toString();
      }
      if (this._isOpen()) await this._request({ op: 'refresh', token });
    } catch (err) {
      if (!err.serverError) this._emit('error', { op: 'refresh', reason: String(err.message ?? err) }); // a server's error was emitted
    }
  }

  _message(m) {
    const ch = this._channels.get(m.channel);
    if (!ch || !ch.live) return;
    if (m.offset === undefined) { // published into the broker from outside: no offset, no history
      this._emit('message', { channel: m.channel, offset: undefined, epoch: ch.epoch, data: m.data, recovered: false });
      return;
    }
    if (!Number.isInteger(m.offset) || m.offset <= ch.offset) return;
    if (m.offset > ch.offset + 1) {
      this._emit('gap', {
        channel: m.channel, since: ch.offset, first: m.offset, reset: false, local: true,
        reason: `offsets ${ch.offset + 1}..${m.offset - 1} never arrived`,
      });
    }
    ch.offset = m.offset;
    this._emit('message', {
      channel: m.channel, offset: m.offset, epoch: ch.epoch, data: m.data,
      recovered: m.offset <= ch.recoverUpTo,
    });
  }

  _gap(m) {
    const ch = this._channels.get(m.channel);
    if (!ch || !ch.live) return;
    const first = Number.isInteger(m.first) ? m.first : undefined;
    // With an epoch, offsets went back (a broker restart, an expired
    // channel): adopt it and count again from first.
    const reset = typeof m.epoch === 'string' || first === undefined;
    if (reset) {
      if (typeof m.epoch === 'string') ch.epoch = m.epoch;
      ch.offset = first === undefined ? 0 : first - 1;
    } else if (first - 1 > ch.offset) {
      ch.offset = first - 1; // lost: do not report them again as skipped
    }
    this._emit('gap', {
      channel: m.channel, since: m.since, first, epoch: ch.epoch,
      reason: m.reason, reset, local: false,
    });
  }
}

// retryHint is the N of a server's "retry-ms=N" (in a close reason or an
// error reply), or undefined.
function retryHint(text) {
  const m = /(?:^|[\s;,])retry-ms=(\d+)/.exec(text ?? '');
  return m ? Number(m[1]) : undefined;
}

function defaultURL() {
  const { protocol, host } = globalThis.location;
  return `${protocol === 'https:' ? 'wss:' : 'ws:'}//${host}/ws`;
}
