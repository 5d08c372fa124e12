"""A non-blocking TCP socket seen through TLS, for pysyncobj's connection to read and write.

pysyncobj's TcpConnection calls `recv`, `send`, `getsockopt`, `fileno` and `close` on its
socket from its poller, on the Raft thread, and treats EAGAIN as "nothing more now". A
`TlsSocket` keeps that contract over an `ssl.SSLObject` and two memory BIOs, so the poller
keeps watching the real descriptor and nothing here ever blocks:

- `recv` reads ciphertext until the kernel has none, and returns plaintext only once the
  handshake completed; it raises EAGAIN only when neither the kernel nor the TLS layer holds
  anything more (the poller cannot see data TLS already decrypted, so nothing may stay there).
- `send` accepts plaintext at once (before the handshake completes it waits here, as it
  would have waited in pysyncobj's write buffer) and hands the kernel what it takes; the rest
  goes with the next call, as pysyncobj's own sends do.

A connection that is not TLS at all may be let through as it is (`plain`: the release
before, during a rolling upgrade): the first bytes decide, since every TLS connection opens
with a handshake record (0x16, 0x03).
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Callable
from socket import socket

# Ciphertext read from the kernel at a time: one full TLS record and its header.
_RAW_CHUNK = 16 * 1024 + 512
_HANDSHAKE_RECORD = b"\x16\x03"


class HandshakeFailed(ConnectionAbortedError):
    """The peer is not one of the cluster's nodes (no certificate from a trusted CA, not TLS
    at all) or broke the handshake off."""


def _eagain() -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, "no data yet")


class TlsSocket:
    """Wraps an open non-blocking `sock`; the handshake runs as bytes come and go."""

    def __init__(
        self,
        sock: socket,
        context: ssl.SSLContext,
        *,
        server: bool,
        on_established: Callable[[], None] = lambda: None,
        on_failed: Callable[[str], None] = lambda why: None,
        plain: Callable[[], bool] | None = None,
    ) -> None:
        """`on_failed` is told why a handshake failed. `plain` (servers only): called when
        the peer's first bytes are not TLS; True lets the connection through unencrypted,
        False refuses it."""
        self._sock = sock
        self.server = server
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=server)
        self._on_established = on_established
        self._on_failed = on_failed
        self._plain = plain
        self._sniffed = plain is None
        self.passthrough = False
        self.established = False
        # Ciphertext the kernel has not taken yet, and plaintext sent before the handshake.
        self._unsent = bytearray()
        self._early = bytearray()

    # -- what pysyncobj calls ---------------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def getsockopt(self, *args: int) -> int:
        return self._sock.getsockopt(*args)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sock.setsockopt(level, option, value)

    def close(self) -> None:
        self._sock.close()

    def recv(self, size: int) -> bytes:
        if self.passthrough:
            return self._sock.recv(size)
        self._flush()
        while True:
            if self.established:
                data = self._read(size)
                if data is not None:
                    return data
            elif self._handshake():
                continue
            raw = self._sock.recv(_RAW_CHUNK)  # BlockingIOError: nothing more now
            if not raw:
                return b""
            if not self._sniffed and self._sniff(raw):
                return raw
            self._in.write(raw)

    def send(self, data: bytes) -> int:
        if self.passthrough:
            return self._sock.send(data)
        self._flush()
        if self._unsent:
            raise _eagain()
        if not self.established:
            self._early += data
            if self._sniffed:
                self._handshake()
            return len(data)
        self._tls.write(data)
        self._flush()
        return len(data)

    # -- inside -------------------------------------------------------------------------
    def _sniff(self, raw: bytes) -> bool:
        """True if the connection turned out plain and is let through (`raw` is its first
        data); raises if it is plain and refused."""
        self._sniffed = True
        if raw[:2] == _HANDSHAKE_RECORD[: len(raw)]:
            return False
        assert self._plain is not None
        if not self._plain():
            raise self._failed("the peer does not speak TLS")
        self.passthrough = True
        if self._early:
            self._sock.send(bytes(self._early))  # a few bytes on a fresh socket
            self._early.clear()
        return True

    def peer_name(self) -> str | None:
        """The common name of the peer's verified certificate (a node's id), once established."""
        if not self.established:
            return None
        subject = (self._tls.getpeercert() or {}).get("subject", ())
        if isinstance(subject, str):
            return None
        names = [
            attribute[1] for rdn in subject for attribute in rdn if attribute[0] == "commonName"
        ]
        return names[0] if len(names) == 1 else None

    def _read(self, size: int) -> bytes | None:
        """Plaintext TLS already holds, b"" once the peer closed, None if it needs more."""
        try:
            return self._tls.read(size)
        except ssl.SSLWantReadError:
            self._flush()  # a key update or session ticket may want an answer
            return None
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLError as exc:
            raise ConnectionResetError(errno.ECONNRESET, f"TLS: {exc}") from None

    def _handshake(self) -> bool:
        """One step of the handshake: whether it is now established."""
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError as exc:
            self._flush()  # the alert, so the peer learns why
            raise self._failed(str(exc)) from None
        self.established = True
        if self._early:
            self._tls.write(bytes(self._early))
            self._early.clear()
        self._flush()
        self._on_established()
        return True

    def _failed(self, why: str) -> HandshakeFailed:
        self._on_failed(why)
        return HandshakeFailed(errno.ECONNABORTED, f"TLS handshake failed: {why}")

    def _flush(self) -> None:
        if self._out.pending:
            self._unsent += self._out.read()
        while self._unsent:
            try:
                sent = self._sock.send(self._unsent)
            except BlockingIOError:
                return
            del self._unsent[:sent]
