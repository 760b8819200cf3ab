"""Dashboard models, one module per domain; everything is importable from ``dashboard.models``.

- ``core``: clusters, semantic profiles, sentinels
- ``metrics``: one-minute metric windows
"""

from dashboard.models.core import (  # noqa: F401
    LOCAL_CLUSTER,
    Cluster,
    Profile,
    Sentinel,
    enabled_specs,
    ensure_defaults,
)
from dashboard.models.metrics import MetricWindow  # noqa: E402, F401
from dashboard.models.scenarios import ScenarioRun  # noqa: F401, E402
