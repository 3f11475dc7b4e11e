// The textbook chat server on Node's `ws` package, as a benchmark peer:
// /ws sends every message to every client whose readyState is OPEN, /echo
// echoes. Usage: node server.js [port] (0: any free port; the line
// "listening on 127.0.0.1:PORT" names it)
import { createServer } from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const port = Number(process.argv[2] ?? 8082);
const http = createServer((req, res) => { res.writeHead(404); res.end(); });
const room = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const echo = new WebSocketServer({ noServer: true, perMessageDeflate: false });

http.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const wss = path === '/ws' ? room : path === '/echo' ? echo : null;
  if (!wss) { socket.destroy(); return; }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

room.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of room.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
echo.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

http.listen(port, '127.0.0.1', () => console.log(`node ws peer listening on 127.0.0.1:${http.address().port}`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
