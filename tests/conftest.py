"""Settings for the whole test run."""

import contextlib
import os
import signal

import pytest
from hypothesis import HealthCheck, settings

from tests.support import processes_working_under

# Property tests check behaviour, never speed: a deadline would be a timing assertion, and
# the machines running these tests are shared and noisy.
settings.register_profile("shoal", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shoal")


@pytest.fixture(scope="session", autouse=True)
def end_leftover_tasks(tmp_path_factory):
    """Tasks of the process runtime outlive their nodes by design (a restarted node adopts
    them), so a test that stops a cluster without removing its services leaves them running:
    end those under this run's temporary directories once the run is over."""
    yield
    for pid in processes_working_under(tmp_path_factory.getbasetemp()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
