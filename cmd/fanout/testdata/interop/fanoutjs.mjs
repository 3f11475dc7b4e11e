// fanout.js (the browser client, unchanged) loaded under Node for the
// interop scripts, with what each of them needs around it.
import fs from 'node:fs';
import WebSocket from 'ws';

// fanout.js is a browser ES module: import its source as one.
const src = fs.readFileSync(new URL('../../web/fanout.js', import.meta.url), 'utf8');
export const { Fanout } = await import('data:text/javascript,' + encodeURIComponent(src));

// QuietWebSocket is ws's WebSocket with its 'error' events handled:
// fanout.js learns of a failure from the close that follows.
export class QuietWebSocket extends WebSocket {
  constructor(address, protocols) {
    super(address, protocols);
    this.on('error', () => {});
  }
}

// fail ends the script with msg; failAfter does so after seconds.
export const fail = (msg) => { console.error('FAIL:', msg); process.exit(1); };
export const failAfter = (seconds) => setTimeout(() => fail(`timed out after ${seconds} s`), seconds * 1000).unref();
