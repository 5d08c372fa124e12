"""SSL contexts: the API server's, the one nodes call each other with, and clients'.

TLS 1.3 only. The server asks for a client certificate but does not require one (the CLI and
other clients authenticate with a token); a certificate that is offered must chain to the
cluster's CA, or the handshake fails. The contexts a node holds are updated in place when its
certificate is renewed: connections made after that present the new one.
"""

from __future__ import annotations

import os
import ssl

from node.pki.store import CERT_FILE, KEY_FILE, NodeTls, tls_dir


def _tls13(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def client_context(ca_bundle: bytes, *, check_hostname: bool = True) -> ssl.SSLContext:
    """Verifies the server against the cluster's CAs (`ca_bundle`, PEM)."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = check_hostname
    ctx.load_verify_locations(cadata=ca_bundle.decode())
    return ctx


def unverified_context() -> ssl.SSLContext:
    """Only to fetch a cluster's CA certificate, which the caller then pins by its digest
    before it trusts or sends anything (joining)."""
    ctx = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def mutual_contexts(ca_bundle: bytes, cert: str, key: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Raft's (server, client) contexts: both present the node's certificate (files `cert`,
    `key`) and require the peer's, chained to a CA of `ca_bundle`. No name is checked: the
    peer is any node of the cluster, reached at whatever address Raft knows it by."""
    server = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=ca_bundle.decode())
    server.num_tickets = 0  # a Raft connection lives long and is never resumed
    client = client_context(ca_bundle, check_hostname=False)
    for ctx in (server, client):
        ctx.load_cert_chain(cert, key)
    return server, client


class NodeContexts:
    """A node's server and client contexts, both presenting its certificate, and Raft's."""

    def __init__(self, data_dir: str, tls: NodeTls) -> None:
        self._data_dir = data_dir
        self._ca_bundle = tls.ca_bundle
        self.server = _tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        self.server.verify_mode = ssl.CERT_OPTIONAL
        self.server.load_verify_locations(cadata=tls.ca_bundle.decode())
        self.client = client_context(tls.ca_bundle)
        self.reload()

    def reload(self, tls: NodeTls | None = None) -> None:
        """Present the certificate now in the data dir (and trust `tls.ca_bundle`'s CAs too)."""
        folder = tls_dir(self._data_dir)
        cert, key = os.path.join(folder, CERT_FILE), os.path.join(folder, KEY_FILE)
        for ctx in (self.server, self.client):
            ctx.load_cert_chain(cert, key)
            if tls is not None:
                ctx.load_verify_locations(cadata=tls.ca_bundle.decode())
        if tls is not None:
            self._ca_bundle = tls.ca_bundle
        # Replaced whole, never changed in place: the Raft thread takes the pair for each new
        # connection while this runs on the event loop.
        self.raft = mutual_contexts(self._ca_bundle, cert, key)
