// End-to-end test of the demo page and fanout.js in two headless Chromium
// pages. It owns the server: starts the fanout binary on a free loopback
// port, SIGKILLs it mid-test and restarts it on the same port.
// Usage: node e2e.mjs <fanout binary> <output dir for screenshots and server.log> [cert.pem key.pem]
// With a certificate and key the server serves https and wss (self-signed: the
// browsers and this script's fetches skip verification).
// Run by TestBrowser_ChatAndRecovery (cmd/fanout/e2e_test.go).
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const [bin, outDir, certFile, keyFile, tlsMax] = process.argv.slice(2); // tlsMax: '1.2' caps Chromium at TLS 1.2
const scheme = certFile ? 'https' : 'http';
if (certFile) process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the test's self-signed certificate
if (!bin || !outDir) {
  console.error('usage: node e2e.mjs <fanout binary> <output dir>');
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const t0 = Date.now();
const log = (...args) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...args);
const wait = 10000; // ms, the bound on every single wait below

// --- the server process ---

let server = null; // the running child, if any
const serverLog = path.join(outDir, 'server.log');

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => srv.listen(0, '127.0.0.1', resolve).on('error', reject));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

let adminPort = 0; // the server's /metrics

async function startServer(port) {
  const out = fs.openSync(serverLog, 'a');
  adminPort = await freePort();
  const tlsArgs = certFile ? ['-tls-cert', certFile, '-tls-key', keyFile] : [];
  const child = spawn(bin, ['-addr', `127.0.0.1:${port}`, '-admin-addr', `127.0.0.1:${adminPort}`, ...tlsArgs], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  server = child;
  let exited = null;
  child.on('exit', (code, signal) => { exited = signal ?? code; });
  const deadline = Date.now() + wait;
  for (;;) { // until the page is served, which is what the browsers need
    if (exited !== null) throw new Error(`fanout exited (${exited}) at startup; see ${serverLog}`);
    try {
      const res = await fetch(`${scheme}://127.0.0.1:${port}/fanout.js`);
      if (res.ok) break;
      throw new Error(`GET /fanout.js: ${res.status}`);
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`fanout not serving /fanout.js after ${wait} ms: ${err.message}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  log(`fanout pid ${child.pid} serving 127.0.0.1:${port}`);
}

async function killServer() {
  const child = server;
  server = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await gone;
}

process.on('exit', () => server?.kill('SIGKILL'));

// --- page helpers ---

const messages = (page) => page.$$eval('#messages li.msg', (lis) => lis.map((li) => ({
  offset: Number(li.dataset.offset),
  name: li.querySelector('.name').textContent,
  text: li.querySelector('.text').textContent,
  recovered: li.classList.contains('recovered'),
})));

async function waitForMessage(page, label, text) {
  try {
    await page.waitForFunction((t) => [...document.querySelectorAll('#messages li.msg .text')]
      .some((e) => e.textContent === t), text, { timeout: wait });
  } catch {
    throw new Error(`page ${label} never showed ${JSON.stringify(text)}; it shows ${JSON.stringify(await messages(page))}`);
  }
}

async function waitForState(page, label, state, timeout = wait) {
  try {
    await page.waitForFunction((s) => document.getElementById('status').dataset.state === s, state, { timeout });
  } catch {
    const now = await page.$eval('#status', (e) => e.textContent);
    throw new Error(`page ${label} status never became ${state}; it is "${now}"`);
  }
}

async function send(page, label, text) {
  await page.fill('#text', text);
  await page.click('#send-button');
  try { // the box clears once the server acknowledged the publish
    await page.waitForFunction(() => document.getElementById('text').value === '', null, { timeout: wait });
  } catch {
    throw new Error(`page ${label}: publish of ${JSON.stringify(text)} not acknowledged; notice: ${await page.textContent('#notice')}`);
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// metric reads one counter from the server's Prometheus endpoint.
async function metric(name) {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

// --- the test ---

let browser = null;
const pages = {};

async function main() {
  const port = await freePort();
  const base = `${scheme}://127.0.0.1:${port}/`;
  await startServer(port);

  const args = tlsMax === '1.2' ? ['--ssl-version-max=tls1.2'] : [];
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
  const consoleErrors = [];
  for (const label of ['A', 'B']) {
    const ctx = await browser.newContext({ viewport: { width: 800, height: 640 }, ignoreHTTPSErrors: !!certFile });
    // Keep every WebSocket the page opens, to read what it negotiated.
    await ctx.addInitScript(() => {
      const Native = window.WebSocket;
      window.sockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) { super(...args); window.sockets.push(this); }
      };
    });
    const page = await ctx.newPage();
    page.setDefaultTimeout(wait);
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`${label}: ${m.text()}`); });
    page.on('pageerror', (err) => consoleErrors.push(`${label}: uncaught ${err.message}`));
    const res = await page.goto(base);
    check(res.ok(), `GET / on page ${label}: ${res.status()}`);
    check((res.headers()['content-security-policy'] ?? '').includes("default-src 'none'"), 'GET / lacks the Content-Security-Policy');
    pages[label] = page;
  }
  const { A, B } = pages;
  const channel = `e2e-${Date.now().toString(36)}`;
  for (const [page, label, name] of [[A, 'A', 'ann'], [B, 'B', 'bob']]) {
    await waitForState(page, label, 'connected');
    await page.fill('#channel', channel);
    await page.fill('#name', name);
    await page.click('#join-button');
    await page.waitForFunction(() => !document.getElementById('send-button').disabled, null, { timeout: wait });
  }
  log(`both pages joined ${channel}`);

  // 1. Chat both ways.
  await send(A, 'A', 'hello from ann');
  await waitForMessage(B, 'B', 'hello from ann');
  await send(B, 'B', 'hi ann, bob here <b>&amp;</b>');
  await waitForMessage(A, 'A', 'hi ann, bob here <b>&amp;</b>'); // shown as text, not markup
  await waitForMessage(A, 'A', 'hello from ann');
  await waitForMessage(B, 'B', 'hi ann, bob here <b>&amp;</b>');
  log('messages exchanged both ways');

  // 1b. The browser negotiated permessage-deflate, and a message long enough
  // to compress arrives intact (the server counts the compressed broadcast).
  for (const [page, label] of [[A, 'A'], [B, 'B']]) {
    const ext = await page.evaluate(() => window.sockets.at(-1).extensions);
    check(ext.includes('permessage-deflate') && ext.includes('server_no_context_takeover'), `page ${label} negotiated "${ext}"`);
  }
  const callsBefore = await metric('fanout_compress_calls_total');
  const long = 'compressible '.repeat(40) + 'end';
  await send(A, 'A', long);
  await waitForMessage(B, 'B', long);
  const calls = await metric('fanout_compress_calls_total');
  check(calls > callsBefore, `compress calls ${callsBefore} -> ${calls}: the long message went uncompressed`);
  check(await metric('fanout_handshakes_compressed_total') >= 2, 'fewer than 2 compressed handshakes');
  log(`both pages negotiated permessage-deflate; a ${long.length}-byte message arrived compressed (${calls - callsBefore} compress calls)`);

  // 2. Network drop on A: B publishes three messages; A gets exactly those when it reconnects.
  await A.evaluate(() => window.fanout.disconnect());
  await waitForState(A, 'A', 'closed');
  const before = (await messages(A)).length;
  const missed = ['missed 1', 'missed 2', 'missed 3'];
  for (const text of missed) await send(B, 'B', text);
  await waitForMessage(B, 'B', 'missed 3');
  check(await A.$eval('#status', (e) => e.dataset.state) === 'closed', 'A reconnected by itself after disconnect()');
  check((await messages(A)).length === before, 'A got messages while disconnected');
  await A.evaluate(() => window.fanout.connect());
  await waitForState(A, 'A', 'connected');
  await waitForMessage(A, 'A', 'missed 3');
  await send(B, 'B', 'live again'); // anything duplicated by the recovery would arrive before it
  await waitForMessage(A, 'A', 'live again');
  const tail = (await messages(A)).slice(before);
  check(JSON.stringify(tail.map((m) => m.text)) === JSON.stringify([...missed, 'live again']),
    `A after recovery shows ${JSON.stringify(tail.map((m) => m.text))}, want ${JSON.stringify([...missed, 'live again'])}`);
  check(tail.every((m, i) => i === 0 || m.offset === tail[i - 1].offset + 1), `recovered offsets not consecutive: ${tail.map((m) => m.offset)}`);
  check(JSON.stringify(tail.map((m) => m.recovered)) === '[true,true,true,false]', `recovered flags: ${tail.map((m) => m.recovered)}`);
  check(await A.$eval('#notice', (e) => e.hidden), `A shows a notice after an in-history recovery: ${await A.textContent('#notice')}`);
  log(`A recovered ${missed.length} messages (offsets ${tail.slice(0, 3).map((m) => m.offset)}) without duplicates`);

  // 3. Server killed: both pages back off; restarted on the same port: both come back by themselves.
  for (const page of [A, B]) {
    await page.evaluate(() => {
      window.statusLog = [];
      window.fanout.on('status', (s) => window.statusLog.push(s));
    });
  }
  await killServer();
  log('fanout killed (SIGKILL)');
  for (const [page, label] of [[A, 'A'], [B, 'B']]) {
    await waitForState(page, label, 'reconnecting');
    const text = await page.textContent('#status');
    check(/reconnecting \(attempt \d+, in \d+\.\d s\)/.test(text), `page ${label} status text "${text}"`);
  }
  // Let A fail a few attempts so the backoff shows, then restart.
  await A.waitForFunction(() => window.statusLog.filter((s) => s.state === 'reconnecting' && s.delay !== undefined).length >= 3, null, { timeout: wait });
  await startServer(port);
  for (const [page, label] of [[A, 'A'], [B, 'B']]) {
    // The attempt under way may have drawn a delay up to the backoff's
    // window (8 s or more after three failures): wait that out, then as usual.
    const pending = await page.evaluate(() => window.statusLog.findLast((s) => s.delay !== undefined)?.delay ?? 0);
    await waitForState(page, label, 'connected', pending + wait);
    try {
      await page.waitForFunction(() => document.getElementById('notice').dataset.kind === 'reset'
        && !document.getElementById('notice').hidden, null, { timeout: wait });
    } catch {
      throw new Error(`page ${label} shows no history-reset notice; notice: "${await page.textContent('#notice')}"`);
    }
  }
  const delays = (await A.evaluate(() => window.statusLog)).filter((s) => s.state === 'reconnecting' && s.delay !== undefined);
  log(`A's reconnect delays (ms): ${delays.map((s) => s.delay).join(', ')}`);
  for (const s of delays) {
    const cap = Math.min(30000, 1000 * 2 ** (s.attempt - 1)); // fanout.js's default backoff, full jitter
    check(s.delay >= 0 && s.delay <= cap, `attempt ${s.attempt} waited ${s.delay} ms, want within [0, ${cap}]`);
  }
  check(delays.every((s, i) => s.attempt === i + 1), `attempts not counted 1, 2, ...: ${delays.map((s) => s.attempt)}`);
  log(`both pages reconnected after ${delays.length} failed attempts on A and show the history-reset notice`);

  await send(A, 'A', 'after restart from ann');
  await send(B, 'B', 'after restart from bob');
  for (const [page, label] of [[A, 'A'], [B, 'B']]) {
    await waitForMessage(page, label, 'after restart from ann');
    await waitForMessage(page, label, 'after restart from bob');
  }
  log('messages exchanged both ways after the restart');
  if (certFile && tlsMax === '1.2') { // TLS 1.2 stays on crypto/tls: nothing sealed by the record layer
    const records = await metric('fanout_tls_records_out_total');
    check(records === 0, `fanout_tls_records_out_total ${records}: Chromium did not stay at TLS 1.2`);
    log('TLS 1.2: no record sealed by the server\'s record layer (crypto/tls served it)');
  } else if (certFile) { // Chromium speaks TLS 1.3: its records are the server's own (server/internal/tlsrec)
    const records = await metric('fanout_tls_records_out_total');
    check(records > 0, `fanout_tls_records_out_total ${records}: the wss connections were not taken over`);
    log(`${records} TLS records sealed by the server's record layer`);
  }

  for (const [page, label] of [[A, 'A'], [B, 'B']]) {
    const all = await messages(page);
    const texts = all.map((m) => m.text);
    check(new Set(texts).size === texts.length, `page ${label} shows duplicates: ${JSON.stringify(texts)}`);
  }
  const unexpected = consoleErrors.filter((e) => !/WebSocket connection to '.*' failed/.test(e));
  check(unexpected.length === 0, `console errors:\n${unexpected.join('\n')}`);
}

async function screenshots(prefix) {
  for (const [label, page] of Object.entries(pages)) {
    const file = path.join(outDir, `${prefix}${label}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true });
      log(`screenshot ${file}`);
    } catch (err) {
      log(`screenshot ${file} failed: ${err.message}`);
    }
  }
}

const overall = setTimeout(() => {
  console.error(`FAIL: timed out after 50 s; server log: ${serverLog}`);
  server?.kill('SIGKILL');
  process.exit(1);
}, 50000);

let failed = false;
try {
  await main();
  await screenshots('page');
  log('PASS');
} catch (err) {
  failed = true;
  console.error('FAIL:', err.message);
  await screenshots('failed-page');
  try {
    const text = fs.readFileSync(serverLog, 'utf8').trim().split('\n').slice(-20).join('\n');
    console.error(`last lines of ${serverLog}:\n${text}`);
  } catch { /* no log yet */ }
} finally {
  await browser?.close().catch(() => {});
  await killServer();
  clearTimeout(overall);
}
process.exit(failed ? 1 : 0);
