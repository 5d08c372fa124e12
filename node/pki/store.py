"""A node's TLS files in `DATA_DIR/tls/` (the directory 0700, every file 0600).

- `ca.pem`: the CAs this node trusts, a bundle (the current CA first), so that a rotation
  can trust the old and the new root at once;
- `node.pem`, `node-key.pem`: this node's certificate and key;
- `ca-key.pem`: the CA's key, on the node that created the cluster only, until the cluster
  holds it (sealed) in its replicated state.

The CLI reads `ca.pem` to verify a node it reaches over TCP from the node's machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TLS_DIR = "tls"
CA_FILE = "ca.pem"
CERT_FILE = "node.pem"
KEY_FILE = "node-key.pem"
CA_KEY_FILE = "ca-key.pem"


def tls_dir(data_dir: str) -> str:
    return os.path.join(data_dir, TLS_DIR)


def ca_path(data_dir: str) -> str:
    return os.path.join(tls_dir(data_dir), CA_FILE)


class NoCertificate(Exception):
    """The data dir holds a node's identity but no certificate for it."""


@dataclass(frozen=True, slots=True)
class NodeTls:
    """What a node presents and trusts (PEM)."""

    ca_bundle: bytes
    cert: bytes
    key: bytes


def _write(path: str, data: bytes) -> None:
    """Atomically, 0600: a reader never sees half a certificate."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def save(data_dir: str, tls: NodeTls) -> None:
    os.makedirs(tls_dir(data_dir), mode=0o700, exist_ok=True)
    # Key first: a certificate on disk always has its key beside it.
    _write(os.path.join(tls_dir(data_dir), KEY_FILE), tls.key)
    _write(os.path.join(tls_dir(data_dir), CERT_FILE), tls.cert)
    _write(ca_path(data_dir), tls.ca_bundle)


def load(data_dir: str) -> NodeTls | None:
    parts = [
        _read(os.path.join(tls_dir(data_dir), name)) for name in (CA_FILE, CERT_FILE, KEY_FILE)
    ]
    if any(p is None for p in parts):
        return None
    return NodeTls(*parts)  # type: ignore[arg-type]


def load_existing(data_dir: str) -> NodeTls:
    tls = load(data_dir)
    if tls is None:
        raise NoCertificate(
            f"{tls_dir(data_dir)} holds no certificate for this node: the data dir was made by "
            "a version without the cluster CA; join the node afresh (a new data dir, `--join` "
            "with a current token)"
        )
    return tls


def save_ca_key(data_dir: str, key_pem: bytes) -> None:
    os.makedirs(tls_dir(data_dir), mode=0o700, exist_ok=True)
    _write(os.path.join(tls_dir(data_dir), CA_KEY_FILE), key_pem)


def load_ca_key(data_dir: str) -> bytes | None:
    return _read(os.path.join(tls_dir(data_dir), CA_KEY_FILE))
