"""pytest fixtures for the bed; a test module imports the ones it uses:

from tests.netbed.fixtures import netbed_factory  # noqa: F401  (a fixture)

def test_something(netbed_factory):
    bed = netbed_factory(3)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from tests.netbed.bed import NetBed
from tests.support import require_root_netns, unavailable


def require_netbed() -> None:
    """Skip (or fail under SHOAL_REQUIRE_E2E=1) where a bed cannot be built."""
    require_root_netns()
    for tool in ("nft", "iptables"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (the bed's faults and forwarding rule need it)")


@pytest.fixture
def netbed_factory(tmp_path) -> Iterator[Callable[[int], NetBed]]:
    """`netbed_factory(n)` builds an n-host bed whose logs land in the test's tmp_path; every
    bed is closed after the test, passed or failed."""
    require_netbed()
    beds: list[NetBed] = []

    def build(hosts: int) -> NetBed:
        bed = NetBed.create(hosts, workdir=tmp_path / f"bed{len(beds)}")
        beds.append(bed)
        return bed

    yield build
    for bed in reversed(beds):
        bed.close()
