"""The dashboard's one Redis client factory.

Every dashboard reader and writer of sentinel state (status documents, windows, lint reports,
scenario heartbeats, alert memory, rollups) takes its client from :func:`redis_client`: one
pooled client per ``REDIS_URL`` and process, shared by requests, tasks and commands (redis-py
clients are thread-safe). The keys themselves belong to ``workers.store``.

The health check does not use it (``dashboard.status.redis_problem``): it needs a client of its
own with a short timeout, since the shared one may be waiting on a dead connection.
"""

from __future__ import annotations

import redis
from django.conf import settings

from workers.store.connection import connect

_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """The pooled client of ``settings.REDIS_URL`` (made on first use)."""
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = connect(url)
    return client
