import importlib
import os
import sys


def import_aiohttp_for_a_node() -> None:
    """Import aiohttp as a node process needs it: the node's entry point calls this before
    anything imports aiohttp. Importing this package changes nothing in the process.

    aiohttp builds two default client SSL contexts when it is imported, and each loads the
    whole system CA bundle: about 2 MB resident for the life of the process. Nodes talk
    to each other over TLS verified against the cluster's own CA (node.pki.contexts), so a
    node never uses them; a client given another `https://` API address builds its own
    context when it needs one (node.client; the CLI's node.cli.lean_client does not use
    aiohttp at all). So the
    import runs with OpenSSL's documented overrides of the default CA locations pointing at
    nothing; should anything use aiohttp's defaults for HTTPS all the same, verification
    fails: closed, not open.

    frozenlist's C extension stays resident (about 1 MB per process) for lists that aiohttp
    freezes at startup and then only iterates (signals, trace configs); its pure-Python class
    behaves the same, and frozenlist reads its switch when first imported, with aiohttp.

    Every variable is put back at once, so tasks and later contexts see the operator's
    environment.
    """
    if "aiohttp.connector" in sys.modules:
        return
    overrides = {
        "SSL_CERT_FILE": os.devnull,
        "SSL_CERT_DIR": os.devnull,
        "FROZENLIST_NO_EXTENSIONS": "1",
    }
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        importlib.import_module("aiohttp.connector")
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
