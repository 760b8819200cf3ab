"""Where the project's local cluster is, read in this one place: its name and first broker
port (``LOCAL_KAFKA_NAME``, ``LOCAL_KAFKA_PORT``) and the bootstrap servers the project talks
to (``KAFKA_BOOTSTRAP_SERVERS``, by default the local cluster's). The Django settings, the soak,
the ``python -m workers.localkafka`` defaults and the benchmarks all take them from here.

Standard library and the typed env helpers only: the settings import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers.engine.env import envbootstrap, envint, envstr

if TYPE_CHECKING:
    from workers.localkafka.cluster import LocalCluster

DEFAULT_NAME = "dev"
DEFAULT_PORT = 9092  # the first node's broker port; node N listens on DEFAULT_PORT + N - 1
NODES = 3


@dataclass(frozen=True)
class LocalAddress:
    """The local cluster named ``name`` whose first broker port is ``port``."""

    name: str = DEFAULT_NAME
    port: int = DEFAULT_PORT

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(NODES))

    def cluster(self) -> LocalCluster:
        from workers.localkafka.cluster import LocalCluster

        return LocalCluster(self.name, broker_base_port=self.port)


def local_address() -> LocalAddress:
    """The local cluster of ``LOCAL_KAFKA_NAME`` (default ``dev``) and ``LOCAL_KAFKA_PORT``
    (default 9092); a port that is not a number fails loudly."""
    name = envstr("LOCAL_KAFKA_NAME", DEFAULT_NAME) or DEFAULT_NAME
    return LocalAddress(name, envint("LOCAL_KAFKA_PORT", DEFAULT_PORT, min=1))


def bootstrap_servers() -> str:
    """``KAFKA_BOOTSTRAP_SERVERS``, checked; by default the local cluster's three nodes."""
    return envbootstrap("KAFKA_BOOTSTRAP_SERVERS", local_address().bootstrap_servers)
