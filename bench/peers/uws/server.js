// uWebSockets.js as a benchmark peer, the way its pub/sub is meant to be
// used: every /ws socket subscribes to one topic and each message is
// app.publish'ed to it (app.publish reaches every subscriber, the sender
// included; ws.publish would skip the sender). /echo echoes.
// The npm package `uwebsockets` 3.0.6 pinned here is a republish of
// uWebSockets.js v20 (its source_commit file names the upstream commit).
// A socket more than 1 MiB behind is closed, as Fanout evicts a client
// whose send queue passes 1 MiB (uWS's default would skip its messages).
// With --compression it negotiates permessage-deflate with uWS's shared
// compressor (one compression per publish for every subscriber).
// With --cert FILE --key FILE it serves wss through uWS.SSLApp (the same
// PEM files as Fanout's -tls-cert/-tls-key: bench/peers/cert.sh makes them).
// Usage: node server.js [port] [--compression] [--cert FILE --key FILE]
// (port 0: any free port; the line "listening on 127.0.0.1:PORT" names it)
import uWS from 'uwebsockets';

const args = process.argv.slice(2);
const flag = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const port = Number(args[0] ?? 8083);
const topic = 'room';
const compress = args.includes('--compression');
const cert = flag('--cert');
const key = flag('--key');
if (!cert !== !key) {
  console.error('uWS peer: --cert and --key go together');
  process.exit(2);
}
const common = {
  compression: compress ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 1 << 20,
  closeOnBackpressureLimit: true,
  idleTimeout: 0, // the load generator does not ping
};

const app = (cert ? uWS.SSLApp({ cert_file_name: cert, key_file_name: key }) : uWS.App())
  .ws('/ws', {
    ...common,
    open: (ws) => ws.subscribe(topic),
    message: (ws, msg, isBinary) => app.publish(topic, msg, isBinary, compress), // compress: uWS compresses only when asked
  })
  .ws('/echo', {
    ...common,
    message: (ws, msg, isBinary) => ws.send(msg, isBinary, compress),
  })
  .any('/*', (res) => res.writeStatus('404 Not Found').end());

app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`uWS peer: cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  console.log(`uWebSockets.js peer${cert ? ' (TLS)' : ''} listening on 127.0.0.1:${uWS.us_socket_local_port(token)}`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
