// Runs fanout.js (the browser client, unchanged) under Node over the ws
// package against a server with -private-channels 'private:*': it
// subscribes with a channel token from a callback, resumes with a fresh
// one after the server closes it with 4000, drops the channel when the
// server unsubscribes it, and stays closed after the default 4500.
// Usage: node users.mjs URL API_BASE API_KEY USER_TOKEN CHANNEL_TOKEN
// Writes one JSON line. Run by cmd/fanout's user tests.
import { Fanout, QuietWebSocket as NodeWebSocket, fail, failAfter } from './fanoutjs.mjs';

const [url, apiBase, apiKey, userToken, channelToken] = process.argv.slice(2);
failAfter(30);

const api = async (path, body) => {
  const r = await fetch(apiBase + path, {
    method: 'POST', headers: { 'X-API-Key': apiKey, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  if (r.status !== 200) fail(`${path}: ${r.status} ${await r.text()}`);
};
const once = (fo, type, pred = () => true) => new Promise((resolve) => {
  const off = fo.on(type, (e) => { if (pred(e)) { off(); resolve(e); } });
});

const fo = new Fanout(url + '?token=' + userToken, { WebSocket: NodeWebSocket, baseDelay: 100 });
const reconnects = [];
fo.on('status', (s) => { if (s.state === 'reconnecting' && s.code) reconnects.push(s.code); });
fo.on('error', (e) => fail('error event: ' + JSON.stringify(e)));
let tokenCalls = 0;
fo.connect();
await fo.subscribe('private:1', { token: async () => { tokenCalls++; return channelToken; } });

const resumed = once(fo, 'subscribed');
await api('/api/disconnect', { user: 'bob', code: 4000, reason: 'come back' });
await resumed;

const dropped = once(fo, 'unsubscribed');
await api('/api/unsubscribe', { user: 'bob', channel: 'private:1' });
const unsubscribed = await dropped;

const closed = once(fo, 'status', (s) => s.state === 'closed');
await api('/api/disconnect', { user: 'bob' });
const final = await closed;
await new Promise((r) => setTimeout(r, 500)); // a reconnect would have begun within baseDelay
process.stdout.write(JSON.stringify({
  tokenCalls, unsubscribed: unsubscribed.channel, position: fo.position('private:1') ?? null,
  reconnects, final, last: fo.status.state,
}) + '\n');
process.exit(0);
