"""Cluster snapshots at 1,000 / 10,000 / 100,000 tasks: size, save time, restore time.

    python -m bench.snapshot [--sizes 1000,10000,100000]

For each size, a state of simulated nodes (one per 50 tasks) and 100 services with every task
assigned is built in this process by the scheduler's own rounds, with a sealed secret, and
written as a snapshot file. Then a real node process restores it (`shoal node start --restore
FILE --recovery-key K` on an empty data dir): `restore_s` is from the process's start until it
answers a linearizable read (`GET /v1/services`) holding every task. `save_s` is `shoal
cluster snapshot save` against that node (a read barrier, the copy, the serialisation and
the transfer to a file); `encode_s` the serialisation alone, in this process. The simulated
nodes are `joining` in the restored cluster and unreachable: no task starts. Targets at
100,000 tasks: save <= 2 s, restore to serving <= 5 s. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import consensus  # noqa: F401  (registers commands and tables)
from bench.scheduler import assigned_state
from consensus.secrets import Blob, blobs
from consensus.tasks import TASKS
from node import backup
from node.devcluster.localcluster import EQUAL_PROCESS_NODES, NodeProc, next_block, wait_for
from node.secret_box import SecretBox
from node.security import ClusterKeys

SERVICES = 100


def write_snapshot(n_tasks: int, path: str, keys: ClusterKeys) -> dict:
    state, _apply_s = assigned_state(max(10, n_tasks // 50), n_tasks, SERVICES)
    blobs(state, "secret")["dbpw"] = Blob(
        "s1", "dbpw", "secret", 6, SecretBox(keys.secret).seal("dbpw", b"hunter")
    )
    state.cluster = dataclasses.replace(state.cluster, cluster_id=keys.cluster_id)
    started = time.perf_counter()
    header, payload = backup.encode(state, keys, 1, time.time())
    encode_s = time.perf_counter() - started
    with open(path, "wb") as f:
        f.write(header + payload)
    return {
        "tasks": len(state.table(TASKS)),
        "bytes": len(header) + len(payload),
        "encode_s": round(encode_s, 3),
    }


async def restore_and_save(path: str, keys: ClusterKeys, n_tasks: int, base: str) -> dict:
    node = NodeProc(1, next_block(), base, list(EQUAL_PROCESS_NODES))
    os.makedirs(base, exist_ok=True)
    started = time.perf_counter()
    node.start(also=("--restore", path, "--recovery-key", keys.recovery_key))
    try:

        async def serving() -> bool:
            async with node.client(timeout=30) as client:
                services = await client.get("/v1/services")
            return (
                len(services) == SERVICES
                and sum(s["replicas"]["desired"] for s in services) == n_tasks
            )

        await wait_for(serving, 120, "the restored node to serve every task")
        restore_s = time.perf_counter() - started
        saved = os.path.join(base, "saved.snap")
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "node",
                "cluster",
                "snapshot",
                "save",
                saved,
                "--data-dir",
                node.data_dir,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        save_s = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"snapshot save failed: {done.stderr}")
        return {"restore_s": round(restore_s, 3), "save_s": round(save_s, 3)}
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        keys = ClusterKeys.generate()
        with tempfile.TemporaryDirectory(prefix="shoal-bench-snapshot-") as base:
            path = os.path.join(base, "bench.snap")
            figures = {"size": size, **write_snapshot(size, path, keys)}
            figures.update(asyncio.run(restore_and_save(path, keys, size, os.path.join(base, "c"))))
        print(
            f"{size:>7} tasks: snapshot {figures['bytes'] / 1e6:.1f} MB, save "
            f"{figures['save_s']:.2f} s (encode {figures['encode_s']:.2f} s), restore to "
            f"serving {figures['restore_s']:.2f} s",
            flush=True,
        )
        results.append(figures)
    print("RESULT " + json.dumps({"snapshot": results}))


if __name__ == "__main__":
    main()
