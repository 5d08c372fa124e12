"""Autoscaling on a real 3-node process cluster: 1 -> >= 3 replicas under load through the
routing mesh (proxy data plane, which counts connections), back to 1 after it."""

from __future__ import annotations

import pytest

from node.devcluster.localcluster import EQUAL_PROCESS_NODES, started_cluster
from tests.integration.autoscale_support import FAST_METRICS, autoscale_flow
from tests.integration.mesh_support import remove_leftover_tasks
from tests.integration.test_mesh_process import SPEC

pytestmark = pytest.mark.timeout(150)


async def test_an_rps_target_scales_up_under_load_and_back_down_after_it(tmp_path):
    spec = {**SPEC, "constraints": []}
    async with started_cluster(
        str(tmp_path), 3, [*EQUAL_PROCESS_NODES, "--lb-dataplane", "proxy", *FAST_METRICS]
    ) as cluster:
        try:
            await autoscale_flow(cluster, spec)
        finally:
            cluster.stop()
            await remove_leftover_tasks(cluster)
