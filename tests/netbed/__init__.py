"""A multi-host test bed on one machine: hosts are network namespaces on a private bridge.

NetBed/Host build and own the hosts and the processes started in them, Faults cuts and
degrades their links, PrivateDockerd gives a host its own Docker Engine, Capture
(tests.netbed.capture) reads what crosses a link or the bridge, and the
`netbed_factory` fixture of tests/e2e/conftest.py builds beds for a test and closes them
after it. Needs root, iproute2, nsenter and nftables.
"""

from tests.netbed.bed import Host, NetBed
from tests.netbed.faults import Faults
from tests.netbed.process import HostProcess

__all__ = ["Faults", "Host", "HostProcess", "NetBed"]
