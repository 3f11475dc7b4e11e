"""Interop check with Python's websockets (Debian python3-websockets):
broadcast on /ws, echo on /echo, ping/pong and a clean 1000 close; channels
fed by the HTTP API and by control messages, and recovery with since=.
websockets offers permessage-deflate by default; the Go test counts the
compressed frames on the wire.
Over wss (and https for the HTTP API) it trusts SSL_CERT_FILE; a third
argument 1.2 caps TLS at 1.2.
Usage: python3 client.py ws[s]://127.0.0.1:PORT API_KEY [1.2]"""
import asyncio
import functools
import json
import ssl
import sys
import urllib.request

import websockets

TLS = None
if sys.argv[1].startswith("wss://"):
    TLS = ssl.create_default_context()
    if sys.argv[3:] == ["1.2"]:
        TLS.maximum_version = ssl.TLSVersion.TLSv1_2
    websockets.connect = functools.partial(websockets.connect, ssl=TLS)


async def broadcast(base):
    clients = [await websockets.connect(base + "/ws") for _ in range(3)]
    want = []
    for i, ws in enumerate(clients):
        text, data = f"hello from python {i} ✓", bytes([i, 0, 255, 254])
        await ws.send(text)
        await ws.send(data)
        want += [text, data]
    for i, ws in enumerate(clients):
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in want]
        if sorted(map(repr, got)) != sorted(map(repr, want)):
            raise SystemExit(f"FAIL: client {i} got {got!r}")
    for ws in clients:
        await ws.close(1000)
        if ws.close_code != 1000:
            raise SystemExit(f"FAIL: close code {ws.close_code}")


async def echo(base):
    async with websockets.connect(base + "/echo", max_size=2**20) as ws:
        big = bytes([7]) * (60 * 1024)
        await ws.send(big)
        if await ws.recv() != big:
            raise SystemExit("FAIL: 60 KiB binary echo differs")
        if not any(e.name == "permessage-deflate" for e in ws.extensions):
            raise SystemExit(f"FAIL: extensions {ws.extensions!r}")
        feed = json.dumps({"channel": "scores", "data": [{"team": f"t{i % 40}", "score": i * 7 % 101} for i in range(100)]})
        await ws.send(feed)
        if await ws.recv() != feed:
            raise SystemExit("FAIL: compressed JSON echo differs")
        text = "héllo €𝄞"
        await ws.send(text)
        if await ws.recv() != text:
            raise SystemExit("FAIL: text echo differs")
        await asyncio.wait_for(await ws.ping(b"py-ping"), 5)
        await ws.close(1000, "bye")
        if ws.close_code != 1000:
            raise SystemExit(f"FAIL: close code {ws.close_code}, want 1000")


def api_publish(base, key, channel, data):
    req = urllib.request.Request(
        base.replace("wss://", "https://").replace("ws://", "http://") + "/api/publish",
        data=json.dumps({"channel": channel, "data": data}).encode(),
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10, context=TLS) as resp:
        return json.load(resp)


async def expect(ws, **fields):
    got = json.loads(await asyncio.wait_for(ws.recv(), 10))
    for k, v in fields.items():
        if got.get(k) != v:
            raise SystemExit(f"FAIL: got {got}, want {k}={v!r}")
    return got


async def channels(base, key):
    sub = await websockets.connect(base + "/ws?channel=py-news")
    ack = await expect(sub, type="subscribed", channel="py-news", offset=0)
    res = await asyncio.to_thread(api_publish, base, key, "py-news", {"n": 1})
    if res["delivered"] != 1 or res["offset"] != 1:
        raise SystemExit(f"FAIL: publish reply {res}")
    await expect(sub, type="message", offset=1, data={"n": 1})
    async with websockets.connect(base + "/ws") as pub:
        await pub.send(json.dumps({"op": "publish", "channel": "py-news", "data": "two", "id": 5}))
        await expect(pub, type="published", offset=2, id=5)
    await expect(sub, type="message", offset=2, data="two")
    await sub.close(1000)
    for n in (3, 4):  # missed while away
        await asyncio.to_thread(api_publish, base, key, "py-news", n)
    url = f"{base}/ws?channel=py-news&since=2&epoch={ack['epoch']}"
    async with websockets.connect(url) as back:
        await expect(back, type="subscribed", offset=4)
        await expect(back, type="message", offset=3, data=3)
        await expect(back, type="message", offset=4, data=4)


async def main(base, key):
    await asyncio.wait_for(broadcast(base), 20)
    await asyncio.wait_for(echo(base), 20)
    await asyncio.wait_for(channels(base, key), 20)
    print("python websockets interop: ok")


asyncio.run(main(sys.argv[1], sys.argv[2]))
