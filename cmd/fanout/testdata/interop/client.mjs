// Interop check with Node's `ws` package: broadcast on /ws, echo on /echo,
// ping/pong and a clean 1000 close, with permessage-deflate negotiated (the
// Go test counts the compressed frames on the wire).
// Usage: node client.mjs ws://127.0.0.1:PORT
import WebSocket from 'ws';

const base = process.argv[2];
const fail = (msg) => { console.error('FAIL:', msg); process.exit(1); };
setTimeout(() => fail('timed out after 20 s'), 20000).unref();

const open = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, { perMessageDeflate: true });
  ws.once('open', () => {
    if (!ws.extensions.includes('permessage-deflate')) reject(new Error(`extensions "${ws.extensions}"`));
    resolve(ws);
  });
  ws.once('error', reject);
});
const next = (ws) => new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data, isBinary })));
const closed = (ws) => new Promise((resolve) => ws.once('close', (code) => resolve(code)));

async function broadcast() {
  const clients = await Promise.all([0, 1, 2].map(() => open(base + '/ws')));
  const got = clients.map(() => []);
  clients.forEach((ws, i) => ws.on('message', (data, isBinary) => got[i].push((isBinary ? 'bin:' : 'txt:') + data.toString('hex'))));
  const want = [];
  for (const [i, ws] of clients.entries()) {
    const text = `hello from node ${i} ✓`;
    const bin = Buffer.from([i, 0, 255, 254]);
    ws.send(text);
    ws.send(bin);
    want.push('txt:' + Buffer.from(text).toString('hex'), 'bin:' + bin.toString('hex'));
  }
  const json = feed(2000); // compressed once by the server for all three
  clients[0].send(json);
  want.push('txt:' + Buffer.from(json).toString('hex'));
  const deadline = Date.now() + 10000;
  while (got.some((g) => g.length < want.length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  for (const [i, g] of got.entries()) {
    if (g.length !== want.length || !want.every((w) => g.includes(w))) fail(`client ${i} got ${g.length} messages: ${g}`);
  }
  await Promise.all(clients.map((ws) => { const c = closed(ws); ws.close(1000); return c; }));
}

// feed is a JSON message of about n bytes, like a score or price feed.
const feed = (n) => {
  const rows = [];
  for (let i = 0; JSON.stringify(rows).length < n; i++) rows.push({ team: `t${i % 40}`, score: (i * 7) % 101 });
  return JSON.stringify({ channel: 'scores', data: rows });
};

async function echo() {
  const ws = await open(base + '/echo');
  const big = Buffer.alloc(60 * 1024, 7);
  ws.send(big);
  let m = await next(ws);
  if (!m.isBinary || !Buffer.from(m.data).equals(big)) fail('60 KiB binary echo differs');
  const json = feed(3000); // compressed both ways
  ws.send(json);
  m = await next(ws);
  if (m.isBinary || m.data.toString() !== json) fail('compressed JSON echo differs');
  const text = 'héllo €𝄞';
  ws.send(text);
  m = await next(ws);
  if (m.isBinary || m.data.toString() !== text) fail(`text echo: ${m.data}`);
  const pong = new Promise((resolve) => ws.once('pong', resolve));
  ws.ping(Buffer.from('node-ping'));
  const p = await pong;
  if (p.toString() !== 'node-ping') fail(`pong payload ${p}`);
  const done = closed(ws);
  ws.close(1000, 'bye');
  const code = await done;
  if (code !== 1000) fail(`close code ${code}, want 1000`);
}

await broadcast();
await echo();
console.log('node ws interop: ok');
process.exit(0);
