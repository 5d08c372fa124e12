"""Keeps `DATA_DIR/join-token` current on every node. The token is made from the state's
join generation and current root CA (node.pki.cluster_ca.current_token), so `shoal cluster
rotate-token` and `rotate-ca` change it for the whole cluster at once: each node rewrites its
file when either changes, and the file an operator reads on any node holds a token that
works."""

from __future__ import annotations

import asyncio
import logging
import os

from consensus.raft import RaftNode
from node import config as cfg
from node.pki.cluster_ca import NoAuthority, current_token
from node.security import ClusterKeys

log = logging.getLogger(__name__)


class JoinTokenFile:
    def __init__(self, raft: RaftNode, keys: ClusterKeys, data_dir: str) -> None:
        self._raft, self._keys, self._data_dir = raft, keys, data_dir

    async def run(self) -> None:
        seen, basis = -1, None
        while True:
            seen = await self._raft.wait_changed(seen)
            with self._raft.view() as state:
                info = state.cluster
            if (info.join_generation, info.ca_certificates[:1]) == basis:
                continue
            try:
                token = str(current_token(info, self._keys))
            except NoAuthority:  # still bootstrapping: the file holds the first token
                continue
            basis = (info.join_generation, info.ca_certificates[:1])
            if await asyncio.to_thread(_rewrite_if_stale, self._data_dir, token):
                log.info("rewrote %s: the cluster's join token changed", cfg.TOKEN_FILE)


def _rewrite_if_stale(data_dir: str, token: str) -> bool:
    try:
        with open(os.path.join(data_dir, cfg.TOKEN_FILE)) as f:
            if f.read().strip() == token:
                return False
    except FileNotFoundError:
        pass
    cfg.write_token(data_dir, token)
    return True
