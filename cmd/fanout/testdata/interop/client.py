"""Interop check with Python's websockets (Debian python3-websockets):
broadcast on /ws, echo on /echo, ping/pong and a clean 1000 close.
Usage: python3 client.py ws://127.0.0.1:PORT"""
import asyncio
import sys

import websockets


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
        text = "héllo €𝄞"
        await ws.send(text)
        if await ws.recv() != text:
            raise SystemExit("FAIL: text echo differs")
        await asyncio.wait_for(await ws.ping(b"py-ping"), 5)
        await ws.close(1000, "bye")
        if ws.close_code != 1000:
            raise SystemExit(f"FAIL: close code {ws.close_code}, want 1000")


async def main(base):
    await asyncio.wait_for(broadcast(base), 20)
    await asyncio.wait_for(echo(base), 20)
    print("python websockets interop: ok")


asyncio.run(main(sys.argv[1]))
