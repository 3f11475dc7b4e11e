// Runs fanout.js (the browser client, unchanged) under Node over the ws
// package against a server with -presence-channels 'room:*': ann sees bob
// join, both ask for the members and their counts, and ann sees bob leave.
// Usage: node presence.mjs URL ANN_TOKEN BOB_TOKEN
// Writes one JSON line: {joined, members, stats, left}.
// Run by cmd/fanout's presence tests.
import { Fanout, QuietWebSocket as NodeWebSocket, fail, failAfter } from './fanoutjs.mjs';

const [url, annToken, bobToken] = process.argv.slice(2);
failAfter(30);

const client = (token) => {
  const fo = new Fanout(url + '?token=' + token, { WebSocket: NodeWebSocket });
  fo.on('error', (e) => fail('error event: ' + JSON.stringify(e)));
  fo.connect();
  return fo;
};
const next = (fo, type, user) => new Promise((resolve) => {
  const off = fo.on(type, (e) => { if (e.member.user === user) { off(); resolve(e); } });
});

const ann = client(annToken);
await ann.subscribe('room:1');
const joined = next(ann, 'join', 'bob');
const bob = client(bobToken);
await bob.subscribe('room:1');
const join = await joined;
const { members } = await bob.presence('room:1');
const stats = await ann.presenceStats('room:1');
const left = next(ann, 'leave', 'bob');
bob.disconnect();
const leave = await left;
process.stdout.write(JSON.stringify({ joined: join.member, members, stats, left: leave.member }) + '\n');
ann.disconnect();
process.exit(0);
