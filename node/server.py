"""The composition root of one Shoal node: Raft replica, API server and control loops."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from consensus import protocol
from consensus.model import Node, Resources
from consensus.raft import RaftNode, RaftTls, RaftTuning
from consensus.store import Store
from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.service import GossipService, GossipServiceConfig
from node import config as cfg
from node.agent import Agent
from node.agent.secret_fetch import FileOpener
from node.api.app import build_app
from node.api.listen import ConnectionLimits, Listeners, listen, raise_file_limit, runner_options
from node.client import ApiError, Unreachable
from node.config import Identity, NodeConfig, Stored
from node.control import ControlPlane
from node.feed.member import FeedMember
from node.join import IncompatibleCluster, check_level, local_node, request_join
from node.local_socket import socket_path
from node.loops import Loop
from node.loops.audit import AuditTrail
from node.loops.autoscaler import Autoscaler
from node.loops.certificates import CertificateRenewal
from node.loops.demotion import DemotionLoop
from node.loops.event_feed import EventFeed
from node.loops.gossip_join import GossipJoinLoop
from node.loops.gossip_keyring import GossipKeyring
from node.loops.identity import VoterMemoryLoop
from node.loops.join_token import JoinTokenFile
from node.loops.leader_changes import LeaderChangeLoop
from node.loops.liveness import LivenessLoop
from node.loops.metrics_reporter import STALE_INTERVALS, MetricsReporter
from node.loops.protocol import ProtocolLevels, announcement
from node.loops.registration import RegistrationLoop
from node.loops.snapshots import SnapshotKeeper
from node.loops.voters import VoterManager
from node.loops.wake import RateLimitedWake
from node.mesh import INGRESS_META, Mesh, MeshConfig
from node.mesh.task_dns import task_dns_servers
from node.overlay.view import seats
from node.pki import store as pki_store
from node.pki.authority import create_authority, make_csr, new_key_pem
from node.pki.authority import fingerprint as certificate_digest
from node.pki.cluster_ca import founding_node_tls, seal_ca_key
from node.pki.contexts import NodeContexts
from node.raft_gate import RaftGate, seal_tls_only
from node.runtime.driver import Driver
from node.runtime.model import NodeFingerprint
from node.secret_box import SecretBox
from node.security import ClusterKeys, JoinToken, key_hash
from node.telemetry import Sources, Telemetry
from scheduler import SchedulerLoop, StateView

if TYPE_CHECKING:
    from node.overlay.loop import Overlay

log = logging.getLogger(__name__)

# Seconds the whole node may take to shut down before its tasks are cancelled.
SHUTDOWN_TIMEOUT = 10.0
# A node probes a member every 0.6 s (memberlist's LAN profile: 1 s): with suspicion at least
# one probe interval, a killed node is down on every survivor in about 2 s instead of 3-4 s
# (bench.liveness), for about 60 B/s more gossip per node (about 160 B/s in all, quiet).
NODE_GOSSIP = GossipConfig(probe_interval=0.6, probe_timeout=0.3)
# The scheduler runs at most 20 rounds a second, however fast commits arrive: a round reads
# the whole state, and a burst of writes needs one round, not one each.
SCHEDULER_MIN_INTERVAL = 0.05
# How long a starting node waits for each voter it asks about the cluster's protocol level.
LEVEL_ASK_TIMEOUT = 3.0


def offered_resources(config: NodeConfig, fingerprint: NodeFingerprint) -> Resources:
    """What the node offers the scheduler: the fingerprint unless the operator capped it."""
    return Resources(
        config.cpus_millis or fingerprint.cpu_millis,
        config.memory_bytes or fingerprint.memory_bytes,
    )


def node_record(
    node_id: str, config: NodeConfig, fingerprint: NodeFingerprint, key_hash: str
) -> Node:
    return local_node(
        node_id, config, offered_resources(config, fingerprint), fingerprint.runtime, key_hash
    )


class ShoalNode:
    def __init__(self, stored: Stored, driver: Driver, fingerprint: NodeFingerprint) -> None:
        self.config = stored.config
        self.driver = driver
        self.fingerprint = fingerprint
        self.identity: Identity = stored.identity  # type: ignore[assignment]
        self.keys: ClusterKeys = self.identity.keys
        self.node_id = self.identity.node_id
        self.telemetry = Telemetry()
        self.tls: pki_store.NodeTls = pki_store.load_existing(self.config.data_dir)
        self.tls_contexts = NodeContexts(self.config.data_dir, self.tls)
        self.raft_gate = RaftGate(self.config.data_dir, lambda: self.levels.minimum)
        self.raft = RaftNode(
            data_dir=self.config.data_dir,
            address=self.config.raft_address,
            password=self.keys.raft_password,
            tls=RaftTls(lambda: self.tls_contexts.raft, self.raft_gate.plain),
            observe_apply=self.telemetry.raft_apply_seconds.observe,
            may_batch=lambda: self.levels.minimum >= protocol.BATCH,
            may_read_index=lambda: self.levels.minimum >= protocol.READ_INDEX,
            tuning=RaftTuning(
                compaction_min_entries=self.config.snapshot_entries,
                compaction_min_time=self.config.snapshot_interval,
            ),
            start_follower=self._follow_feed,
        )
        self.store = Store(self.raft)
        self.control = ControlPlane(
            self.raft,
            self.keys.api_token,
            self.identity.credentials,
            observe_commit=self.telemetry.raft_commit_seconds.observe,
            ssl_context=self.tls_contexts.client,
        )
        self.voters = VoterManager(self.control, self.node_id, self.config.voter_grace)
        self.gossip = GossipService(
            GossipServiceConfig(
                node_id=self.node_id,
                secret=self.keys.secret,
                host=self.config.advertise,
                port=self.config.gossip_port,
                gossip=NODE_GOSSIP,
                meta={
                    "api_port": self.config.api_port,
                    "raft_port": self.config.raft_port,
                    INGRESS_META: self.config.ingress_host,
                    **announcement(cfg.shoal_version()),
                },
            )
        )
        self.gossip_keyring = GossipKeyring(
            self.store.view, self.gossip, self.raft.subscribe(), self.keys.secret
        )
        self.levels = ProtocolLevels(self.store.view, self.gossip, self.raft.subscribe())
        self.liveness = LivenessLoop(self.control, self.gossip, self.node_id)
        files = FileOpener(self.raft.view, SecretBox(self.keys.secret), self.node_id)
        self.overlay: Overlay | None = None
        if self.config.overlay and driver.name != "docker":
            log.error(
                "--overlay needs the Docker runtime and this node runs %s: it takes no part "
                "in overlay networks",
                driver.name,
            )
        elif self.config.overlay:
            self.overlay = self._make_overlay()
        self.agent = Agent(
            node_id=self.node_id,
            driver=driver,
            read_state=self.store.view,
            changed=self.raft.subscribe(),
            submit=self.control.submit,
            advertise=self.config.task_address,
            dns_servers=task_dns_servers(self.config.advertise, self.config.dns_port),
            fill_files=files.fill,
            seats=(lambda state: seats(state, self.node_id)) if self.overlay else None,
            networks_ready=self.overlay.networks_ready if self.overlay else None,
        )
        self.mesh = Mesh(
            MeshConfig(
                node_id=self.node_id,
                ingress_address=self.config.ingress_host,
                dns_address=self.config.advertise,
                dns_port=self.config.dns_port,
                dataplane=self.config.lb_dataplane,
                lb_workers=self.config.lb_workers,
            ),
            gossip=self.gossip,
            read_state=self.store.view,
            subscribe=self.raft.subscribe,
            on_report=self.agent.on_report,
        )
        self.events = EventFeed(self._capture_view, self.raft.subscribe())
        self.audit = AuditTrail(self.control.submit)
        self.metrics = MetricsReporter(
            node_id=self.node_id,
            read_state=self.store.view,
            driver=driver,
            ingress_stats=self.mesh.ingress_stats,
            submit=self.control.submit,
            interval=self.config.metrics_interval,
        )
        self.autoscaler = Autoscaler(
            read_state=self.store.view,
            changed=self.raft.subscribe(),
            propose=self.control.submit,
            is_leader=self.raft.is_leader,
            max_age=STALE_INTERVALS * self.config.metrics_interval,
        )
        self._scheduler_wake = asyncio.Event()
        self.scheduler = SchedulerLoop(
            read_state=self._capture_view,
            changed=self._scheduler_wake,
            propose=self.control.submit,
            is_leader=self.raft.is_leader,
            observe_round=self.telemetry.scheduler_round_seconds.observe,
        )
        # The loops this node runs once it holds the cluster's state, each until cancelled.
        self.loops: list[Loop] = [
            RegistrationLoop(
                self.control,
                self.node_id,
                record=self._record,
                alone=lambda: not self.identity.voters[1:],
                cluster_id=self.keys.cluster_id,
                overlay_cidr=self.config.overlay_cidr,
                authority=self._bootstrap_authority,
            ),
            CertificateRenewal(
                node_id=self.node_id,
                names=self.config.host_names,
                lifetime=self.config.cert_lifetime,
                current=lambda: self.tls,
                root=self._current_root,
                changed=lambda seen, timeout: self.raft.wait_changed(seen, timeout=timeout),
                ask=self._ask_certificate,
                renewed=self._renewed,
            ),
            VoterMemoryLoop(self.raft, lambda: self.identity, self._save_identity),
            JoinTokenFile(self.raft, self.keys, self.config.data_dir),
            SnapshotKeeper(
                self.raft,
                self.keys,
                self.config.data_dir,
                interval=self.config.snapshot_interval,
                keep=self.config.snapshot_keep,
            ),
            self.voters,
            self.scheduler,
            RateLimitedWake(self.raft.subscribe(), self._scheduler_wake, SCHEDULER_MIN_INTERVAL),
            self.gossip_keyring,
            GossipJoinLoop(self.raft, self.gossip, self.node_id),
            self.levels,
            self.liveness,
            self.agent,
            self.events,
            self.audit,
            self.metrics,
            self.autoscaler,
            LeaderChangeLoop(
                self.telemetry.raft_leader_changes, self.raft.subscribe(), self.raft.leader
            ),
            self.mesh,
            *([self.overlay] if self.overlay is not None else []),
        ]
        self.telemetry.watch(
            Sources(
                raft_status=self.raft.status,
                read_state=self.store.view,
                gossip_members=self.gossip.members,
                gossip_stats=lambda: self.gossip.stats,
                ingress_stats=self.mesh.ingress_stats,
                scheduler_rounds=lambda: self.scheduler.rounds,
            )
        )
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._left_cluster = False
        self._runner: web.AppRunner | None = None
        self._listeners = Listeners()
        self.connection_limits = ConnectionLimits()
        self._role_lock = asyncio.Lock()
        # A member's switch to a read-only replica when the voters serve no feed.
        self._fallback: asyncio.Future[None] | None = None

    def _make_overlay(self) -> Overlay:
        # Imported here: a node without the overlay holds neither the Docker SDK nor pyroute2.
        from netoverlay.overlay.resolver import upstreams_from
        from node.overlay.docker_networks import DockerNetworks
        from node.overlay.loop import Overlay, OverlayConfig
        from node.runtime.docker_sdk import docker

        upstreams = self.config.dns_upstreams
        if not upstreams:
            with contextlib.suppress(OSError), open("/etc/resolv.conf") as conf:
                upstreams = upstreams_from(conf.read())
        config = OverlayConfig(
            node_id=self.node_id,
            local_address=self.config.advertise,
            vxlan_port=self.config.vxlan_port,
            upstreams=upstreams,
        )
        return Overlay(
            config,
            gossip=self.gossip,
            read_state=self.store.view,
            subscribe=self.raft.subscribe,
            networks=DockerNetworks(docker.from_env(), self.node_id),
            ipsec_key=self.keys.overlay_ipsec_key,
        )

    # -- creating or joining a cluster -------------------------------------------------
    @staticmethod
    async def prepare(
        config: NodeConfig,
        node_id: str,
        fingerprint: NodeFingerprint,
        join: str | None,
        token: str | None,
    ) -> Stored:
        """Load the node's identity, or create it by bootstrapping or joining a cluster.
        Nothing is saved until a join has been accepted, so a refused join can be retried."""
        stored = cfg.load(config.data_dir)
        if stored is not None and stored.identity is not None:
            identity = stored.identity
            if not identity.node_key:  # made by a version without node keys
                identity = dataclasses.replace(identity, node_key=cfg.new_node_key())
            stored = Stored(config, identity)
            cfg.save(stored)
            pki_store.load_existing(config.data_dir)
            return stored
        node_key = cfg.new_node_key()
        if join:
            tls_key = new_key_pem()
            csr = make_csr(node_id, tls_key, config.host_names)
            join_token = JoinToken.parse(token or "")
            record = node_record(node_id, config, fingerprint, key_hash(node_key))
            accepted = await request_join(
                join, join_token, record, csr, lifetime=config.cert_lifetime
            )
            identity = Identity(
                accepted.node_id,
                accepted.cluster_id,
                accepted.secret_hex,
                "member",
                accepted.voters,
                node_key,
                # Where to find a voter's feed until the state names the voters.
                voter_apis=accepted.voter_apis or (join,),
            )
            tls = pki_store.NodeTls(
                "".join(accepted.ca_certificates).encode(), accepted.certificate.encode(), tls_key
            )
        else:
            keys = ClusterKeys.generate()
            authority = create_authority(keys.cluster_id, time.time())
            # Kept until the cluster holds it sealed in its state (see RegistrationLoop).
            pki_store.save_ca_key(config.data_dir, authority.key_pem)
            tls = founding_node_tls(authority, node_id, config, time.time())
            identity = Identity(
                node_id,
                keys.cluster_id,
                keys.secret.hex(),
                "voter",
                (config.raft_address,),
                node_key,
            )
            join_token = keys.join_token(certificate_digest(authority.cert_pem), 0)
        pki_store.save(config.data_dir, tls)
        if not join:
            seal_tls_only(config.data_dir)  # a new cluster: every node speaks TLS Raft
        stored = Stored(config, identity)
        cfg.save(stored)
        cfg.write_token(config.data_dir, str(join_token))
        return stored

    def _bootstrap_authority(self) -> tuple[tuple[str, ...], bytes]:
        """The CA this node created with the cluster, for the state to hold: its certificate
        and its key sealed with the cluster secret."""
        key = pki_store.load_ca_key(self.config.data_dir)
        if key is None:
            raise RuntimeError(
                f"the cluster CA's key is missing from {pki_store.tls_dir(self.config.data_dir)}"
            )
        return (self.tls.ca_bundle.decode(),), seal_ca_key(self.keys, key)

    async def _ask_certificate(self, csr: bytes, lifetime: float) -> dict:
        """Have the leader (a voter) sign a renewed certificate for this node."""
        leader = await self.control.wait_for_leader()
        if leader is None:
            raise Unreachable("no leader to renew this node's certificate")
        return await self.control.client_for(leader).post(
            "/v1/internal/certificate", {"csr": csr.decode(), "lifetime": lifetime}
        )

    def _current_root(self) -> str:
        with self.raft.view() as state:
            roots = state.cluster.ca_certificates
        return roots[0] if roots else ""

    def _renewed(self, tls: pki_store.NodeTls) -> None:
        pki_store.save(self.config.data_dir, tls)
        self.tls = tls
        self.tls_contexts.reload(tls)

    def _record(self) -> Node:
        return node_record(
            self.node_id, self.config, self.fingerprint, self.identity.credentials.key_hash
        )

    def _capture_view(self) -> StateView:
        return StateView.capture(self.store.view())

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self) -> str:
        """Serve until asked to stop; returns why it stopped."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, f"signal {sig.name}")
        log.info("open-file limit: %d", raise_file_limit())
        try:
            await self._check_cluster_level()
        except IncompatibleCluster:
            await self.control.close()
            raise
        self.raft.start(self.identity.role, list(self.identity.voters))
        # The API answers at once (health, Raft view, role changes) but serves the state only
        # once this node holds it; gossip, the mesh and the loops start only then, so a node
        # still receiving the state is not announced alive, gets no task and runs nothing.
        await self._start_api()
        try:
            if not await self._until_caught_up():
                return self._stop_reason
            # The cluster's keys, before a first packet: the ring may have changed while
            # this node was down, and the keys it knew may be refused by now.
            self.gossip_keyring.refresh()
            await self.gossip.start()
            await self.mesh.start()
            if self.overlay is not None:
                await self.overlay.start()
            log.info(
                "node %s (%s) serving the API on %s:%d",
                self.config.name,
                self.node_id,
                self.config.advertise,
                self.config.api_port,
            )
            async with asyncio.TaskGroup() as tasks:
                running = [tasks.create_task(each.run()) for each in self.loops]
                await self._stop.wait()
                await self.scheduler.stop(SHUTDOWN_TIMEOUT / 2)
                for task in running:
                    task.cancel()
        finally:
            await self._shutdown()
        return self._stop_reason

    async def _check_cluster_level(self) -> None:
        """Before this node applies anything, raise IncompatibleCluster if the cluster's
        leader, asked among the voters this node remembers, reports a protocol level this
        release cannot read. No leader answering (a whole cluster starting) is no refusal."""
        for address in self.identity.voter_apis:
            if address == self.config.api_address:
                continue
            try:
                answer = await asyncio.wait_for(
                    self.control.client_at(address).get("/v1/cluster"), LEVEL_ASK_TIMEOUT
                )
            except (TimeoutError, ApiError, Unreachable):
                continue
            if not answer.get("this_node", {}).get("is_leader"):
                continue
            levels = answer.get("protocol")
            if not isinstance(levels, dict):  # a leader of a release before levels
                levels = {}
            check_level(
                levels.get("minimum"),
                levels.get("unheard") == 0,
                f"not starting (asked the leader at {address})",
            )
            if protocol.announced(levels.get("minimum")) >= protocol.RAFT_TLS:
                self.raft_gate.seal()
            return

    async def _until_caught_up(self) -> bool:
        """Wait until the Raft replica holds the cluster's committed state; False when the
        node is asked to stop first."""
        async with asyncio.TaskGroup() as tasks:
            caught_up = tasks.create_task(self.raft.wait_caught_up())
            stopping = tasks.create_task(self._stop.wait())
            demoted = tasks.create_task(
                DemotionLoop(
                    self.control,
                    self.node_id,
                    self.config.raft_address,
                    become_member=lambda voters: self.set_raft_role("member", voters),
                    remembered_voters=self.identity.voter_apis,
                    own_api=self.config.api_address,
                ).run()
            )
            await asyncio.wait((caught_up, stopping), return_when=asyncio.FIRST_COMPLETED)
            caught_up.cancel()
            stopping.cancel()
            demoted.cancel()
        return not self._stop.is_set()

    def request_stop(self, reason: str, left_cluster: bool = False) -> None:
        """Stop serving. Tasks outlive the node; so does its overlay, unless it `left_cluster`."""
        if not self._stop.is_set():
            log.info("stopping: %s", reason)
            self._stop_reason = reason
            self._left_cluster = left_cluster
            self._stop.set()

    async def _start_api(self) -> None:
        app = build_app(self)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=2.0,
            # a client that leaves a followed log stream ends its reader
            handler_cancellation=True,
            **runner_options(),
        )
        await self._runner.setup()
        self._listeners = await listen(
            self._runner,
            self.connection_limits,
            host=self.config.advertise,
            port=self.config.api_port,
            socket_path=socket_path(self.config.data_dir),
            tls=self.tls_contexts.server,
        )

    async def _shutdown(self) -> None:
        await self.mesh.stop()
        if self.overlay is not None:
            try:
                await asyncio.wait_for(
                    self.overlay.stop(teardown=self._left_cluster), SHUTDOWN_TIMEOUT
                )
            except TimeoutError:
                log.warning("overlay: did not stop within %g s", SHUTDOWN_TIMEOUT)
        # Tell the others we are leaving, so they need not wait for a failure verdict.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.gossip.leave(), SHUTDOWN_TIMEOUT / 4)
        await self.gossip.stop()
        self._listeners.close()
        with contextlib.suppress(OSError):
            os.unlink(socket_path(self.config.data_dir))
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), SHUTDOWN_TIMEOUT)
        await self.control.close()
        await self.driver.aclose()
        # pysyncobj's destroy only flags its thread; it is a daemon and exits with us.
        self.raft.stop()

    def _follow_feed(self, voters: list[str], notify: Callable[[], None]) -> FeedMember:
        """A member follows a voter's committed-state feed instead of running Raft."""
        return FeedMember(
            voters,
            notify,
            node_id=self.node_id,
            remembered_apis=lambda: self.identity.voter_apis,
            client_at=self.control.client_at,
            unsupported=lambda: self._fall_back_to_replica(voters),
        )

    def _fall_back_to_replica(self, voters: list[str]) -> None:
        self._fallback = asyncio.ensure_future(self._member_without_feed(voters))

    async def _member_without_feed(self, voters: list[str]) -> None:
        async with self._role_lock:
            if self.raft.role == "member":
                log.warning(
                    "the voters serve no committed-state feed (a release before it): running a "
                    "read-only Raft replica until this node restarts"
                )
                self.raft.start("member", voters, fresh=True, feed=False)

    def _save_identity(self, identity: Identity) -> None:
        self.identity = identity
        cfg.save(Stored(self.config, identity))

    # -- called by the API ------------------------------------------------------------
    async def set_raft_role(self, role: str, voter_addresses: list[str]) -> None:
        async with self._role_lock:
            if role == self.raft.role:
                return
            log.info("raft role %s -> %s (voters %s)", self.raft.role, role, voter_addresses)
            self.raft.start(role, voter_addresses, fresh=True)  # type: ignore[arg-type]
            self._save_identity(
                dataclasses.replace(self.identity, role=role, voters=tuple(voter_addresses))
            )

    async def tell_removed(self, node: Node) -> None:
        try:
            await self.control.client_for(node).post("/v1/internal/removed")
        except (ApiError, Unreachable) as exc:
            log.info("removed node %s did not answer: %s", node.name, exc)
