"""Bed names: every kind of object name leads back to its bed, and only dead owners are stale."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.netbed.names import BedName, owner_of, stale_beds

beds = st.builds(
    BedName, st.text("0123456789abcdef", min_size=6, max_size=6), st.integers(1, 4_194_304)
)


@given(beds, st.integers(0, 252))
def test_every_object_name_leads_back_to_its_bed(bed, index):
    names = [
        bed.tag,
        bed.netns(index),
        bed.nft_table,
        f"/tmp/{bed.tag}-dockerd-h{index}-x1",
        f"-A FORWARD -i {bed.bridge} -m comment --comment {bed.tag} -j ACCEPT",
    ]
    assert {owner_of(name) for name in names} == {bed}
    assert len(bed.bridge) <= 15 and len(bed.veth(index)) <= 15, "Linux interface names"


@given(st.lists(beds, max_size=6), st.sets(st.integers(1, 4_194_304)))
def test_only_beds_with_a_dead_owner_are_stale(all_beds, alive):
    names = [bed.netns(0) for bed in all_beds] + ["eth0", "docker0", "shoalnb-nothex-12-h0"]
    assert stale_beds(names, lambda pid: pid in alive) == {
        bed for bed in all_beds if bed.owner_pid not in alive
    }
