"""Dashboard models, one module per domain; everything is importable from ``dashboard.models``.

- ``core``: clusters, semantic profiles, sentinels
- ``metrics``: one-minute metric windows
- ``tokens``: personal API tokens
- ``oncall``: alert rules, channels, incidents and their timelines, silences
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
from dashboard.models.oncall import (  # noqa: F401, E402
    AlertRule,
    Channel,
    GroupRule,
    Incident,
    IncidentEvent,
    Silence,
)
from dashboard.models.scenarios import ScenarioRun  # noqa: F401, E402
from dashboard.models.tokens import ApiToken  # noqa: F401, E402
