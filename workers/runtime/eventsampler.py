"""The watcher's cluster events sampler (``workers.roles.eventsampler``), by the factory
``workers.runtime.watch.SAMPLERS`` names."""

from __future__ import annotations

import redis

from workers.roles.eventsampler import EventSampler
from workers.runtime.watch import ClusterWatch


def events(watch: ClusterWatch, client: redis.Redis) -> EventSampler:
    """The factory ``workers.runtime.watch.SAMPLERS`` names."""
    return EventSampler(watch, client)
