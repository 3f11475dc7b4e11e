// Runs fanout.js (the browser client, unchanged) under Node over the ws
// package against a server with -proxy-rpc-url: it refreshes its token
// through the refreshToken callback when told it is expiring, and calls an
// rpc before and after the first token's exp.
// Usage: node refresh.mjs URL FRESH_TOKEN FIRST_EXP (Unix seconds)
// Writes one JSON line: {refreshed, before, after, reconnects}.
// Run by cmd/fanout's hook tests.
import { Fanout, QuietWebSocket as NodeWebSocket, fail, failAfter } from './fanoutjs.mjs';

const [url, fresh, firstExp] = process.argv.slice(2);
failAfter(30);

let reconnects = 0;
const refreshed = new Promise((resolve) => {
  const fo = new Fanout(url, { WebSocket: NodeWebSocket, refreshToken: async () => fresh });
  fo.on('status', (s) => { if (s.state === 'reconnecting') reconnects++; });
  fo.on('error', (e) => fail('error event: ' + JSON.stringify(e)));
  fo.on('refreshed', (r) => resolve([fo, r.expires]));
  fo.connect();
});
const [fo, expires] = await refreshed;
const before = await fo.rpc('add', { a: 2, b: 3 });
const wait = Number(firstExp) * 1000 + 1500 - Date.now(); // past exp and a sweep tick
await new Promise((r) => setTimeout(r, Math.max(0, wait)));
const after = await fo.rpc('add', { a: 40, b: 2 });
process.stdout.write(JSON.stringify({ refreshed: expires, before, after, reconnects }) + '\n');
fo.disconnect();
process.exit(0);
