"""Gossip wire format: round trips, and garbage rejected with the field named."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netoverlay.gossip import codec
from netoverlay.gossip.model import (
    Ack,
    Alive,
    Dead,
    Gossip,
    Left,
    Member,
    MemberState,
    Ping,
    PingReq,
    Suspect,
    SyncRequest,
    SyncResponse,
    TableEntry,
)

ids = st.text(min_size=1, max_size=20)
incs = st.integers(0, 2**40)
addrs = st.tuples(st.sampled_from(["127.0.0.1", "10.0.0.2", "::1"]), st.integers(1, 65535))
plain = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.text(max_size=5),
        st.binary(max_size=5),
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
metas = st.dictionaries(st.text(max_size=8), plain, max_size=3)
table_entries = st.builds(
    TableEntry, ids, st.text(min_size=1, max_size=10), incs, plain, st.booleans()
)
news = st.one_of(
    st.builds(Alive, ids, incs, addrs, metas),
    st.builds(Suspect, ids, incs, ids),
    st.builds(Dead, ids, incs, ids),
    st.builds(Left, ids, incs),
    table_entries,
)
news_lists = st.lists(news, max_size=4).map(tuple)
members = st.builds(Member, ids, addrs, incs, st.sampled_from(list(MemberState)), metas)
messages = st.one_of(
    st.builds(Ping, incs, ids, news_lists),
    st.builds(Ack, incs, news_lists),
    st.builds(PingReq, incs, ids, addrs, news_lists),
    st.builds(Gossip, news_lists),
    st.builds(
        SyncRequest,
        ids,
        st.booleans(),
        st.lists(members, max_size=3).map(tuple),
        st.lists(table_entries, max_size=3).map(tuple),
    ),
    st.builds(
        SyncResponse,
        ids,
        st.lists(members, max_size=3).map(tuple),
        st.lists(table_entries, max_size=3).map(tuple),
    ),
)


@given(messages)
def test_every_message_round_trips(msg):
    assert codec.decode(codec.encode(msg)) == msg


@given(news)
def test_news_size_is_its_encoded_size(item):
    assert (
        codec.news_size(item) == len(codec.encode(Gossip((item,)))) - 3
    )  # array, tag, list headers


def test_a_ping_without_news_is_about_fifteen_bytes():
    assert len(codec.encode(Ping(123456, "node-7"))) <= 16


@pytest.mark.parametrize(
    "raw, field",
    [
        (b"\xc1garbage", "<packet>"),
        (msgpack.packb({"a": 1}), "<packet>"),
        (msgpack.packb([99]), "<packet>.type"),
        (msgpack.packb([1, "seven", "n1", []]), "ping.seq"),
        (msgpack.packb([1, 7, "", []]), "ping.target"),
        (msgpack.packb([2, 7, [[0, "n1", -1, "h", 1, {}]]]), "ack.news[0].incarnation"),
        (msgpack.packb([2, 7, [[0, "n1", 1, "h", 70000, {}]]]), "ack.news[0].port"),
        (msgpack.packb([4, [[9, "x"]]]), "gossip.news[0].kind"),
        (msgpack.packb([4, [[4, "o", "k", 1, "no", None]]]), "gossip.news[0].tombstone"),
        (
            msgpack.packb([5, "n1", True, [["n2", 0, 9, "h", 1, {}]], []]),
            "sync_request.members[0].state",
        ),
        (msgpack.packb([6, "n1", [], [["o", "k", 1, False]]]), "sync_response.entries[0]"),
    ],
)
def test_malformed_messages_name_the_field(raw, field):
    with pytest.raises(codec.DecodeError) as err:
        codec.decode(raw)
    assert err.value.field == field


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_but_decode_error(data):
    with contextlib.suppress(codec.DecodeError):
        codec.decode(data)
