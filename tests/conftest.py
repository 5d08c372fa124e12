"""Settings for the whole test run."""

from hypothesis import HealthCheck, settings

# Property tests check behaviour, never speed: a deadline would be a timing assertion, and
# the machines running these tests are shared and noisy.
settings.register_profile("shoal", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shoal")
