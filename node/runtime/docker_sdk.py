"""The Docker SDK, imported without requests' character-set guessing.

The SDK talks to the engine through requests, and requests imports charset_normalizer only
to guess the encoding of responses that declare none. The Docker Engine API answers JSON,
which is UTF-8, and requests falls back to UTF-8 by itself when no detector can be
imported; the detector costs about 2.7 MB resident, which an idle node cannot spare (its
budget is 60 MB). A `None` entry in `sys.modules` is Python's documented way to make an
import fail: the entries stand only while requests is imported, so requests goes without a
detector and the rest of the process may still import one. A process that imported
requests before keeps it as it is.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def _import_requests_without_a_detector() -> None:
    blocked = [name for name in ("charset_normalizer", "chardet") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Unable to find acceptable character detection"
            )
            importlib.import_module("requests")  # here, under the filter, before docker
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


if "requests" not in sys.modules:
    _import_requests_without_a_detector()

import docker  # noqa: E402

__all__ = ["docker"]
