"""The pysyncobj shell around the pure state machine.

One replicated method, `apply(bytes)`. pysyncobj runs its own thread; results and change
notices are handed to the asyncio loop with `call_soon_threadsafe`, and nothing here blocks
the loop: the Raft thread publishes immutable versions of the state (consensus.store), which
readers take without a lock. A voter runs `SyncObj(self_address, partners)`; a non-voting
member runs pysyncobj's read-only mode (`SyncObj(None, partners)`): it receives the whole log but never votes;
or, given `start_follower`, follows a voter's committed-state feed instead (consensus.follower),
and every voter serves that feed from `feed_source`.
Changing role means starting a fresh replica (pysyncobj cannot switch a running one); the old
replica keeps serving reads until the new one has caught up.
"""

from __future__ import annotations

import _socket
import asyncio
import codecs
import functools
import logging
import os
import shutil
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, Literal

import pysyncobj.pickle as pysyncobj_pickle
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.encryptor import getEncryptor
from pysyncobj.syncobj import _RAFT_STATE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.transport import TCPTransport

from consensus import codec, raft_files, safe_pickle
from consensus import prevote as prevote_core
from consensus.append_entries import reconcile
from consensus.durable_log import DurableLog
from consensus.feed_ring import AppliedRing, FeedSource
from consensus.follower import Follower, StartFollower
from consensus.nodes import NODES, may_speak_raft
from consensus.prevote import LogPosition, PreVote
from consensus.proposals import ProposalBatcher
from consensus.read_rounds import RaftHooks, ReadRounds
from consensus.state import ClusterState, PlainResult, Result
from consensus.store import StateVersion, next_version, version_of
from consensus.tls_socket import TlsSocket

# pysyncobj 0.3.17 replaces socket.inet_ntop, on every platform, with a Windows-only version
# that raises on Linux (pysyncobj/win_inet_pton.py); netlink (pyroute2) decodes every address
# with it. Put the real one back: pysyncobj itself never calls it off Windows.
socket.inet_ntop = _socket.inet_ntop

log = logging.getLogger(__name__)
safe_pickle.install()

Role = Literal["voter", "member"]
# pysyncobj calls back a replicated method's caller with (its result, a FAIL_REASON code).
RaftCallback = Callable[[Any, int], None]


class ProposeError(Exception):
    """A proposal was not committed. `retryable`: the outcome is known not to have happened
    here (no leader, leadership moved), so the caller may retry with the same request id."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotLeader(ProposeError):
    def __init__(self, message: str = "this node is not the leader") -> None:
        super().__init__(message, retryable=True)


class NoQuorum(ProposeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True, slots=True)
class RaftTuning:
    """Chosen from measurement (see the consensus benchmark): batching off, because batching
    holds a lone write for the 0.1 s tick; elections between 0.2 and 0.4 s (four heartbeats
    at least), which gives failover under 0.5 s without spurious elections on a loaded
    two-core machine (none in 30 s of 64 writing clients)."""

    election_min: float = 0.2
    election_max: float = 0.4
    heartbeat: float = 0.05
    # A leader cut off from its followers steps down after this, so a minority answers 503
    # instead of accepting writes that can never commit.
    leader_fallback: float = 1.5
    reconnect: float = 1.0
    compaction_min_entries: int = 5000
    compaction_min_time: float = 60.0
    # fdatasync the log before a write is acknowledged (consensus.durable_log).
    durable: bool = True


@dataclass(frozen=True, slots=True)
class RaftStatus:
    role: Role
    is_leader: bool
    leader: str | None
    term: int
    commit_index: int
    last_applied: int
    has_quorum: bool
    partners: tuple[str, ...]
    connected_partners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """How far this node's replica is from the cluster's committed state.

    `caught_up` turns true once the replica has applied everything a leader said was
    committed (a leader: once its own election entry is applied) and stays true while this
    process runs: a node that joins, restarts or lost its log reports `caught_up` false until
    then, so it neither serves reads from an empty or old state nor offers itself for tasks.
    `behind` is how many committed entries it still has to apply (None without a leader)."""

    caught_up: bool
    leader: str | None
    applied: int
    leader_commit: int | None

    @property
    def behind(self) -> int | None:
        if self.leader_commit is None:
            return None
        return max(0, self.leader_commit - self.applied)

    def describe(self) -> str:
        if self.caught_up:
            return "in step with the cluster"
        if self.leader is None:
            return "catching up: no leader heard from yet"
        return f"catching up: {self.behind} committed entries behind the leader"


# pysyncobj keeps these private. Every private name Shoal touches is listed here and nowhere
# else, and tests/unit/consensus/test_pysyncobj_canary.py fails if an upgrade renames one
# (a rename would otherwise make `getattr(..., default)` silently do nothing).
_PRIVATE_FIELDS = (
    "_SyncObj__raftElectionDeadline",
    "_SyncObj__noopIDx",
    # The commit index the leader last sent; a member's own commit index stops at the end
    # of the log it holds, so only this one says how far behind it is.
    "_SyncObj__leaderCommitIndex",
    # The journal and the transport, wrapped by consensus.durable_log so that entries are
    # fdatasynced before a follower acknowledges them and before a leader commits them.
    "_SyncObj__raftLog",
    "_SyncObj__transport",
    # Its message handler, called through consensus.append_entries.reconcile so that a
    # follower truncates its log only on a real conflict.
    "_SyncObj__onMessageReceived",
    # The pipe its poller watches: poked so that a leader alone wakes to commit at once.
    "_SyncObj__pipeNotifier",
    # Its snapshot file's reader, wrapped by _keep_journal_after_dump.
    "_SyncObj__serializer",
)
# Methods called by name: its own answers to "do I lead?" and "whom do I follow?"
# (`getStatus` has both, but builds a dict of everything on every call).
_PRIVATE_METHODS = ("_isLeader", "_getLeader")
PYSYNCOBJ_PRIVATE = _PRIVATE_FIELDS + _PRIVATE_METHODS
(
    _ELECTION_DEADLINE,
    _NOOP_INDEX,
    _LEADER_COMMIT,
    _RAFT_LOG,
    _TRANSPORT,
    _ON_MESSAGE,
    _PIPE_NOTIFIER,
    _SERIALIZER,
) = _PRIVATE_FIELDS


# Its TCP connection's read step, frame parser and read buffer: wrapped by _guard_raft_port;
# its socket, replaced by a TlsSocket over it (_TlsTransport).
_CONNECTION_PRIVATE = (
    "_TcpConnection__processRead",
    "_TcpConnection__processParseMessage",
    "_TcpConnection__readBuffer",
    "_TcpConnection__socket",
)
PYSYNCOBJ_CONNECTION_PRIVATE = _CONNECTION_PRIVATE
(_PROCESS_READ, _PARSE_MESSAGE, _READ_BUFFER, _SOCKET) = _CONNECTION_PRIVATE

# Its TCP transport's connection tables and the steps _TlsTransport overrides (a rename
# would leave a connection without TLS, or pysyncobj's key exchange on a TLS one).
PYSYNCOBJ_TRANSPORT_PRIVATE = (
    "_connections",
    "_onNewIncomingConnection",
    "_onIncomingMessageReceived",
    "_onOutgoingConnected",
    "_onOutgoingMessageReceived",
    "_onMessageReceived",
)

# Its journal's writer of the meta file (term, vote, commit index), whose `storeMeta`
# consensus.durable_log replaces with one that syncs the file before renaming it into place.
PYSYNCOBJ_JOURNAL_PRIVATE = ("_FileJournal__metaStorer",)
(_META_STORER,) = PYSYNCOBJ_JOURNAL_PRIVATE

# Frames on the Raft port: pysyncobj reads a 4-byte length and buffers until that many bytes
# arrived, up to 2 GiB, growing its buffer by concatenation on the Raft thread (64 MiB of
# junk behind one length took 22 s of that thread and 64 MiB of memory). Over TLS no frame
# is read before the peer's handshake with a cluster certificate completed (a handshake that
# does not within _HANDSHAKE_TIMEOUT is cut); from then on frames of up to _MAX_FRAME (a
# 4 MiB API body, pickled, with room to spare). On a connection of the release before (no
# TLS, during a rolling upgrade), a peer that has not yet sent one frame that decrypts with
# the cluster key may send a first frame of at most _FIRST_FRAME (its key exchange is far
# smaller) and have at most _UNTRUSTED_BUFFER waiting.
_FIRST_FRAME = 64 * 1024
_UNTRUSTED_BUFFER = 1024 * 1024
_MAX_FRAME = 16 * 1024 * 1024
_HANDSHAKE_TIMEOUT = 3.0


@dataclass(slots=True)
class RaftPortDrops:
    """Connections to or from this node's Raft port dropped: `handshake` (no TLS handshake
    with a certificate of the cluster's CA within the bound: another CA, none, not TLS),
    `oversized` (a frame length above the bound, or negative), `malformed` (a frame that did
    not unpickle to a message or, on a connection of the release before, did not decrypt
    with the cluster key, or was replayed), `refused` (a certified peer that claimed a Raft
    address other than its node's own, or sent one of pysyncobj's utility commands)."""

    handshake: int = 0
    oversized: int = 0
    malformed: int = 0
    refused: int = 0
    # Messages, not connections: from a peer that is not a voter, anything but what
    # `_non_voter_may_send` allows; a second vote from one voter in a term (_filter_messages).
    not_a_voter: int = 0


RAFT_PORT_DROPS = RaftPortDrops()


def _guard_raft_port() -> None:
    """Bound every frame pysyncobj reads and count the connections dropped for a bad one.
    Patched on the class, as safe_pickle patches its unpickler: every connection, incoming
    or outgoing, of every replica in this process."""
    read = getattr(TcpConnection, _PROCESS_READ)
    parse = getattr(TcpConnection, _PARSE_MESSAGE)

    def bounded_read(conn: Any) -> bool:
        more = bool(read(conn))
        buffer = getattr(conn, _READ_BUFFER)
        trusted = getattr(conn, "shoal_trusted", False)
        if len(buffer) >= 4:
            (size,) = struct.unpack("i", buffer[:4])
            too_much = not trusted and len(buffer) > _UNTRUSTED_BUFFER
            if too_much or not 0 <= size <= (_MAX_FRAME if trusted else _FIRST_FRAME):
                RAFT_PORT_DROPS.oversized += 1
                conn.disconnect()
                return False
        return more

    def counted_parse(conn: Any) -> Any:
        message = parse(conn)
        if message is not None:
            conn.shoal_trusted = True
        elif conn.state == CONNECTION_STATE.DISCONNECTED:
            RAFT_PORT_DROPS.malformed += 1
        return message

    setattr(TcpConnection, _PROCESS_READ, bounded_read)
    setattr(TcpConnection, _PARSE_MESSAGE, counted_parse)


_guard_raft_port()


@dataclass(frozen=True, slots=True)
class RaftTls:
    """How a replica secures its connections: mutual TLS 1.3 with the node's certificate.
    `contexts()` gives the current (server, client) contexts, both requiring the peer's
    certificate to chain to a CA the cluster trusts; it is asked for every new connection, so
    a renewed certificate or a rotated CA applies without a restart. While `plain()` is true
    (a rolling upgrade from the release before, which has no TLS), connections without TLS
    are made and accepted too, under pysyncobj's own encryption with the node's password;
    it is asked on the Raft thread at every tick, and plain connections are cut as soon as
    it says false."""

    contexts: Callable[[], tuple[ssl.SSLContext, ssl.SSLContext]]
    plain: Callable[[], bool] = lambda: False


class _TlsTransport(TCPTransport):
    """pysyncobj's TCP transport with a TlsSocket under every connection. pysyncobj's own
    encryption (Fernet, one key for the cluster) is off for the replica; a plain connection
    of the release before gets it on that connection alone."""

    def __init__(
        self,
        syncObj: SyncObj,
        selfNode: Any,
        otherNodes: Any,
        *,
        tls: RaftTls,
        password: str,
        admits: Callable[[str, str], bool],
    ) -> None:
        self._tls = tls
        self._admits = admits
        self._plain_key = getEncryptor(password)
        # Connections whose handshake is under way, with its deadline; plain connections.
        self._handshakes: dict[TcpConnection, tuple[TlsSocket, float]] = {}
        self._plain: set[TcpConnection] = set()
        super().__init__(syncObj, selfNode, otherNodes)
        syncObj.addOnTickCallback(self._police)

    # -- pysyncobj's steps ------------------------------------------------------------
    def addNode(self, node: Any) -> None:
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is not None and "connect" not in vars(conn):
            conn.connect = functools.partial(self._dial, conn, node, conn.connect)

    def _onNewIncomingConnection(self, conn: TcpConnection) -> None:
        super()._onNewIncomingConnection(conn)
        self._secure(conn, server=True)

    def _onIncomingMessageReceived(self, conn: TcpConnection, message: Any) -> None:
        if conn.encryptor is not None and not conn.sendRandKey:  # a plain peer's key exchange
            conn.sendRandKey = message
            conn.recvRandKey = os.urandom(32)
            conn.send(conn.recvRandKey)
            return
        # The first message names the peer. pysyncobj also takes "utility" commands here (a
        # list: add or remove a voter, transfer leadership, set the code version) from any
        # connection; Shoal changes membership only through its API, so they are refused.
        if isinstance(message, list) or not self._admitted(conn, message):
            RAFT_PORT_DROPS.refused += 1
            log.warning("raft connection refused: it claimed to be %.100r", message)
            conn.disconnect()
            return
        super()._onIncomingMessageReceived(conn, message)

    def _admitted(self, conn: TcpConnection, claimed: Any) -> bool:
        wrapped = getattr(conn, _SOCKET)
        if not isinstance(wrapped, TlsSocket) or wrapped.passthrough:
            return True  # a plain peer of the release before: the cluster key, but no name
        node_id = wrapped.peer_name()
        return isinstance(claimed, str) and node_id is not None and self._admits(node_id, claimed)

    def _onOutgoingConnected(self, conn: TcpConnection) -> None:
        if conn.encryptor is None:
            super()._onOutgoingConnected(conn)
            return
        conn.setOnMessageReceivedCallback(functools.partial(self._onOutgoingMessageReceived, conn))
        conn.recvRandKey = os.urandom(32)
        conn.send(conn.recvRandKey)

    # -- TLS --------------------------------------------------------------------------
    def _dial(
        self,
        conn: TcpConnection,
        node: Any,
        connect: Callable[[str, int], bool],
        host: str,
        port: int,
    ) -> bool:
        if not connect(host, port):
            return False
        conn.shoal_trusted = False
        # TLS first; plain only while the cluster allows it and only right after this peer
        # hung up on TLS (it runs the release before).
        plain, conn.shoal_plain_next = getattr(conn, "shoal_plain_next", False), False
        if plain and self._tls.plain():
            conn.encryptor = self._plain_key
            self._plain.add(conn)
        else:
            conn.encryptor = None
            # A plain connection cut during its key exchange left the exchange's handler.
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            self._secure(conn, server=False)
        return True

    def _secure(self, conn: TcpConnection, *, server: bool) -> None:
        server_context, client_context = self._tls.contexts()
        wrapped = TlsSocket(
            getattr(conn, _SOCKET),
            server_context if server else client_context,
            server=server,
            on_established=functools.partial(self._established, conn),
            on_failed=functools.partial(self._failed, conn),
            plain=functools.partial(self._let_plain, conn) if server else None,
        )
        setattr(conn, _SOCKET, wrapped)
        conn.shoal_trusted = False
        self._handshakes[conn] = (wrapped, time.monotonic() + _HANDSHAKE_TIMEOUT)

    def _established(self, conn: TcpConnection) -> None:
        conn.shoal_trusted = True
        self._handshakes.pop(conn, None)

    def _failed(self, conn: TcpConnection, why: str) -> None:
        if self._handshakes.pop(conn, None) is not None:
            RAFT_PORT_DROPS.handshake += 1
            log.debug("raft connection dropped: TLS handshake failed: %s", why)

    def _let_plain(self, conn: TcpConnection) -> bool:
        if not self._tls.plain():
            return False
        conn.encryptor = self._plain_key
        self._handshakes.pop(conn, None)
        self._plain.add(conn)
        return True

    def _police(self) -> None:
        """Every tick: cut handshakes past their deadline, and plain connections once the
        cluster no longer allows them (they come back over TLS)."""
        if self._handshakes:
            now = time.monotonic()
            for conn, (wrapped, deadline) in list(self._handshakes.items()):
                if (
                    conn.state == CONNECTION_STATE.DISCONNECTED
                    or getattr(conn, _SOCKET) is not wrapped
                ):
                    del self._handshakes[conn]
                    conn.shoal_plain_next = not wrapped.server  # the peer hung up on TLS
                elif now >= deadline:
                    del self._handshakes[conn]
                    RAFT_PORT_DROPS.handshake += 1
                    conn.disconnect()
                    conn.shoal_plain_next = not wrapped.server
        cut = not self._tls.plain()  # asked every tick: the gate may seal itself now
        if self._plain:
            for conn in list(self._plain):
                if conn.state == CONNECTION_STATE.DISCONNECTED or conn.encryptor is None:
                    self._plain.discard(conn)
                elif cut:
                    self._plain.discard(conn)
                    conn.disconnect()


# pysyncobj's election timer, held this far ahead while PreVote decides when to elect.
_HELD_BACK = 3600.0


def _wake_lone_leader(syncobj: SyncObj) -> None:
    """Every tick: a leader with no partners that has just appended entries pokes its own
    poller, so the next tick commits them now. pysyncobj counts the quorum at the start of
    a tick and appends new commands at its end; with partners, their answers end the wait
    on the poller, but alone nothing did, and every write and read barrier of a one-node
    cluster waited out the whole 50 ms tick."""
    if syncobj.otherNodes or not syncobj._isLeader():
        return
    journal = getattr(syncobj, _RAFT_LOG)
    if len(journal) and journal[-1][1] > syncobj.raftCommitIndex:
        getattr(syncobj, _PIPE_NOTIFIER).notify()


def _keep_journal_after_dump(syncobj: SyncObj) -> None:
    """On start, pysyncobj loads its dump and keeps the journal only if the journal begins
    exactly where the dump ends; otherwise it clears it. A process stopped after a dump was
    written but before it dropped the journal's entries up to the dump (a compaction's last
    step, one tick later) restarted with every entry committed after the dump gone:
    acknowledged writes lost. Drop that prefix first, so the journal begins where the dump
    ends and everything after it is kept."""
    serializer = getattr(syncobj, _SERIALIZER)
    journal = getattr(syncobj, _RAFT_LOG)
    deserialize = serializer.deserialize

    def aligned() -> Any:
        data = deserialize()
        before, last = data[2], data[1]  # the entries at the dump's end: (command, index, term)
        if len(journal) > 2:
            start = before[1] - journal[0][1]
            if 0 < start < len(journal) - 1 and (journal[start], journal[start + 1]) == (
                before,
                last,
            ):
                journal.deleteEntriesTo(start)
        return data

    serializer.deserialize = aligned


class _SnapshotOnPickle:
    """Stands for the state in pysyncobj's snapshot data and turns into its msgpack only when
    pickled. pysyncobj asks for the data on its Raft thread, forks, and pickles in the child
    (`useFork`, on by default): the child holds the state exactly as it was at the fork, and
    the Raft thread no longer spends a second or more of a large state's serialization while
    its followers wait for heartbeats. It pickles exactly as the bytes themselves would (under
    pysyncobj's protocol 2, bytes are `_codecs.encode(text, "latin1")`), so dump files and the
    restricted unpickler are unchanged."""

    __slots__ = ("_state",)

    def __init__(self, state: ClusterState) -> None:
        self._state = state

    def __reduce__(self) -> tuple[Callable[[str, str], bytes], tuple[str, str]]:
        return codecs.encode, (self._state.to_msgpack().decode("latin1"), "latin1")


def _forgive_busy_time(syncobj: SyncObj | None, busy: float) -> None:
    """Push a follower's election deadline back by the time its Raft thread just spent
    applying. pysyncobj checks the deadline at the start of its next tick, before reading the
    heartbeats that arrived meanwhile, so a follower busy applying a large round for longer
    than the election timeout called an election against a live leader (ten per 100,000-task
    benchmark run). Heard-from-the-leader time is what the timeout is about; a leader that
    really died is still detected, `busy` seconds later."""
    if syncobj is None or busy < 0.01:
        return
    if hasattr(syncobj, _ELECTION_DEADLINE):
        setattr(syncobj, _ELECTION_DEADLINE, getattr(syncobj, _ELECTION_DEADLINE) + busy)


def _term_at(journal: Any, index: int | None) -> int | None:
    """The term of log entry `index` in a pysyncobj journal (None if it does not hold it)."""
    if index is None or not len(journal):
        return None
    position = index - journal[0][1]
    return journal[position][2] if 0 <= position < len(journal) else None


def _log_position(syncobj: SyncObj) -> LogPosition:
    journal = getattr(syncobj, _RAFT_LOG)
    last = journal[-1] if len(journal) else (None, 0, 0)
    return LogPosition(syncobj.raftCurrentTerm, last[1], last[2])


# pysyncobj takes every message from any connection, a read-only one included, and counts
# every `response_vote` it gets, the same voter's twice too. So any node with a certificate of
# the cluster could raise a voter's term, send it entries as a leader, make a candidate leader
# with votes of its own making, have any command written (one no replica can apply halts
# every replica, from its journal again after a restart; and the cluster's level, below which
# forwarded commands were let through, is what each node announces), hold every voter's
# election back with pre-votes, or make each of the leader's ticks raise before its
# heartbeats went out with an answer that is no whole number.
_READ_BARRIER = bytes([raft_files.REGULAR]) + pysyncobj_pickle.dumps(raft_files.BARRIER_METHOD_ID)


def _non_voter_may_send(message: Any, barriers_allowed: bool) -> bool:
    """A read-only replica's answer to the leader's entries, in whole numbers as pysyncobj
    sends it, and, while `barriers_allowed`, the read barrier a read-only replica of the
    release before forwards, exactly as pysyncobj encodes it."""
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "next_node_idx":
        return (
            type(message.get("next_node_idx")) is int
            and type(message.get("reset")) is bool
            and type(message.get("success")) is bool
        )
    return kind == "apply_command" and barriers_allowed and message.get("command") == _READ_BARRIER


def _filter_messages(
    syncobj: SyncObj,
    prevote: PreVote | None,
    rounds: ReadRounds | None = None,
    writes_from_voters_only: Callable[[], bool] = lambda: True,
) -> None:
    """Route the messages pysyncobj receives (on its thread) through `reconcile`, so that a
    follower truncates its log only on a real conflict; answer PreVote's and ReadIndex's
    own; drop a second vote from one voter in a term, and from a peer that is no voter
    everything but what `_non_voter_may_send` allows (its forwarded read barriers only until
    `writes_from_voters_only()`: no node of this release needs them)."""
    handle = getattr(syncobj, _ON_MESSAGE)
    journal = getattr(syncobj, _RAFT_LOG)
    transport = getattr(syncobj, _TRANSPORT)
    votes_counted: dict[str, int] = {}  # voter id -> the last term its vote was counted in

    def term_at(index: int) -> int | None:
        return _term_at(journal, index)

    def from_voter(node: Any) -> bool:
        return any(other.id == node.id for other in syncobj.otherNodes)

    def filtered(node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if not from_voter(node):
            if not _non_voter_may_send(message, not writes_from_voters_only()):
                RAFT_PORT_DROPS.not_a_voter += 1
                return
        elif kind == "response_vote":
            term = message.get("term")
            if votes_counted.get(node.id) == term:
                RAFT_PORT_DROPS.not_a_voter += 1
                return
            votes_counted[node.id] = term
        if kind == "append_entries":
            if prevote is not None and message.get("term", -1) >= syncobj.raftCurrentTerm:
                prevote.heard_leader(time.monotonic())
            if len(journal):
                message = reconcile(message, journal[-1][1], term_at)
        elif kind == prevote_core.REQUEST:
            if prevote is not None:
                granted = prevote.grants(
                    time.monotonic(), message, _log_position(syncobj), syncobj._isLeader()
                )
                transport.send(
                    node,
                    {
                        "type": prevote_core.RESPONSE,
                        "term": message.get("term"),
                        "granted": granted,
                    },
                )
            return
        elif kind == prevote_core.RESPONSE:
            if prevote is not None:
                prevote.on_response(message, node.id, len(syncobj.otherNodes) + 1)
            return
        elif rounds is not None and isinstance(kind, str) and rounds.on_message(node, message):
            return
        handle(node, message)

    transport.setOnMessageReceivedCallback(filtered)


def _prevote_tick(syncobj: SyncObj, prevote: PreVote) -> None:
    """Every tick of a voter: hold pysyncobj's own election timer back, tell PreVote when
    the connection to the leader is down, ask for pre-votes when its timer runs out, and
    release the election once a majority said yes."""
    if syncobj._isLeader() or syncobj.selfNode is None:
        prevote.heard_leader(time.monotonic())
        return
    now = time.monotonic()
    leader = syncobj._getLeader()
    if leader is not None and not syncobj.isNodeConnected(leader):
        prevote.leader_link_lost(now)
    position = _log_position(syncobj)
    action = prevote.on_tick(now, position, len(syncobj.otherNodes) + 1, syncobj.selfNode.id)
    if action is prevote_core.Action.ELECT:
        setattr(syncobj, _ELECTION_DEADLINE, 0)
        # Elect on the next tick, not after the poller's whole wait.
        getattr(syncobj, _PIPE_NOTIFIER).notify()
        return
    setattr(syncobj, _ELECTION_DEADLINE, now + _HELD_BACK)
    if action is prevote_core.Action.ASK:
        request = prevote.request(position)
        transport = getattr(syncobj, _TRANSPORT)
        for node in syncobj.otherNodes:
            transport.send(node, request)


def _read_rounds_of(syncobj: SyncObj) -> ReadRounds:
    transport = getattr(syncobj, _TRANSPORT)

    def committed_in_term() -> bool:
        noop = getattr(syncobj, _NOOP_INDEX)
        return noop is not None and syncobj.raftCommitIndex >= noop

    hooks = RaftHooks(
        send=transport.send,
        notify=getattr(syncobj, _PIPE_NOTIFIER).notify,
        is_leader=syncobj._isLeader,
        leader=syncobj._getLeader,
        committed_in_term=committed_in_term,
    )
    return ReadRounds(syncobj, hooks)


class _Replica(SyncObjConsumer):
    """The replicated object. Its snapshot is the msgpack of the ClusterState. Only the Raft
    thread touches `state`; it publishes `version`, for every reader, once per batch of
    committed entries it applies: after the last one, and at every tick (a batch may end in
    an entry of pysyncobj's own)."""

    def __init__(
        self,
        on_change: Callable[[], None],
        observe_apply: Callable[[float], None] = lambda seconds: None,
        feed: FeedSource | None = None,
    ) -> None:
        super().__init__()
        self._feed = feed
        self.state = ClusterState()
        self.version: StateVersion = version_of(self.state)
        # pysyncobj's index of the last log entry `version` shows the effect of.
        self.published_entry = 0
        self._on_change = on_change
        self._observe_apply = observe_apply

    def _serialize(self) -> dict[str, _SnapshotOnPickle]:
        # Called on the Raft thread, which is also the only one that applies commands: the
        # state cannot change between this call and the fork that pickles it.
        return {"state": _SnapshotOnPickle(self.state)}

    def _deserialize(self, data: dict[str, bytes]) -> None:
        restored = ClusterState.from_msgpack(data["state"])
        self.state = restored
        self.version = version_of(restored)
        if self._feed is not None:
            self._feed.ring.restart_at(restored.applied)
        # A restart from the dump file, or a leader's snapshot for a replica that is behind
        # the leader's log (a joining node, one that was away through a compaction).
        log.info("raft replica loaded a snapshot holding %d applied commands", restored.applied)
        self._on_change()

    @replicated
    def apply(self, data: bytes) -> PlainResult:
        started = time.monotonic()
        result = self.state.apply_bytes(data)
        if self._feed is not None:
            self._feed.ring.append(self.state.applied, data)
        so = self._syncObj
        if so is None or so.raftCommitIndex <= so.raftLastApplied + 1:  # the batch's last
            self.publish(so.raftLastApplied + 1 if so is not None else 0)
        busy = time.monotonic() - started
        _forgive_busy_time(self._syncObj, busy)
        self._observe_apply(busy)
        return result.to_plain()

    def publish(self, entry: int) -> None:
        """On the Raft thread: show readers what it applied since it last published, up to
        log entry `entry` (pysyncobj counts the entry being applied once `apply` returns)."""
        changed = self.version.applied != self.state.applied
        if changed:
            self.version = next_version(self.version, self.state)
        # Without a change, an entry of pysyncobj's own (an election's no-op, a voter change):
        # nothing for readers to see, but a read that waits for this entry is told it has
        # applied. The entry is set before the loop is woken: the wake can run at once (this
        # thread lets go of the interpreter to signal it), and a read that looked before the
        # entry was set waited for a change that might never come.
        wake = changed or entry > self.published_entry
        self.published_entry = entry
        if wake:
            self._on_change()

    @replicated
    def barrier(self) -> int:
        """A read barrier: changes nothing, and returns how many commands the state had
        applied when it committed. Committing it proves the leader that appended it still
        led after the read began (a quorum accepted the entry in its term), and every write
        acknowledged before then is among those commands. pysyncobj numbers replicated
        methods by name, so adding this one left `apply`'s number (0) as it was."""
        return self.state.applied

    @replicated
    def batch(self, commands: list[bytes]) -> list[PlainResult]:
        """Several proposals in one entry (consensus.proposals), applied in order exactly as
        if each were an entry of its own. Named to sort after `barrier`, so the numbers
        pysyncobj gave `apply` and `barrier` stay as they were."""
        return [self.apply(data, _doApply=True) for data in commands]


class RaftNode:
    """Owns the current pysyncobj replica of this node and bridges it to asyncio."""

    def __init__(
        self,
        *,
        data_dir: str,
        address: str,
        password: str | None,
        tuning: RaftTuning = RaftTuning(),
        observe_apply: Callable[[float], None] = lambda seconds: None,
        may_batch: Callable[[], bool] = lambda: True,
        may_read_index: Callable[[], bool] = lambda: True,
        tls: RaftTls | None = None,
        start_follower: StartFollower | None = None,
    ) -> None:
        """`observe_apply` is told how long each committed entry took to apply (on the Raft
        thread: it must be quick and thread-safe). `may_batch` says whether every node can
        apply a `batch` entry (consensus.protocol.BATCH): until then each proposal is an
        `apply` entry of its own. `may_read_index` says whether every voter answers
        ReadIndex's messages (consensus.protocol.READ_INDEX): until then a linearizable read
        commits a barrier entry. With `tls`, connections run over mutual TLS and
        `password` keys only the plain ones `tls.plain` allows; without it, pysyncobj's own
        encryption under `password` (for replicas of one process, in tests), or none at all
        when it is None (to measure what encryption costs). With `start_follower`, a member
        follows a voter's feed instead of running a read-only replica."""
        self._tls = tls
        self._dir = os.path.join(data_dir, "raft")
        self._observe_apply = observe_apply
        self._may_batch = may_batch
        self._may_read_index = may_read_index
        self._read_rounds: ReadRounds | None = None
        # Entries this node wrote holding several proposals.
        self.batched_entries = 0
        self.address = address
        self._password = password
        self._tuning = tuning
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncobj: SyncObj | None = None
        self._replica: _Replica | None = None
        # Reads come from here; during a role change it is the old replica until the new one
        # has caught up, so readers never see the state go backwards.
        self._serving: _Replica | Follower | None = None
        self._start_follower = start_follower
        self._follower: Follower | None = None
        # What this node serves the members that follow it, while it votes.
        # It keeps as many entries as the Raft log before compaction: a member that fell
        # further behind gets a snapshot, as a Raft follower would.
        self.feed_source = FeedSource(AppliedRing(tuning.compaction_min_entries))
        self.role: Role = "member"
        self._changed = asyncio.Condition()
        self._change_pending = threading.Event()
        self._subscribers: list[asyncio.Event] = []
        self.version = 0
        # See progress(): false until this process has seen its replica reach a commit index
        # a leader announced. A role change keeps it: reads stay on the old replica meanwhile.
        self._caught_up = False
        self._catch_up_target: int | None = None
        # Read rounds: at most one in flight; readers that arrive meanwhile share the next.
        self._read_round_running = False
        self._read_round_next: asyncio.Future[int] | None = None
        self._last_leader: Any = None
        self.durable: DurableLog | None = None
        self._proposals = ProposalBatcher(self._commit_batch)
        # The term this replica last became leader in (see _leads).
        self._won_term: int | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(
        self, role: Role, partners: list[str], *, fresh: bool = False, feed: bool = True
    ) -> None:
        """Start (or restart in another role) the replica. `fresh` wipes the journal, as a
        role change must: pysyncobj would otherwise replay the log onto restored state.
        Without `feed`, a member runs a read-only replica (voters of an older release)."""
        self._loop = asyncio.get_running_loop()
        old = self._syncobj
        if old is not None:
            old.destroy()
            self._syncobj = None
        self._stop_follower()
        self._close_durable()
        if fresh:
            shutil.rmtree(self._dir, ignore_errors=True)
        os.makedirs(self._dir, exist_ok=True)
        partners = sorted(p for p in partners if p != self.address)
        self._won_term = None
        if role == "member" and feed and self._start_follower is not None:
            self._follow(partners)
            return
        t = self._tuning
        conf = SyncObjConf(
            password=None if self._tls is not None else self._password,
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            raftMinTimeout=t.election_min,
            raftMaxTimeout=t.election_max,
            appendEntriesPeriod=t.heartbeat,
            leaderFallbackTimeout=t.leader_fallback,
            connectionRetryTime=t.reconnect,
            commandsWaitLeader=False,
            logCompactionMinEntries=t.compaction_min_entries,
            logCompactionMinTime=t.compaction_min_time,
            # journal AND full dump together: a whole-cluster restart after compaction keeps
            # its state, and compaction runs in a forked child instead of the Raft thread.
            journalFile=os.path.join(self._dir, f"{role}.journal"),
            fullDumpFile=os.path.join(self._dir, f"{role}.dump"),
            bindAddress=self.address if role == "voter" else None,
            onStateChanged=lambda _old, new: self._on_state_changed(new),
        )
        replica = _Replica(self._notify, self._observe_apply, self.feed_source)
        self_node = self.address if role == "voter" else None
        transport: Any = TCPTransport
        if self._tls is not None:
            transport = functools.partial(
                _TlsTransport,
                tls=self._tls,
                password=self._password or "",
                admits=self._admits_peer,
            )
        self._syncobj = SyncObj(
            self_node, partners, conf, consumers=[replica], transportClass=transport
        )
        _keep_journal_after_dump(self._syncobj)
        if t.durable:
            journal = getattr(self._syncobj, _RAFT_LOG)
            self.durable = DurableLog(
                journal,
                conf.journalFile,
                conf.fullDumpFile,
                getattr(self._syncobj, _TRANSPORT),
                getattr(journal, _META_STORER),
            )
            # Tick callbacks run after the tick's new entries were sent, before pysyncobj
            # polls for the answers: the leader's own sync overlaps their round trip.
            self._syncobj.addOnTickCallback(self.durable.sync)
        prevote = PreVote(t.election_min, t.election_max) if role == "voter" else None
        syncobj = self._syncobj
        rounds = None
        if role == "voter":
            rounds = self._read_rounds = _read_rounds_of(syncobj)
            syncobj.addOnTickCallback(rounds.on_tick)
        else:
            self._read_rounds = None
        _filter_messages(syncobj, prevote, rounds, self._may_read_index)
        if prevote is not None:
            syncobj.addOnTickCallback(lambda: _prevote_tick(syncobj, prevote))
        syncobj.addOnTickCallback(self._watch_leader)
        syncobj.addOnTickCallback(lambda: replica.publish(syncobj.raftLastApplied))
        syncobj.addOnTickCallback(lambda: self.feed_source.on_tick(replica.state))
        if role == "voter":
            syncobj.addOnTickCallback(lambda: _wake_lone_leader(syncobj))
        if self._serving is None or self._serving.version.applied <= 0:
            self._serving = replica
        self._replica = replica
        self.role = role
        log.info("raft replica started as %s with partners %s", role, partners)

    def _admits_peer(self, node_id: str, claimed: str) -> bool:
        """On the Raft thread: whether the node a peer's certificate names may speak Raft as
        `claimed`. Without this, any node's certificate could open Raft as any voter."""
        serving = self._serving
        if serving is None:  # nothing to judge by yet; pysyncobj still refuses strangers
            return True
        return may_speak_raft(serving.version.table(NODES), node_id, claimed)

    def _follow(self, voters: list[str]) -> None:
        """Become a member that follows a voter's feed. Reads stay on the old replica's
        last version until the follower has caught up with it (`_wake`)."""
        assert self._start_follower is not None
        self._replica = None
        self._follower = self._start_follower(voters, self._notify)
        if self._serving is None or self._serving.version.applied <= 0:
            self._serving = self._follower
        self.role = "member"
        log.info("following the voters' feed (voters %s)", voters)

    def _stop_follower(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def progress(self) -> SyncProgress:
        """Where this replica stands against the cluster's commit index (see SyncProgress).
        Called on the event loop only; the Raft thread's fields read here are single ints."""
        if self._follower is not None:
            followed = self._follower.progress()
            self._caught_up = self._caught_up or followed.caught_up
            return replace(followed, caught_up=self._caught_up)
        so = self._syncobj
        if so is None:
            return SyncProgress(self._caught_up, None, 0, None)
        leader = self.leader()
        # What readers see: the log entries applied and published (consensus.store).
        applied = self._replica.published_entry if self._replica is not None else 0
        if leader is None:
            return SyncProgress(self._caught_up, None, applied, None)
        if so._isLeader():
            commit: int | None = so.raftCommitIndex
            reached = self._committed_in_term()
        else:
            commit = getattr(so, _LEADER_COMMIT)
            reached = True
        if not self._caught_up and reached and commit is not None:
            # Under load the commit index moves on while entries are applied: aim at the
            # first one heard of, which the replica does reach, rather than a moving target.
            if self._catch_up_target is None:
                self._catch_up_target = commit
            if applied >= self._catch_up_target:
                self._caught_up = True
                log.info("raft replica caught up with the cluster at index %d", applied)
        return SyncProgress(self._caught_up, leader, applied, commit)

    async def wait_caught_up(self, report_every: float = 10.0) -> None:
        """Wait, without a deadline, until this replica holds the cluster's committed state:
        after a restart its journal may be old, and a new node may still be receiving the
        leader's snapshot. Says how far it still has to go every `report_every` seconds."""
        loop = asyncio.get_running_loop()
        seen = self.version
        next_report = loop.time() + report_every
        while not (progress := self.progress()).caught_up:
            if loop.time() >= next_report:
                log.info("raft replica %s", progress.describe())
                next_report = loop.time() + report_every
            seen = await self.wait_changed(seen, timeout=0.25)

    def _committed_in_term(self) -> bool:
        """A leader knows what is committed only once an entry of its own term is: until its
        election no-op commits, its commit index may still be the snapshot's (Raft §5.4.2),
        and the journal's later entries are not applied yet. pysyncobj keeps that entry's
        index privately; followers learn the commit index from such a leader."""
        so = self._syncobj
        if so is None or not so._isLeader():
            return True
        noop = getattr(so, _NOOP_INDEX)
        return noop is not None and so.raftLastApplied >= noop

    def stop(self) -> None:
        self._stop_follower()
        if self._syncobj is not None:
            self._syncobj.destroy()
            self._syncobj = None
        self._close_durable()

    def _close_durable(self) -> None:
        if self.durable is not None:
            self.durable.close()
            self.durable = None

    # -- reads ------------------------------------------------------------------------
    def view(self) -> StateVersion:
        """The current version of the state served to readers (consensus.store): taken
        without a lock, it stays whole and unchanged while later commands apply."""
        replica = self._serving
        assert replica is not None, "raft replica not started"
        return replica.version

    def applied(self) -> int:
        """How many commands the state served to readers has applied."""
        replica = self._serving
        return replica.version.applied if replica is not None else 0

    async def read_index(self, timeout: float = 5.0) -> int:
        """The ReadIndex of a linearizable read: the applied count of a state that holds every
        write acknowledged before this call. The leader confirms that it still led after
        this call began, with one round of messages to a quorum (consensus.read_index), and
        names its commit index; this node answers once it has applied that far. Until every
        voter speaks ReadIndex (a rolling upgrade), a barrier entry committed through the
        leader confirms it instead. Concurrent readers share one round: a reader that
        arrives while one is in flight waits for the next, which starts after it arrived.
        A round lost to a change of leader is retried; raises NoQuorum if none is confirmed
        within `timeout`."""
        if self._follower is not None:
            return await self._follower.read_index(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = "no leader known"
        while (remaining := deadline - loop.time()) > 0:
            seen = self.version
            try:
                return await self._shared_read_round(remaining)
            except NoQuorum:
                break
            except ProposeError as exc:  # a read changes nothing: any failure may be retried
                last = str(exc)
            await self.wait_changed(seen, timeout=max(0.0, min(0.25, deadline - loop.time())))
        raise NoQuorum(
            f"no read index confirmed within {timeout:g} s ({last}): the "
            f"cluster has no quorum or this node cannot reach the leader"
        )

    async def _shared_read_round(self, timeout: float) -> int:
        waiting = self._read_round_next
        if waiting is None:
            waiting = self._read_round_next = asyncio.get_running_loop().create_future()
            if not self._read_round_running:
                self._start_read_round(waiting, timeout)
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(waiting)
        except TimeoutError:
            raise NoQuorum("timed out") from None

    def _start_read_round(self, waiting: asyncio.Future[int], timeout: float) -> None:
        """Run the round `waiting` stands for; readers that arrive meanwhile share the next."""
        self._read_round_next = None
        self._read_round_running = True
        asyncio.ensure_future(self._read_round(waiting, timeout))

    async def _read_round(self, waiting: asyncio.Future[int], timeout: float) -> None:
        try:
            replica = self._replica
            if replica is None or self.leader() is None:
                raise NotLeader("no leader known to confirm the read")
            rounds = self._read_rounds
            if rounds is not None and self._serving is replica and self._may_read_index():
                index = await self._confirmed_read(rounds, replica, timeout)
            else:
                index = await self._call(lambda cb: replica.barrier(callback=cb), timeout)
            waiting.set_result(index)
        except Exception as exc:  # every reader sharing this round learns why it failed
            waiting.set_exception(exc)
            waiting.exception()  # retrieved: readers that timed out no longer await it
        finally:
            self._read_round_running = False
            if self._read_round_next is not None:
                self._start_read_round(self._read_round_next, timeout)

    async def _confirmed_read(self, rounds: ReadRounds, replica: _Replica, timeout: float) -> int:
        """One ReadIndex round: the log index the leader confirmed, then the applied count
        of this node's state once it has applied that entry."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()

        def settle(entry: int | None) -> None:  # runs on the Raft thread
            with suppress(RuntimeError):  # the loop closed during shutdown
                loop.call_soon_threadsafe(_settle_read, future, entry)

        rounds.request(settle)
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                entry = await future
        except TimeoutError:
            raise NoQuorum("timed out") from None
        if entry is None:
            raise NotLeader("no leader confirmed the read")
        applied = await self._wait_until(
            lambda: replica.published_entry >= entry, deadline - loop.time()
        )
        if not applied:
            raise NoQuorum("timed out applying up to the read index")
        return replica.version.applied

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Wait until the served state has applied `index` commands; False on timeout."""
        return await self._wait_until(lambda: self.applied() >= index, timeout)

    async def _wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait, change by change, until `done()`; False when `timeout` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = self.version
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            seen = await self.wait_changed(seen, timeout=remaining)
        return True

    def status(self) -> RaftStatus:
        if self._follower is not None:
            return self._follower.status()
        so = self._syncobj
        assert so is not None, "raft replica not started"
        # pysyncobj's thread may change term and leader between two reads: read until the
        # term is the same before and after, so one answer never pairs a leader with
        # another term's number.
        for _ in range(5):
            term = so.raftCurrentTerm
            leader, is_leader = self._leader_node(so), self._leads(so)
            if so.raftCurrentTerm == term:
                break
        partners = tuple(sorted(n.id for n in so.otherNodes))
        connected = tuple(sorted(n.id for n in so.otherNodes if so.isNodeConnected(n)))
        return RaftStatus(
            role=self.role,
            is_leader=is_leader,
            leader=leader.id if leader is not None else None,
            term=term,
            commit_index=so.raftCommitIndex,
            last_applied=so.raftLastApplied,
            has_quorum=bool(so.hasQuorum),
            partners=partners,
            connected_partners=connected,
        )

    def is_leader(self) -> bool:
        return self._syncobj is not None and self._leads(self._syncobj)

    def leader(self) -> str | None:
        if self._follower is not None:
            return self._follower.leader()
        node = self._leader_node(self._syncobj) if self._syncobj is not None else None
        return node.id if node is not None else None

    def _leads(self, so: SyncObj) -> bool:
        """Leader in the term it was elected in. pysyncobj, on hearing a higher term, sets
        the term (and syncs it to disk) before it leaves the leader state: in between it
        would claim to lead a term another node won. Its election no-op carries the term it
        won; once compaction dropped it, the term seen when it became leader does (trusting
        the claim then let a leader resumed from SIGSTOP claim its successor's term)."""
        if not so._isLeader():
            return False
        won = _term_at(getattr(so, _RAFT_LOG), getattr(so, _NOOP_INDEX))
        if won is None:
            won = self._won_term
        return won is None or won == so.raftCurrentTerm

    def _leader_node(self, so: SyncObj) -> Any:
        node = so._getLeader()
        if node is not None and node.id == self.address and not self._leads(so):
            return None
        return node

    # -- change notices ---------------------------------------------------------------
    def _on_state_changed(self, new: int) -> None:
        """Called on the Raft thread as pysyncobj changes state; it becomes leader only in
        the term it just won."""
        so = self._syncobj
        if new == _RAFT_STATE.LEADER and so is not None:
            self._won_term = so.raftCurrentTerm
        self._notify()

    def _watch_leader(self) -> None:
        """Called on the Raft thread every tick: a follower that learns of a new leader
        changes no state of its own, so without this nothing would wake the writers and
        readers waiting on the old one."""
        so = self._syncobj
        leader = so._getLeader() if so is not None else None
        if leader is not self._last_leader:
            self._last_leader = leader
            self._notify()

    def _notify(self) -> None:
        """Called on the Raft thread; coalesces a burst of applies into one wake-up."""
        if self._loop is None or self._change_pending.is_set():
            return
        self._change_pending.set()
        with suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._change_pending.clear()
        serving = self._serving
        replica = self._replica if self._replica is not None else self._follower
        if (
            replica is not None
            and serving is not replica
            and (serving is None or replica.version.applied >= serving.version.applied)
        ):
            self._serving = replica
        self.version += 1
        for event in self._subscribers:
            event.set()
        asyncio.ensure_future(self._notify_waiters())

    def subscribe(self) -> asyncio.Event:
        """An event set after every applied change and leadership change; its one owner
        clears it when it wakes (the convention of every control loop)."""
        event = asyncio.Event()
        event.set()
        self._subscribers.append(event)
        return event

    async def _notify_waiters(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_changed(self, seen_version: int, timeout: float | None = None) -> int:
        """Wait until the state or leadership changed after `seen_version`; returns the new
        version (or the same one on timeout)."""
        async with self._changed:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation
            # that arrives as the change does, and the caller's loop would never stop.
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self.version != seen_version)
            except TimeoutError:
                pass
        return self.version

    # -- writes -----------------------------------------------------------------------
    async def propose(self, cmd: Any, *, request_id: str = "", timeout: float = 5.0) -> Result:
        """Commit one command through Raft on this node (which must be the leader)."""
        data = codec.encode(cmd, request_id or uuid.uuid4().hex)
        return await self.propose_bytes(data, timeout=timeout)

    async def propose_bytes(self, data: bytes, *, timeout: float = 5.0) -> Result:
        if self._replica is None or not self.is_leader():
            raise NotLeader()
        try:
            raw = await self._proposals.propose(data, timeout)
        except TimeoutError:
            raise _not_committed(timeout) from None
        result = Result.from_plain(raw)
        # pysyncobj answers as it applies the entry, and the state is published once its
        # batch is applied: answer once this node's readers see the write.
        await self.wait_applied(result.index, timeout)
        return result

    async def _commit_batch(self, commands: list[bytes], timeout: float) -> list[Any]:
        replica = self._replica
        if replica is None or not self.is_leader():
            raise NotLeader()
        if len(commands) == 1:  # a lone write stays an entry of its own
            return [await self._apply(replica, commands[0], timeout)]
        if not self._may_batch():
            # So does each write of a round while some node may lack `batch`: they are
            # appended together all the same.
            return list(await asyncio.gather(*(self._apply(replica, c, timeout) for c in commands)))
        raw = await self._call(lambda cb: replica.batch(commands, callback=cb), timeout)
        self.batched_entries += 1
        return list(raw)

    async def _apply(self, replica: _Replica, command: bytes, timeout: float) -> Any:
        return await self._call(lambda cb: replica.apply(command, callback=cb), timeout)

    async def add_voter(self, address: str, timeout: float = 5.0) -> None:
        syncobj = self._running()
        await self._call(lambda cb: syncobj.addNodeToCluster(address, callback=cb), timeout)

    async def remove_voter(self, address: str, timeout: float = 5.0) -> None:
        syncobj = self._running()
        await self._call(lambda cb: syncobj.removeNodeFromCluster(address, callback=cb), timeout)

    def _running(self) -> SyncObj:
        if self._syncobj is None:
            raise NotLeader("raft is not running on this node")
        return self._syncobj

    async def _call(self, submit: Callable[[RaftCallback], None], timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, int]] = loop.create_future()

        def done(result: Any, error: int) -> None:  # runs on the Raft thread
            loop.call_soon_threadsafe(_settle, future, result, error)

        submit(done)
        try:
            # asyncio.timeout, not wait_for: no task of its own between the answer and the
            # caller (each is a turn of the loop behind every control loop a commit woke).
            async with asyncio.timeout(timeout):
                result, error = await future
        except TimeoutError:
            raise _not_committed(timeout) from None
        if error == FAIL_REASON.SUCCESS:
            return result
        if error in (
            FAIL_REASON.MISSING_LEADER,
            FAIL_REASON.NOT_LEADER,
            FAIL_REASON.LEADER_CHANGED,
            FAIL_REASON.DISCARDED,
        ):
            raise NotLeader(f"leadership changed before commit (reason {error})")
        if error == FAIL_REASON.QUEUE_FULL:
            raise ProposeError("raft queue is full; retry later", retryable=True)
        raise ProposeError(f"raft refused the command (reason {error})", retryable=False)


def _not_committed(timeout: float) -> NoQuorum:
    return NoQuorum(
        f"not committed within {timeout:g} s: the cluster has no quorum "
        f"or is overloaded; the outcome is unknown"
    )


def _settle_read(future: asyncio.Future[int | None], entry: int | None) -> None:
    if not future.done():
        future.set_result(entry)


def _settle(future: asyncio.Future[tuple[Any, int]], result: Any, error: int) -> None:
    if not future.done():
        future.set_result((result, error))
