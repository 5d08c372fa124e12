import os

# frozenlist's C extension stays resident (about 1 MB per process) for lists that aiohttp
# freezes at startup and then only iterates (signals, trace configs); its pure-Python class
# behaves the same. Read when frozenlist is first imported, so it is set here, before any
# module of this package imports aiohttp.
os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")
