"""Canary updates through real scheduling rounds: the first `canary` tasks are replaced,
then the update waits until it is promoted (by hand or after `auto_promote`), or rolled back."""

from __future__ import annotations

import pytest

from consensus.services import SpecError, parse_service_spec
from consensus.tasks import services
from consensus.updates import PromoteService, RollbackService
from tests.unit.scheduler.helpers import Cluster
from tests.unit.scheduler.test_rollout import agents, converge, rollout, started, versions


def canary_started(**update) -> Cluster:
    c = Cluster(3)
    started(c, update={"canary": 2, "parallelism": 1, "monitor": 0, **update})
    c.update("web", image="busybox:2")
    converge(c)
    return c


def test_the_canaries_run_beside_the_old_tasks_until_a_promote():
    c = canary_started()
    r = rollout(c)
    assert sorted(versions(c)) == [1, 2, 2]  # two canaries at once, whatever the parallelism
    assert (r.state, r.updated, r.remaining) == ("canary", 2, 1)
    assert "shoal service promote web" in r.message
    c.now += 3600
    converge(c)
    assert sorted(versions(c)) == [1, 2, 2] and rollout(c).state == "canary"  # it waits
    c.ok(PromoteService("web", c.now))
    converge(c)
    r = rollout(c)
    assert versions(c) == [2, 2, 2] and (r.state, r.updated, r.promoted) == ("completed", 3, True)


def test_a_rollback_in_the_canary_phase_removes_the_canaries():
    c = canary_started()
    c.ok(RollbackService("web", c.now, reason="bad canary"))
    converge(c)
    # The canaries' slots run the old spec again (as version 3); the untouched one stays.
    assert sorted(versions(c)) == [1, 3, 3] and rollout(c).state == "rolled_back"
    assert services(c.state)["web"].spec.image == "busybox"


def test_auto_promote_goes_on_by_itself_after_the_canaries_stayed_ready():
    c = Cluster(3)
    started(c, update={"canary": 1, "monitor": 0, "auto_promote": "5m"})
    c.update("web", image="busybox:2")
    for _ in range(6):
        c.round()
        agents(c)
    r = rollout(c)
    assert r.state == "canary" and c.wake_at == r.batch_done_at + 300
    c.now = r.batch_done_at + 299
    c.round()
    assert rollout(c).state == "canary"
    c.now += 1
    converge(c)
    assert versions(c) == [2, 2, 2] and rollout(c).state == "completed"


def test_promote_is_refused_without_a_canary_waiting():
    c = Cluster(3)
    started(c)
    refused = c.state.apply(PromoteService("web", c.now))
    assert refused.code == 409 and "no canary" in refused.error


@pytest.mark.parametrize(
    "plain, field",
    [
        ({"update": {"canary": -1}}, "update.canary"),
        ({"update": {"auto_promote": "-1s"}}, "update.auto_promote"),
        ({"rollback": {"canary": 1}}, "rollback.canary"),
    ],
)
def test_bad_canary_settings_name_their_field(plain, field):
    with pytest.raises(SpecError) as caught:
        parse_service_spec({"name": "web", "image": "busybox", **plain})
    assert caught.value.field == field
