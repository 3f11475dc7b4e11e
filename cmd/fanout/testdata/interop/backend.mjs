// An application backend for Fanout's HTTP hooks (-proxy-*-url), as an
// Express app would hold its sessions and rules. It listens on loopback,
// prints its port on the first line, and implements:
//   /connect    a "Cookie: session=ok" passes as user "alice", subscribed to
//               "news"; "session=slow" passes only after POST /release; else 401
//   /subscribe  channels under "secret:" are refused (code 403)
//   /publish    publishes {"by":user,"text":data}; on "slow:" channels it
//               answers only after POST /release (a backend that hangs)
//   /rpc        method "add" sums data.a and data.b; others are refused
//   /refresh    extends the session by 60 s
//   POST /delay {"ms":N} makes every /connect answer N ms late (a slow backend,
//               for bench/scripts/hooks.sh); 0 puts it back
//   /webhook    lifecycle events (-webhook-url): the X-Fanout-Signature is
//               checked against the raw body with WEBHOOK_SECRET (default
//               "webhook-s3cret"); a bad one is answered 401 and counted.
//               POST /webhook/fail {"n":2} answers the next 2 with 500.
//               GET /webhooks lists the batches received and the counts.
// Each request's body is kept; GET /seen lists them.
import crypto from 'node:crypto';
import express from 'express';

const app = express();
app.use(express.json({ verify: (req, _res, buf) => { req.rawBody = buf; } }));
const seen = [];
const held = []; // answers waiting for POST /release
app.use((req, _res, next) => { if (req.method === 'POST') seen.push({ path: req.path, body: req.body }); next(); });

let connectDelayMs = 0;
app.post('/delay', (req, res) => { connectDelayMs = req.body.ms; res.json({}); });

app.post('/connect', (req, res) => {
  const cookie = (req.body.headers || {}).Cookie;
  const allow = () => res.json({ result: { user: 'alice', info: { name: 'Alice' }, channels: ['news'] } });
  if (cookie === 'session=ok' && connectDelayMs > 0) setTimeout(allow, connectDelayMs);
  else if (cookie === 'session=ok') allow();
  else if (cookie === 'session=slow') held.push(allow);
  else res.status(401).json({ error: { code: 401, message: 'no session' } });
});

app.post('/subscribe', (req, res) => {
  if (req.body.channel.startsWith('secret:')) {
    res.json({ error: { code: 403, message: 'not a member of ' + req.body.channel } });
    return;
  }
  res.json({ result: {} });
});

app.post('/publish', (req, res) => {
  const answer = () => res.json({ result: { data: { by: req.body.user, text: req.body.data } } });
  if (req.body.channel.startsWith('slow:')) held.push(answer);
  else answer();
});
app.get('/held', (_req, res) => res.json(held.length));
app.post('/release', (_req, res) => { held.splice(0).forEach((f) => f()); res.json({}); });

app.post('/rpc', (req, res) => {
  if (req.body.method !== 'add') {
    res.json({ error: { code: 404, message: 'no method ' + req.body.method } });
    return;
  }
  res.json({ result: { data: { sum: req.body.data.a + req.body.data.b } } });
});

app.post('/refresh', (_req, res) => {
  res.json({ result: { expire_at: Math.floor(Date.now() / 1000) + 60 } });
});

const webhookSecret = process.env.WEBHOOK_SECRET || 'webhook-s3cret';
const webhooks = { batches: [], failed: 0, badSignature: 0, failNext: 0 };
app.post('/webhook/fail', (req, res) => { webhooks.failNext = req.body.n; res.json({}); });
app.post('/webhook', (req, res) => {
  const want = 'sha256=' + crypto.createHmac('sha256', webhookSecret).update(req.rawBody).digest('hex');
  const got = req.get('X-Fanout-Signature') || '';
  if (got.length !== want.length || !crypto.timingSafeEqual(Buffer.from(got), Buffer.from(want))) {
    webhooks.badSignature++;
    res.status(401).json({});
    return;
  }
  if (webhooks.failNext > 0) {
    webhooks.failNext--;
    webhooks.failed++;
    res.status(500).json({});
    return;
  }
  webhooks.batches.push({ id: req.body.id, events: req.body.events });
  res.json({});
});
app.get('/webhooks', (_req, res) => res.json(webhooks));

app.get('/seen', (_req, res) => res.json(seen));

const server = app.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.stdin.on('end', () => process.exit(0)); // the Go test ended
process.stdin.resume();
