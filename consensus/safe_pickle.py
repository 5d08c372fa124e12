"""Make pysyncobj's pickle-based transport and dump files refuse anything but plain data.

pysyncobj frames every Raft message, log entry and snapshot with pickle. Shoal's own payloads
are msgpack bytes inside those frames, and the frames are authenticated (Fernet under a key
derived from the cluster secret) before they are unpickled. As a second wall, this module
replaces pysyncobj's unpickler with one that resolves only the handful of classes pysyncobj
itself puts in its frames, so even a peer holding the key cannot make a node run code.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import io
import pickle
import pkgutil
from typing import IO

import pysyncobj
import pysyncobj.pickle as pysyncobj_pickle

_ALLOWED = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    # protocol 2 (pysyncobj's) writes bytes as _codecs.encode(text, "latin1")
    ("_codecs", "encode"),
    ("pysyncobj.node", "Node"),
    ("pysyncobj.node", "TCPNode"),
}


def _empty_bytes(*args: object) -> bytes:
    """Protocol 2 writes an empty bytes object as a call of `bytes()` with no arguments (the
    last chunk of every snapshot sent to a node that is behind the log is empty). `bytes`
    itself would also take a size and allocate it, so only the empty call is allowed."""
    if args:
        raise pickle.UnpicklingError("refusing to unpickle bytes() with arguments")
    return b""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        # Protocol 2 names builtins the Python 2 way (__builtin__.set): map them first.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) == ("builtins", "bytes"):
            return _empty_bytes
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _loads(data: bytes | str) -> object:
    return _RestrictedUnpickler(io.BytesIO(pysyncobj_pickle.to_bytes(data))).load()


def _load(file: IO[bytes]) -> object:
    return _RestrictedUnpickler(file).load()


_ORIGINAL = {"loads": pysyncobj_pickle.loads, "load": pysyncobj_pickle.load}
_RESTRICTED = {"loads": _loads, "load": _load}


def install() -> None:
    """Idempotent. Most pysyncobj modules look `pickle.loads` up at call time, but some bound
    it at import (`from .pickle import loads` in journal.py, which reads the journal's meta
    file): every pysyncobj module's own name for the original is replaced too."""
    pysyncobj_pickle.loads = _loads
    pysyncobj_pickle.load = _load
    for info in pkgutil.iter_modules(pysyncobj.__path__, "pysyncobj."):
        module = importlib.import_module(info.name)
        for attr, value in list(vars(module).items()):
            for kind, original in _ORIGINAL.items():
                if value is original:
                    setattr(module, attr, _RESTRICTED[kind])


def unrestricted_loaders() -> list[str]:
    """Names in pysyncobj's modules still bound to the unrestricted unpickler (none once
    installed)."""
    return [
        f"{info.name}.{attr}"
        for info in pkgutil.iter_modules(pysyncobj.__path__, "pysyncobj.")
        for attr, value in vars(importlib.import_module(info.name)).items()
        if any(value is original for original in _ORIGINAL.values())
    ]
