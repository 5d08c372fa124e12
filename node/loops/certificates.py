"""Renews this node's certificate before it expires, and as soon as the cluster's root CA
is rotated: the node makes a new key and sends a CSR to the leader (a voter), over mutual TLS
with the certificate it still holds; the answer's certificate and trusted CAs replace the old
ones on disk and in the SSL contexts, so the connections made after that present the new
certificate. Renewal is due at two thirds of the certificate's lifetime."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from node.client import ApiError, Unreachable
from node.pki.authority import CertificateError, issued_by, make_csr, new_key_pem, renewal_time
from node.pki.store import NodeTls

log = logging.getLogger(__name__)

# Seconds between attempts when the leader cannot sign (no leader, unreachable, refused).
RETRY = 5.0
# The longest single sleep: a clock stepped forward is noticed within this.
MAX_SLEEP = 3600.0


class CertificateRenewal:
    def __init__(
        self,
        *,
        node_id: str,
        names: tuple[str, ...],
        lifetime: float,
        current: Callable[[], NodeTls],
        root: Callable[[], str],
        changed: Callable[[int, float], Awaitable[int]],
        ask: Callable[[bytes, float], Awaitable[dict]],
        renewed: Callable[[NodeTls], None],
    ) -> None:
        """`root` is the cluster's current root CA (PEM) in the state, `changed(seen,
        timeout)` waits for the state to change; `ask(csr, lifetime)` answers
        `{"certificate", "ca_certificates"}` from a voter; `renewed` stores and starts using
        the new material."""
        self._node_id, self._names, self._lifetime = node_id, names, lifetime
        self._current, self._root, self._changed = current, root, changed
        self._ask, self._renewed = ask, renewed
        # (certificate, root) last found to match: checked again only when either changes.
        self._matched: tuple[bytes, str] = (b"", "")

    def _by_current_root(self) -> bool:
        cert, root = self._current().cert, self._root()
        if not root or self._matched == (cert, root):
            return True
        if issued_by(cert, root.encode()):
            self._matched = (cert, root)
            return True
        return False

    async def run(self) -> None:
        seen = -1
        while True:
            wait = renewal_time(self._current().cert) - time.time()
            if wait > 0 and self._by_current_root():
                seen = await self._changed(seen, min(wait, MAX_SLEEP))
                continue
            try:
                self._renewed(await self._renew())
                log.info("renewed this node's certificate")
            except (ApiError, Unreachable, CertificateError, KeyError, TypeError) as exc:
                log.warning("cannot renew this node's certificate yet: %s", exc)
                await asyncio.sleep(RETRY)

    async def _renew(self) -> NodeTls:
        key = new_key_pem()
        answer = await self._ask(make_csr(self._node_id, key, self._names), self._lifetime)
        cert = answer["certificate"].encode()
        bundle = "".join(answer["ca_certificates"]).encode()
        if not issued_by(cert, bundle):
            raise CertificateError("the renewed certificate is not signed by the cluster's CA")
        return NodeTls(bundle, cert, key)
