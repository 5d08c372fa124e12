import importlib
import os
import sys

# frozenlist's C extension stays resident (about 1 MB per process) for lists that aiohttp
# freezes at startup and then only iterates (signals, trace configs); its pure-Python class
# behaves the same. Read when frozenlist is first imported, so it is set here, before any
# module of this package imports aiohttp.
os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")


def import_aiohttp_without_trust_store() -> None:
    """Import aiohttp with OpenSSL's default CA locations pointing at nothing; the node
    process calls this before anything imports aiohttp (node.server does, first).

    aiohttp builds two default client SSL contexts when it is imported, and each loads the
    whole system CA bundle: about 2 MB resident for the life of the process. Nodes talk
    plain HTTP to each other (gossip and Raft carry their own encryption), so a node never
    uses them; a client given an `https://` API address builds its own context when it
    needs one (node.client; the CLI's node.cli.lean_client does not use aiohttp at all). The variables are OpenSSL's documented
    overrides, and they are put back at once, so tasks and later contexts see the
    operator's environment. Should anything use aiohttp's defaults for HTTPS all the same,
    verification fails: closed, not open.
    """
    if "aiohttp.connector" in sys.modules:
        return
    overrides = ("SSL_CERT_FILE", "SSL_CERT_DIR")
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(dict.fromkeys(overrides, os.devnull))
    try:
        importlib.import_module("aiohttp.connector")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

