// Chromium through the demo page against the Express backend's hooks
// (cmd/fanout/testdata/interop/backend.mjs), for a fanout started with
// -proxy-connect/subscribe/publish/rpc-url and -proxy-headers Cookie. With
// the session cookie the backend knows, the page connects as alice, a
// subscribe the backend denies is refused, a message sent from the page
// comes back rewritten by the publish hook, and an rpc is answered by the
// backend; without it the upgrade is refused (the backend's 401) and the
// page keeps reconnecting.
// Usage: node hooks.mjs <fanout base URL> <backend base URL>
// Run by TestHooks_Chromium (cmd/fanout/hooks_clients_test.go).
import { chromium } from 'playwright-core';

const [base, backend] = process.argv.slice(2);
const check = (ok, what) => { if (!ok) throw new Error(what); };
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true });
try {
  const ctx = await browser.newContext();
  await ctx.addCookies([{ name: 'session', value: 'ok', url: base }]);
  const page = await ctx.newPage();
  page.setDefaultTimeout(10000);
  await page.goto(base);
  await page.waitForFunction(() => window.fanout.status?.state === 'connected');
  const denied = await page.evaluate(() => window.fanout.subscribe('secret:plans').then(() => 'subscribed', (e) => e.message));
  check(denied.includes('not a member of secret:plans'), `the denied subscribe: ${denied}`);

  await page.fill('#channel', 'room');
  await page.fill('#name', 'ann');
  await page.click('#join-button');
  await page.waitForFunction(() => !document.getElementById('send-button').disabled);
  await page.fill('#text', 'hello through the backend');
  await page.click('#send-button');
  const shown = page.locator('#messages li.msg .text').last();
  await shown.waitFor();
  const text = await shown.textContent();
  check(text.includes('"by":"alice"') && text.includes('hello through the backend'), `the page shows ${text}, want the publish hook's rewrite`);

  const answer = await page.evaluate(() => window.fanout.rpc('add', { a: 2, b: 40 }));
  check(answer?.sum === 42, `rpc add: ${JSON.stringify(answer)}`);

  const anon = await (await browser.newContext()).newPage();
  anon.setDefaultTimeout(10000);
  await anon.goto(base);
  await anon.waitForFunction(() => window.fanout.status?.state === 'reconnecting');
  const state = await anon.evaluate(() => window.fanout.status.state);
  check(state !== 'connected', 'a page without a session connected');
  const seen = await (await fetch(backend + '/seen')).json();
  check(seen.some((s) => s.path === '/connect' && !s.body.headers?.Cookie), 'the backend saw no connect without a cookie');
  console.log('PASS: Chromium against the Express hooks: admitted, denied, rewritten, rpc, refused without a session');
} finally {
  await browser.close();
}
