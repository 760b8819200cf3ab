"""How long the lab waits for each thing, and how hard its sentinels write.

Every wait of a run (``Lab.wait()``) is on a condition with one of these limits; a limit
reached ends the run as aborted with what it was waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass

POLL_S = 0.2
# A role process that fails (dies or hangs) again after this many restarts aborts the run.
MAX_RESTARTS = 3
# A role loop heartbeats about once a second; its longest legitimate block is a 60 s
# init_transactions(). Silent longer than this while its process lives means hung (e.g. in
# librdkafka's send_offsets_to_transaction(), which can ignore its timeout: librdkafka#5456).
HANG_AFTER_S = 65.0
HANG_CHECK_S = 2.0


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of wait may take before the run is aborted."""

    flow: float = 90.0  # records flowing after the sentinels start
    fault: float = 60.0  # a fault to land (crash point reached, leader re-elected, fencing)
    progress: float = 90.0  # records flowing again after a fault or a restart
    broker: float = 120.0  # a node back in the metadata, every replica back in sync
    settle: float = 90.0  # every checker settled after the producers stopped
    stop: float = 30.0  # a role process to exit after SIGTERM


@dataclass(frozen=True)
class Load:
    """How hard the scenario sentinels write: small and slow, so runs are quick and exact."""

    rate_per_partition: float = 25.0
    batch_size: int = 50
    grace_seconds: float = 2.0
    record_size: int = 64
    flow_records: int = 30  # processed per sentinel before the fault
    progress_records: int = 30  # processed per sentinel after a recovery step
