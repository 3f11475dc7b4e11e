// Runs fanout.js (the browser client, unchanged) under Node over the ws
// package: N clients subscribe to one channel and keep reconnecting on their
// own while the Go test kills, drains and restarts servers.
// Usage: node reconnect.mjs URL CLIENTS CHANNEL BASE_MS MAX_MS
// Writes JSON lines to stdout: {event:'ready'} once every client is
// subscribed; {event:'reconnecting', client, attempt, delay, code, reason, t}
// and {event:'connected', client, t} as they happen (t: ms since start);
// after a line "expect N" on stdin, once every client holds offsets 1..N,
// {event:'report', offsets: [[...] per client], gaps, refused} and exits.
// Run by cmd/fanout's reconnect tests.
import fs from 'node:fs';
import WebSocket from 'ws';

const [url, clients, channel, base, max] = process.argv.slice(2);
const t0 = Date.now();
const out = (o) => process.stdout.write(JSON.stringify({ ...o, t: Date.now() - t0 }) + '\n');
const fail = (msg) => { console.error('FAIL:', msg); process.exit(1); };
setTimeout(() => fail('timed out after 90 s'), 90000).unref();

// fanout.js is a browser ES module: import its source as one.
const src = fs.readFileSync(new URL('../../web/fanout.js', import.meta.url), 'utf8');
const { Fanout } = await import('data:text/javascript,' + encodeURIComponent(src));

let refused = 0; // upgrades answered with an HTTP error (503 and the like)

// NodeWebSocket is the adapter fanout.js needs under Node: ws emits 'error'
// events that a browser socket reports only through onclose, and it shows
// a refused upgrade's response, whose Retry-After fanout.js honours.
class NodeWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols);
    this.on('error', () => {}); // onclose follows with 1006
    this.on('unexpected-response', (req, res) => {
      refused++;
      this.retryAfter = res.headers['retry-after'];
      res.resume();
      this.terminate(); // a close with 1006, as in a browser
    });
  }
}

const fos = [];
const offsets = [];
let gaps = 0;
for (let i = 0; i < Number(clients); i++) {
  const fo = new Fanout(url, { WebSocket: NodeWebSocket, baseDelay: Number(base), maxDelay: Number(max) });
  offsets.push([]);
  fo.on('message', (m) => offsets[i].push(m.offset));
  fo.on('gap', () => gaps++);
  fo.on('error', (e) => out({ event: 'error', client: i, reason: e.reason }));
  fo.on('status', (s) => {
    if (s.state === 'reconnecting' && s.delay !== undefined) {
      out({ event: 'reconnecting', client: i, attempt: s.attempt, delay: s.delay, code: s.code, reason: s.reason, retryAfter: Number(s.retryAfter ?? 0) });
    } else if (s.state === 'connected') {
      out({ event: 'connected', client: i });
    }
  });
  fo.connect();
  fos.push(fo);
}
await Promise.all(fos.map((fo) => fo.subscribe(channel)));
out({ event: 'ready' });

let want = null;
let buffered = '';
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  const m = /expect (\d+)\n/.exec(buffered);
  if (m) want = Number(m[1]);
});
for (;;) {
  if (want !== null && offsets.every((o) => o.length > 0 && o[o.length - 1] >= want)) break;
  await new Promise((r) => setTimeout(r, 20));
}
fos.forEach((fo) => fo.disconnect());
out({ event: 'report', offsets, gaps, refused });
process.exit(0);
