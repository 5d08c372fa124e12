"""A toy primary-backup key-value server, correct or deliberately broken, to prove the checker
on histories recorded from real processes.

    python toykv.py --port P --peers URL,URL [--leader] [--ack-before-replicate] [--volatile]
                    [--data FILE]

The leader appends each write to its log, ships the whole log to its peers and acknowledges
once a majority holds it. `--ack-before-replicate` acknowledges at once and ships the log
lazily (a node that acknowledges before commit: a leader kill loses acknowledged writes).
`--volatile` keeps no file, so a restarted node starts empty (its reads go backwards).
Elections are done by the test: POST /promote {"term": T}.

HTTP: PUT /kv/KEY (body: value), GET /kv/KEY -> {"value", "seq"}, GET /status,
POST /replicate {"term", "log"}, POST /promote {"term"}, GET /dump -> {"data", "seq"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

LAZY_SHIP_SECONDS = 0.3


class Replica:
    def __init__(self, peers: list[str], data: Path | None, ack_early: bool) -> None:
        self.peers, self.data, self.ack_early = peers, data, ack_early
        self.term, self.leader, self.log = 1, False, []  # log: [key, value] pairs; seq = len(log)
        self.state: dict[str, str] = {}
        self.lock = asyncio.Lock()
        if data is not None and data.exists():
            saved = json.loads(data.read_text())
            self.term = saved["term"]
            self.adopt(saved["log"])

    def adopt(self, log: list) -> None:
        for key, value in log[len(self.log) :]:
            self.state[key] = value
        self.log = [list(entry) for entry in log]

    def save(self) -> None:
        if self.data is not None:
            tmp = self.data.with_suffix(".tmp")
            tmp.write_text(json.dumps({"term": self.term, "log": self.log}))
            os.replace(tmp, self.data)

    async def ship(self, session: ClientSession) -> int:
        """Send the whole log to every peer; returns how many copies exist (self included)."""
        body = {"term": self.term, "log": self.log}

        async def one(peer: str) -> bool:
            try:
                async with session.post(f"{peer}/replicate", json=body) as reply:
                    return reply.status == 200
            except Exception:  # a dead peer simply does not count toward the majority
                return False

        return 1 + sum(await asyncio.gather(*(one(peer) for peer in self.peers)))


def build_app(replica: Replica) -> web.Application:
    app = web.Application()
    session_key = web.AppKey("session", ClientSession)
    majority = (len(replica.peers) + 1) // 2 + 1

    async def put(request: web.Request) -> web.Response:
        if not replica.leader:
            return web.json_response({"error": "not the leader"}, status=421)
        value = await request.text()
        async with replica.lock:
            replica.log.append([request.match_info["key"], value])
            replica.state[request.match_info["key"]] = value
            replica.save()
            if replica.ack_early:
                return web.json_response({"seq": len(replica.log)})
            copies = await replica.ship(request.app[session_key])
        if copies < majority:
            return web.json_response({"error": f"only {copies} copies"}, status=503)
        return web.json_response({"seq": len(replica.log)})

    async def get(request: web.Request) -> web.Response:
        return web.json_response(
            {"value": replica.state.get(request.match_info["key"]), "seq": len(replica.log)}
        )

    async def status(request: web.Request) -> web.Response:
        return web.json_response(
            {"term": replica.term, "leader": replica.leader, "seq": len(replica.log)}
        )

    async def replicate(request: web.Request) -> web.Response:
        body = await request.json()
        if body["term"] < replica.term:
            return web.json_response({"error": "stale term"}, status=409)
        replica.term, replica.leader = body["term"], False
        if len(body["log"]) > len(replica.log):
            replica.adopt(body["log"])
            replica.save()
        return web.json_response({"seq": len(replica.log)})

    async def promote(request: web.Request) -> web.Response:
        replica.term, replica.leader = (await request.json())["term"], True
        replica.save()
        await replica.ship(request.app[session_key])  # bring the others up to this log
        return web.json_response({"term": replica.term})

    async def dump(request: web.Request) -> web.Response:
        return web.json_response({"data": replica.state, "seq": len(replica.log)})

    async def lazy_shipper(app: web.Application):
        async def loop() -> None:
            # The deliberate bug: replication on a timer, after the write was acknowledged.
            while True:
                await asyncio.sleep(LAZY_SHIP_SECONDS)
                if replica.leader:
                    await replica.ship(app[session_key])

        task = asyncio.create_task(loop()) if replica.ack_early else None
        yield
        if task is not None:
            task.cancel()

    async def client_session(app: web.Application):
        app[session_key] = ClientSession(timeout=ClientTimeout(total=1.0))
        yield
        await app[session_key].close()

    app.cleanup_ctx.extend([client_session, lazy_shipper])
    app.add_routes(
        [
            web.put("/kv/{key}", put),
            web.get("/kv/{key}", get),
            web.get("/status", status),
            web.post("/replicate", replicate),
            web.post("/promote", promote),
            web.get("/dump", dump),
        ]
    )
    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peers", default="")
    parser.add_argument("--leader", action="store_true")
    parser.add_argument("--ack-before-replicate", action="store_true")
    parser.add_argument("--volatile", action="store_true")
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    replica = Replica(
        [p for p in args.peers.split(",") if p],
        None if args.volatile else args.data,
        args.ack_before_replicate,
    )
    replica.leader = args.leader
    runner = web.AppRunner(build_app(replica))
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    if os.environ.get("NOTIFY_SOCKET"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
