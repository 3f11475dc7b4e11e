"""The Express backend's hooks (backend.mjs) from Python's websockets
(Debian python3-websockets): a connect whose cookie the backend does not
know is refused with its 401; one it knows is admitted as alice and
subscribed by the backend to "news"; a subscribe the backend denies gets
its error reply; a publish comes back rewritten by the publish hook; an
rpc is answered by the backend.
Usage: python3 hooks.py ws://127.0.0.1:PORT"""
import asyncio
import json
import sys

import websockets


async def recv(ws, want):
    """The next message of type want; acks on the way are skipped."""
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m.get("type") == want:
            return m
        assert m.get("type") in ("published", "subscribed"), f"waiting for {want}: {m}"


async def main(base):
    try:
        await websockets.connect(base + "/ws", extra_headers={"Cookie": "session=none"})
        sys.exit("a connect without a session was admitted")
    except websockets.InvalidStatusCode as e:
        assert e.status_code == 401, e
    async with websockets.connect(base + "/ws", subprotocols=["fanout"], extra_headers={"Cookie": "session=ok"}) as ws:
        m = await recv(ws, "subscribed")
        assert m["channel"] == "news", m
        await ws.send(json.dumps({"op": "subscribe", "channel": "secret:plans", "id": 1}))
        m = await recv(ws, "error")
        assert m["id"] == 1 and m["code"] == 403, m
        await ws.send(json.dumps({"op": "subscribe", "channel": "room", "id": 2}))
        assert (await recv(ws, "subscribed"))["id"] == 2
        await ws.send(json.dumps({"op": "publish", "channel": "room", "data": "from python ✓", "id": 3}))
        m = await recv(ws, "message")
        assert m["data"] == {"by": "alice", "text": "from python ✓"}, m
        await ws.send(json.dumps({"op": "rpc", "method": "add", "data": {"a": 20, "b": 22}, "id": 4}))
        m = await recv(ws, "rpc")
        assert m["id"] == 4 and m["data"] == {"sum": 42}, m
    print("python against the Express hooks: refused, admitted, denied, rewritten, rpc")


asyncio.run(main(sys.argv[1]))
