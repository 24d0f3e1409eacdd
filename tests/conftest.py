"""Hypothesis profiles: "dev" by default, "ci" when CI=true (or HYPOTHESIS_PROFILE=ci)."""

import os

from hypothesis import HealthCheck, settings

# No deadline in either profile: a loaded machine (other tests, VMs booting) must not turn
# a slow example into a failure; the suites' total time is what we watch.
settings.register_profile("dev", max_examples=50, stateful_step_count=30, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)

_default = "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
